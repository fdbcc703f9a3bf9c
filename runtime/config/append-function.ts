import { isDeepStrictEqual } from "node:util";
import { Document, isMap, isScalar, isSeq, type Node, parseDocument, type YAMLMap, type YAMLSeq } from "yaml";

/**
 * `functions.yaml`'s text with `entry` added as the last item of its top-level `functions:`
 * sequence, and every other byte as it was: comments, flow collections, quoting, blank lines
 * and line endings. The entry's text is spliced in at the place the document's node ranges
 * give (a re-serialised document would reformat the rest of the file, `["orders.>"]` as
 * `[ "orders.>" ]` and a one-line map as seven lines).
 *
 * - A block sequence gets a block item after its last item's last line (and after comment
 *   lines indented into the sequence that follow it without a blank line), at the column of
 *   the other items' `-`, preceded by a blank line when the last two items are separated by one.
 * - A flow sequence (`functions: [ ... ]`) gets a flow map before its closing `]`.
 *
 * The result is parsed and compared with the original plus the entry; anything else (a
 * shape this cannot splice without changing other values) throws rather than return it.
 */
export function appendFunctionEntry(source: string, entry: Record<string, unknown>): string {
  return appendListEntry(source, "functions", entry, { addKey: false });
}

/** Options of {@link appendListEntry}. */
export interface AppendListOptions {
  /** Whether a document without the key gets it. @default true */
  readonly addKey?: boolean;
}

/**
 * Like {@link appendFunctionEntry} for the top-level sequence `key` (`routes`). A document
 * without `key` gets it at its end (unless `options.addKey` is false), as a block sequence of
 * the one entry, its `-` at the column of the document's other top-level block sequences,
 * after a blank line when its top-level keys are spaced by blank lines.
 */
export function appendListEntry(source: string, key: string, entry: Record<string, unknown>, options: AppendListOptions = {}): string {
  const document = parseDocument(source, { keepSourceTokens: true, merge: true });
  if (document.errors.length > 0) throw new Error(`not valid YAML: ${document.errors[0]!.message}`);
  const root = document.contents;
  const pair = isMap(root) ? root.items.find((item) => isScalar(item.key) && item.key.value === key) : undefined;
  const eol = source.includes("\r\n") ? "\r\n" : "\n";
  let result: string;
  if (pair === undefined && isMap(root) && !root.flow && options.addKey !== false) {
    result = appendKey(source, root, key, entry, eol);
  } else {
    if (!isSeq(pair?.value)) throw new Error(`${key}: is not a sequence written in this file (an alias or missing)`);
    const seq = pair.value as YAMLSeq<Node>;
    result = seq.flow ? appendFlow(source, seq, entry) : appendBlock(source, seq, entry, eol, key);
  }

  const expected = { ...(document.toJS() as Record<string, unknown>) };
  expected[key] = [...((expected[key] as unknown[] | undefined) ?? []), entry];
  const written = parseDocument(result, { merge: true });
  if (written.errors.length > 0 || !isDeepStrictEqual(written.toJS(), expected)) {
    throw new Error(`the entry cannot be added to ${key}: without changing the rest of the file; add it by hand`);
  }
  return result;
}

function appendKey(source: string, root: YAMLMap, key: string, entry: Record<string, unknown>, eol: string): string {
  // The column of the other top-level sequences' `-` (2 in `functions:\n  - name: a`).
  const sibling = root.items.map((item) => item.value).find((value) => isSeq(value) && !value.flow && value.srcToken?.type === "block-seq");
  const column = isSeq(sibling) && sibling.srcToken?.type === "block-seq" ? sibling.srcToken.indent : 2;
  const text = new Document({ [key]: [entry] }).toString({ lineWidth: 0, indent: Math.max(column, 2), indentSeq: column > 0 }).trimEnd();
  const spaced = /\n[ \t]*\r?\n[^\s]/.test(source);
  const end = source.length === 0 || source.endsWith("\n") ? "" : eol;
  return source + end + (spaced ? eol : "") + text.split("\n").join(eol) + eol;
}

function appendBlock(source: string, seq: YAMLSeq<Node>, entry: Record<string, unknown>, eol: string, key: string): string {
  const last = seq.items.at(-1);
  const token = seq.srcToken;
  if (!last?.range || token?.type !== "block-seq") throw new Error(`${key}: has no items to add after`);
  const column = token.indent; // where every item's `-` is

  let lineEnd = lineEndAfter(source, lastCharOf(source, last.range[1]));
  // Comments indented into the sequence right after its last item belong to that item.
  while (lineEnd < source.length) {
    const next = lineEnd + 1;
    const text = source.slice(next, lineEndAfter(source, next));
    const indent = text.length - text.trimStart().length;
    if (!text.trimStart().startsWith("#") || indent === 0 || indent < column) break;
    lineEnd = lineEndAfter(source, next);
  }

  const previous = seq.items.at(-2);
  const spaced = previous?.range != null && /\n[ \t]*\r?\n/.test(source.slice(lastCharOf(source, previous.range[1]), last.range[0]));
  const lines = new Document([entry]).toString({ lineWidth: 0 }).trimEnd().split("\n");
  const text = (spaced ? eol : "") + lines.map((line) => " ".repeat(column) + line).join(eol) + eol;
  if (lineEnd >= source.length) return source + (source.endsWith("\n") ? "" : eol) + text;
  return source.slice(0, lineEnd + 1) + text + source.slice(lineEnd + 1);
}

function appendFlow(source: string, seq: YAMLSeq<Node>, entry: Record<string, unknown>): string {
  const close = (seq.range?.[1] ?? 0) - 1;
  if (source[close] !== "]") throw new Error("functions: [ ... ] has no closing ] where expected");
  const flow = new Document();
  flow.contents = flow.createNode(entry, { flow: true });
  const text = flow.toString({ lineWidth: 0 }).trimEnd();
  const last = seq.items.at(-1);
  if (!last?.range) return source.slice(0, close) + text + source.slice(close);
  const end = last.range[1];
  const comma = source.slice(end, close).indexOf(",");
  // A trailing comma stays trailing: `[a, b,]` becomes `[a, b, new,]`.
  if (comma >= 0) return `${source.slice(0, end + comma + 1)} ${text},${source.slice(end + comma + 1)}`;
  return `${source.slice(0, end)}, ${text}${source.slice(end)}`;
}

/** The offset of the last non-blank character before `end`. */
function lastCharOf(source: string, end: number): number {
  let at = end - 1;
  while (at > 0 && /\s/.test(source[at]!)) at--;
  return at;
}

/** The offset of the newline ending the line that holds `offset` (source.length on the last line). */
function lineEndAfter(source: string, offset: number): number {
  const newline = source.indexOf("\n", offset);
  return newline === -1 ? source.length : newline;
}

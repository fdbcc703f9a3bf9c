import type { Document, LineCounter } from "yaml";
import { isMap, isNode, isScalar } from "yaml";

/** A 1-based line and column in the yaml source. */
export interface Position {
  readonly line: number;
  readonly column: number;
}

/** What an issue points at: the offending value, the key naming it, or the map holding it. */
export type Anchor = "value" | "key" | "parent";

/**
 * Maps key paths of the parsed data back to lines and columns of the yaml source, using the
 * document's nodes (`range[0]` is a character offset) and the parse's `LineCounter`.
 */
export class Locator {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** The position of a character offset. */
  offset(offset: number): Position {
    const { line, col } = this.lines.linePos(offset);
    return { line, column: col };
  }

  /**
   * Where the issue at `path` should point. When the node itself is absent (a missing key, a
   * path through an alias), the nearest ancestor present in the document is used.
   */
  find(path: readonly PropertyKey[], anchor: Anchor = "value"): Position | undefined {
    if (anchor === "parent") return this.node(path.slice(0, -1));
    if (anchor === "key" && path.length > 0) {
      const key = this.key(path);
      if (key !== undefined) return key;
    }
    return this.node(path);
  }

  private node(path: readonly PropertyKey[]): Position | undefined {
    for (let length = path.length; length >= 0; length--) {
      const node = this.get(path.slice(0, length));
      if (isNode(node) && node.range) return this.offset(node.range[0]);
    }
    return undefined;
  }

  private key(path: readonly PropertyKey[]): Position | undefined {
    const parent = this.get(path.slice(0, -1));
    if (!isMap(parent)) return undefined;
    const wanted = String(path.at(-1));
    for (const pair of parent.items) {
      const key = isScalar(pair.key) ? pair.key.value : pair.key;
      if (String(key) === wanted && isNode(pair.key) && pair.key.range) {
        return this.offset(pair.key.range[0]);
      }
    }
    return undefined;
  }

  private get(path: readonly PropertyKey[]): unknown {
    if (path.length === 0) return this.doc.contents;
    return this.doc.getIn(path, true);
  }
}

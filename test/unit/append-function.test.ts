/**
 * `jetfn new`'s edit of functions.yaml: the new entry's lines are the whole diff, whatever
 * the file's shape, and the rest of the file keeps its bytes; `jetfn new --route` adds to
 * `routes:` (or adds the key) the same way.
 */
import { describe, expect, it } from "vitest";
import { appendFunctionEntry, appendListEntry } from "../../runtime/config/append-function.ts";

const entry = { name: "ship-order", handler: "functions/ship-order.ts", stream: "ORDERS", subjects: ["orders.paid"] };

/** The entry as a block item whose `-` is at `column`. */
const block = (column: number) => {
  const pad = " ".repeat(column);
  return [
    `${pad}- name: ship-order`,
    `${pad}  handler: functions/ship-order.ts`,
    `${pad}  stream: ORDERS`,
    `${pad}  subjects:`,
    `${pad}    - orders.paid`,
  ];
};

/**
 * The lines `after` has that `before` has not, checked to be one run of added lines: every
 * line of `before` is still there, in order, as it was.
 */
function addedLines(before: string, after: string): string[] {
  const a = before.split("\n");
  const b = after.split("\n");
  let prefix = 0;
  while (prefix < a.length && a[prefix] === b[prefix]) prefix++;
  let suffix = 0;
  while (suffix < a.length - prefix && a[a.length - 1 - suffix] === b[b.length - 1 - suffix]) suffix++;
  expect(prefix + suffix, `every line of the original is kept:\n${after}`).toBe(a.length);
  return b.slice(prefix, b.length - suffix);
}

describe("appendFunctionEntry", () => {
  it("adds after the last item when functions: ends the file, keeping comments, flow sequences and one-line maps", () => {
    const before = `# my functions
defaults:
  retry: { maxAttempts: 5, backoff: exponential, initialDelay: 1s }   # one line, stays one line
streams:
  - name: ORDERS   # the shop's orders
    subjects: ["orders.>"]
functions:
  - name: charge
    handler: functions/charge.ts
    stream: ORDERS
    subjects: ["orders.created"]
    config: { currency: EUR }
`;
    const after = appendFunctionEntry(before, entry);
    expect(addedLines(before, after)).toEqual(block(2));
    expect(after).toBe(`${before}${block(2).join("\n")}\n`);
  });

  it("adds before the next top-level key, after comments indented into the last item, spaced like the items", () => {
    const before = `functions:
  - { name: a, handler: a.ts, stream: ORDERS, subjects: ["orders.a"] }

  - name: b
    handler: b.ts
    stream: ORDERS
    subjects: ["orders.b"]
    # b is slow: keep its timeout

# Ingress
routes:
  - route: POST /orders
    publish: orders.a
streams: [{ name: ORDERS, subjects: ["orders.>"] }]
`;
    const after = appendFunctionEntry(before, entry);
    // A line diff shows the blank line after the entry (the same change, read the other way).
    expect(addedLines(before, after)).toEqual([...block(2), ""]);
    expect(after).toContain(`    # b is slow: keep its timeout\n\n  - name: ship-order`);
    expect(after).toContain(`subjects:\n      - orders.paid\n\n# Ingress\nroutes:`);
  });

  it("keeps a zero-indented sequence's column, and a file without a final newline", () => {
    const zero = "functions:\n- name: a\n  handler: a.ts\nroutes: []\n";
    expect(addedLines(zero, appendFunctionEntry(zero, entry))).toEqual(block(0));

    const unterminated = "functions:\n    - name: a\n      handler: a.ts";
    const after = appendFunctionEntry(unterminated, entry);
    expect(after).toBe(`${unterminated}\n${block(4).join("\n")}\n`);
  });

  it("leaves a comment at column 0 after the sequence to what follows it", () => {
    const before = "functions:\n  - name: a\n    handler: a.ts\n# routes come later\n";
    const after = appendFunctionEntry(before, entry);
    expect(after).toBe(`functions:\n  - name: a\n    handler: a.ts\n${block(2).join("\n")}\n# routes come later\n`);
  });

  it("adds a flow map to a flow sequence, empty or not, keeping a trailing comma", () => {
    const flow = `{ name: ship-order, handler: functions/ship-order.ts, stream: ORDERS, subjects: [ orders.paid ] }`;
    expect(appendFunctionEntry("functions: []\n", entry)).toBe(`functions: [${flow}]\n`);
    const one = `streams: [{ name: ORDERS, subjects: ["orders.>"] }]\nfunctions: [ { name: a, handler: a.ts } ]   # all of them\n`;
    expect(appendFunctionEntry(one, entry)).toBe(
      `streams: [{ name: ORDERS, subjects: ["orders.>"] }]\nfunctions: [ { name: a, handler: a.ts }, ${flow} ]   # all of them\n`,
    );
    const trailing = "functions: [\n  { name: a },\n]\n";
    expect(appendFunctionEntry(trailing, entry)).toBe(`functions: [\n  { name: a }, ${flow},\n]\n`);
  });

  it("keeps CRLF line endings", () => {
    const before = "functions:\r\n  - name: a\r\n    handler: a.ts\r\nroutes: []\r\n";
    const after = appendFunctionEntry(before, entry);
    expect(after).toBe(`functions:\r\n  - name: a\r\n    handler: a.ts\r\n${block(2).join("\r\n")}\r\nroutes: []\r\n`);
  });

  it("quotes what YAML would misread", () => {
    const after = appendFunctionEntry("functions:\n  - name: a\n", { ...entry, stream: "true", subjects: ["orders.*", "#x"] });
    expect(addedLines("functions:\n  - name: a\n", after)).toEqual([
      "  - name: ship-order",
      "    handler: functions/ship-order.ts",
      '    stream: "true"',
      "    subjects:",
      "      - orders.*",
      '      - "#x"',
    ]);
  });

  it("refuses what it cannot splice without changing the rest", () => {
    expect(() => appendFunctionEntry("base: &fns\n  - name: a\nfunctions: *fns\n", entry)).toThrow(/not a sequence written in this file/);
    expect(() => appendFunctionEntry("routes: []\n", entry)).toThrow(/not a sequence/);
    // The last item's block scalar keeps its trailing blank lines (`|+`): adding after its
    // text would move them out of it, so this is refused rather than written.
    expect(() => appendFunctionEntry("functions:\n  - name: a\n    note: |+\n      text\n\n", entry)).toThrow(/add it by hand/);
  });
});

describe("appendListEntry", () => {
  const route = { route: "POST /ship", publish: "orders.paid" };

  it("adds to routes: where it is, keeping the rest", () => {
    const before = `routes:\n  - route: POST /orders   # the shop\n    publish: orders.created\n\nfunctions:\n  - name: a\n`;
    const after = appendListEntry(before, "routes", route);
    expect(after).toBe(
      `routes:\n  - route: POST /orders   # the shop\n    publish: orders.created\n  - route: POST /ship\n    publish: orders.paid\n\nfunctions:\n  - name: a\n`,
    );
    expect(appendListEntry("functions: []\nroutes: []\n", "routes", route)).toBe(
      "functions: []\nroutes: [{ route: POST /ship, publish: orders.paid }]\n",
    );
  });

  it("adds a missing key at the end, at the column and spacing of the file", () => {
    const spaced = `streams:\n  - name: ORDERS\n\nfunctions:\n  - name: a\n    handler: a.ts\n`;
    expect(appendListEntry(spaced, "routes", route)).toBe(`${spaced}\nroutes:\n  - route: POST /ship\n    publish: orders.paid\n`);
    const zero = "functions:\n- name: a";
    expect(appendListEntry(zero, "routes", route)).toBe(`${zero}\nroutes:\n- route: POST /ship\n  publish: orders.paid\n`);
    const crlf = "functions:\r\n  - name: a\r\n";
    expect(appendListEntry(crlf, "routes", route)).toBe(`${crlf}routes:\r\n  - route: POST /ship\r\n    publish: orders.paid\r\n`);
  });

  it("refuses a key it cannot add to", () => {
    expect(() => appendListEntry("{ functions: [] }\n", "routes", route)).toThrow(/routes: is not a sequence/);
    expect(() => appendListEntry("functions: []\nroutes: POST /x\n", "routes", route)).toThrow(/routes: is not a sequence/);
    expect(() => appendListEntry("routes: []\n", "functions", route, { addKey: false })).toThrow(/functions: is not a sequence/);
  });
});

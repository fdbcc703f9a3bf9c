import { z } from "zod";
import { describeValue } from "./errors.ts";

/** How zod's `expected` names read in a message. */
const EXPECTED: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  array: "a list",
  object: "a map",
  record: "a map",
};

function listOf(values: readonly unknown[]): string {
  const shown = values.map((value) => (typeof value === "string" ? value : String(value)));
  if (shown.length <= 1) return shown.join("");
  return `${shown.slice(0, -1).join(", ")} or ${shown.at(-1)}`;
}

/**
 * The error map passed to `safeParse`: words zod's generic issues as
 * `expected <what>, got <value>`. Schemas with their own `error` take precedence.
 */
export const issueMessage: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case "invalid_type":
      return `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${describeValue(issue.input)}`;
    case "invalid_value":
      return `expected ${listOf(issue.values)}, got ${describeValue(issue.input)}`;
    case "too_small":
      if (issue.origin === "array") return `expected at least ${String(issue.minimum)} item(s), got none`;
      return `expected at least ${String(issue.minimum)}, got ${describeValue(issue.input)}`;
    case "too_big":
      return `expected at most ${String(issue.maximum)}, got ${describeValue(issue.input)}`;
    case "unrecognized_keys":
      return `unknown key${issue.keys.length === 1 ? "" : "s"} ${issue.keys.map((key) => JSON.stringify(key)).join(", ")}`;
    default:
      return undefined;
  }
};

/**
 * An integer schema with a single message for every way of missing it:
 * `expected an integer >= 1, got "3"`.
 */
export function integer(min: number, max?: number) {
  const expected = max === undefined ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
  const error = (issue: { readonly input?: unknown }) => `expected ${expected}, got ${describeValue(issue.input)}`;
  const schema = z.int({ error }).min(min, { error });
  return max === undefined ? schema : schema.max(max, { error });
}

/** True for the issues a union branch raises merely because the input is of another kind. */
function isKindMismatch(issue: z.core.$ZodIssue): boolean {
  return issue.path.length === 0 && (issue.code === "invalid_type" || issue.code === "invalid_value");
}

/**
 * A union whose error says what went wrong: if exactly one branch accepted the input's kind,
 * that branch's first message; otherwise `fallback(input)` (zod's own text lists every branch).
 */
export function oneOf<const T extends readonly [z.ZodType, z.ZodType, ...z.ZodType[]]>(
  options: T,
  fallback: (input: unknown) => string,
) {
  return z.union(options, {
    error: (issue) => {
      if (issue.code !== "invalid_union") return undefined;
      const relevant = issue.errors.filter((branch) => !branch.every(isKindMismatch));
      const first = relevant.length === 1 ? relevant[0]?.find((inner) => !isKindMismatch(inner)) : undefined;
      return first?.message ?? fallback(issue.input);
    },
  });
}

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
      if (issue.origin === "array") {
        return Number(issue.minimum) === 1 ? "expected a non-empty list" : `expected at least ${String(issue.minimum)} items`;
      }
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

/**
 * A schema that picks the schema to apply by looking at the input (a string or a list, a map
 * with `startSeq` or with `startTime`), so that errors keep their path and say what is wrong
 * rather than listing every alternative. `choose` returning `undefined` means no alternative
 * fits: the issue is then `fallback(input)`.
 */
export function dispatch<T>(
  choose: (input: unknown) => z.ZodType<T> | undefined,
  fallback: (input: unknown) => string = (input) => `unexpected value ${describeValue(input)}`,
) {
  return z.unknown().transform((input, ctx): T => {
    const schema = choose(input);
    if (schema === undefined) {
      ctx.issues.push({ code: "custom", message: fallback(input), input });
      return z.NEVER;
    }
    const result = schema.safeParse(input, { error: issueMessage });
    if (result.success) return result.data;
    // Already worded; zod keeps `message` and prefixes `path` as the issue travels up.
    for (const issue of result.error.issues) ctx.issues.push({ ...issue, input } as z.core.$ZodRawIssue);
    return z.NEVER;
  });
}

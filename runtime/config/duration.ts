import { z } from "zod";
import { isDuration, parseDuration } from "../sdk/duration.ts";
import { describeValue } from "./errors.ts";

export { isDuration, parseDuration };

/** The error text for a value that is not a duration. */
export function durationMessage(value: unknown): string {
  return `expected a duration like 10s, got ${describeValue(value)}`;
}

/**
 * A zod schema for a duration string (the grammar of {@link parseDuration}); it outputs
 * milliseconds. Any other input fails with `expected a duration like 10s, got "<value>"`.
 */
export const durationSchema = z
  .string({ error: (issue) => durationMessage(issue.input) })
  .refine(isDuration, { error: (issue) => durationMessage(issue.input) })
  .transform((text) => parseDuration(text));

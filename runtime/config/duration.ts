import ms from "ms";
import { z } from "zod";
import { describeValue } from "./errors.ts";

/** A non-negative decimal number directly followed by one of the units we accept. */
const DURATION = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)$/;

/**
 * Parses a duration such as `250ms`, `10s`, `1.5s`, `5m` or `1h` into milliseconds (rounded).
 * Only a number directly followed by `ms`, `s`, `m` or `h` is accepted: bare numbers (whose
 * unit a reader would have to guess), words, spaces and negative values throw a `RangeError`.
 */
export function parseDuration(text: string): number {
  const match = DURATION.exec(text);
  // `ms` does the arithmetic; the pattern above is what keeps its lenient grammar out.
  const value = match ? ms(text as ms.StringValue) : Number.NaN;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(durationMessage(text));
  }
  return Math.round(value);
}

/** True if `text` is a duration that {@link parseDuration} accepts. */
export function isDuration(text: string): boolean {
  try {
    parseDuration(text);
    return true;
  } catch {
    return false;
  }
}

/** The error text for a value that is not a duration. */
export function durationMessage(value: unknown): string {
  return `expected a duration like 10s, got ${describeValue(value)}`;
}

/**
 * A zod schema for a duration string; it outputs milliseconds. Any other input fails with
 * `expected a duration like 10s, got "<value>"`.
 */
export const durationSchema = z
  .string({ error: (issue) => durationMessage(issue.input) })
  .refine(isDuration, { error: (issue) => durationMessage(issue.input) })
  .transform((text) => parseDuration(text));

import bytes from "bytes";
import { z } from "zod";
import { describeValue } from "./errors.ts";

/** A number directly followed by a unit: bare numbers would leave the unit to guess. */
const SIZE = /^(\d+(?:\.\d+)?)\s*(kb|mb|gb)$/i;

/** True for a size `parseSize` reads. */
export function isSize(text: string): boolean {
  return SIZE.test(text);
}

/** Parses `256MB`, `1.5GB` or `512kb` into bytes (1 MB = 1024 KB); throws a `RangeError` otherwise. */
export function parseSize(text: string): number {
  const value = SIZE.test(text) ? bytes.parse(text) : null;
  if (value === null || !Number.isFinite(value)) throw new RangeError(sizeMessage(text));
  return value;
}

function sizeMessage(value: unknown): string {
  return `expected a size like 256MB, got ${describeValue(value)}`;
}

/** A zod schema for a size of at least `minBytes`; it outputs bytes. */
export function sizeSchema(minBytes: number) {
  const valid = (text: string): boolean => SIZE.test(text) && parseSize(text) >= minBytes;
  const message = (input: unknown): string =>
    typeof input === "string" && SIZE.test(input)
      ? `expected a size of at least ${bytes(minBytes)}, got ${describeValue(input)}`
      : sizeMessage(input);
  return z
    .string({ error: (issue) => message(issue.input) })
    .refine(valid, { error: (issue) => message(issue.input) })
    .transform((text) => parseSize(text));
}

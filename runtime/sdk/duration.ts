import ms from "ms";

/** A non-negative decimal number directly followed by one of the units we accept. */
const DURATION = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)$/;

/**
 * jetfn's one duration grammar, for `functions.yaml`, the environment and the SDK
 * (`RetryAfterError("...", "30s")`, `ctx.breaker(name, { openFor: "10s" })`): `250ms`, `10s`,
 * `1.5s`, `5m`, `1h`, `7d`, in milliseconds (rounded). Only a number directly followed by
 * `ms`, `s`, `m`, `h` or `d` (24 hours) is accepted: bare numbers (whose unit a reader would have to guess), words
 * ("1 minute"), spaces and negative values throw a `RangeError`.
 */
export function parseDuration(text: string): number {
  const match = typeof text === "string" ? DURATION.exec(text) : null;
  // `ms` does the arithmetic; the pattern above is what keeps its lenient grammar out.
  const value = match ? ms(text as ms.StringValue) : Number.NaN;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`expected a duration like 10s, got ${shown(text)}`);
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

function shown(value: unknown): string {
  if (typeof value !== "string") return String(value);
  return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
}

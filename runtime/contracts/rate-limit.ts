/**
 * Fleet-wide rate limits (`rateLimit:` in functions.yaml, issue 20): the generic cell rate
 * algorithm (GCRA) over one number per limited function (or per key), kept in the KV bucket
 * `JETFN_RATE_LIMITS` and changed by compare-and-set, so every replica draws from one bucket.
 *
 * A cell holds its theoretical arrival time (TAT, epoch ms): when the bucket is full again.
 * Each permit moves it `interval = period / limit` ahead; a take at `now` is allowed while
 * `max(TAT, now) + interval <= now + burst * interval`, so at most `burst` permits are taken
 * at once and `limit` per `period` after that.
 */

/** The KV bucket of every rate-limited function's cells. */
export const RATE_LIMIT_BUCKET = "JETFN_RATE_LIMITS";

/** A cell not written for this long is gone (the bucket's max age): a full bucket is the same as none. */
export const RATE_CELL_TTL_MS = 24 * 60 * 60 * 1000;

/** A function's limit, as the algorithm reads it. */
export interface RateSpec {
  /** `period / limit`, ms: how far each permit moves the TAT. */
  readonly intervalMs: number;
  /** The bucket's depth: permits that may be taken at once. */
  readonly burst: number;
}

/** The cell's key: `<function>` for the whole function, `<function>.k<key, base64url>` per key. */
export function cellKey(fn: string, key?: string): string {
  return key === undefined ? fn : `${fn}.k${Buffer.from(key, "utf8").toString("base64url")}`;
}

/** Reads a cell's value: its TAT, epoch ms; undefined when it is not one. */
export function parseCell(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** What a take found: permits granted and the cell's new TAT, or none (0) and how long until one. */
export interface Take {
  readonly granted: number;
  readonly tat: number;
  readonly waitMs: number;
}

/** Takes up to `want` permits at `now` from a cell whose TAT is `tat` (undefined: a full bucket). */
export function take(tat: number | undefined, now: number, want: number, spec: RateSpec): Take {
  const { intervalMs, burst } = spec;
  const from = Math.max(tat ?? now, now);
  // Permits that fit before the bucket's depth is used up (with a hair of slack for float sums).
  const fit = Math.floor((now + burst * intervalMs - from) / intervalMs + 1e-9);
  const granted = Math.min(want, fit);
  if (granted <= 0) return { granted: 0, tat: from, waitMs: Math.max(1, Math.ceil(from + intervalMs - burst * intervalMs - now)) };
  return { granted, tat: from + granted * intervalMs, waitMs: 0 };
}

/** Gives back `unused` permits taken and not used: the TAT moves back by as many intervals. */
export function giveBack(tat: number | undefined, now: number, unused: number, spec: RateSpec): number | undefined {
  if (tat === undefined || tat <= now) return undefined;
  return Math.max(now, tat - unused * spec.intervalMs);
}

/**
 * Holds the whole function off for `delayMs` (a handler's `RetryAfterError`): no permit until
 * then, and the rate (not a burst) after it.
 */
export function holdOff(tat: number | undefined, now: number, delayMs: number, spec: RateSpec): number {
  return Math.max(tat ?? now, now + delayMs + (spec.burst - 1) * spec.intervalMs);
}

import type { FunctionTotals } from "../contracts/status.ts";
import type { ChartSeries } from "./view.ts";

/** One host's running totals of one function, at one poll. */
export interface TotalsSample {
  /** The service instance's id: totals of different hosts are never diffed. */
  readonly instance: string;
  readonly totals: FunctionTotals;
}

interface Bucket {
  successes: number;
  failures: number;
  /** Per-bucket duration counts (not cumulative); the bounds are the history's. */
  counts: number[];
}

/**
 * A function's invocations over the last `windowMs`, in buckets of `stepMs`, from the
 * running totals each host reports on every poll: what a bucket holds is what the hosts'
 * totals grew by while it was current. A host seen for the first time is a baseline (its
 * totals since it started belong to no bucket); a host that restarted (its totals shrank)
 * starts a new baseline. p99 is read from the merged duration histogram, interpolated within
 * its bucket as Prometheus' `histogram_quantile` does.
 */
export class FunctionHistory {
  readonly #stepMs: number;
  readonly #windowMs: number;
  readonly #last = new Map<string, FunctionTotals>();
  readonly #buckets = new Map<number, Bucket>();
  #bounds: readonly number[] = [];

  constructor(options: { stepMs: number; windowMs: number }) {
    this.#stepMs = options.stepMs;
    this.#windowMs = options.windowMs;
  }

  /** Adds one poll's samples, taken at `now` (ms). */
  add(now: number, samples: readonly TotalsSample[]): void {
    const start = Math.floor(now / this.#stepMs) * this.#stepMs;
    const seen = new Set<string>();
    for (const { instance, totals } of samples) {
      seen.add(instance);
      const before = this.#last.get(instance);
      this.#last.set(instance, totals);
      if (!before || totals.successes < before.successes || totals.failures < before.failures) continue;
      if (this.#bounds.length === 0) this.#bounds = totals.duration.bounds;
      if (!sameBounds(this.#bounds, totals.duration.bounds)) continue;
      let bucket = this.#buckets.get(start);
      if (!bucket) this.#buckets.set(start, (bucket = { successes: 0, failures: 0, counts: new Array(this.#bounds.length + 1).fill(0) }));
      bucket.successes += totals.successes - before.successes;
      bucket.failures += totals.failures - before.failures;
      totals.duration.counts.forEach((count, i) => {
        bucket.counts[i]! += Math.max(0, count - (before.duration.counts[i] ?? 0));
      });
    }
    for (const instance of this.#last.keys()) if (!seen.has(instance)) this.#last.delete(instance);
    for (const key of this.#buckets.keys()) if (key <= now - this.#windowMs) this.#buckets.delete(key);
  }

  /** The window's buckets, oldest first, ending with the current one; empty buckets as zeros. */
  series(now: number): ChartSeries {
    const last = Math.floor(now / this.#stepMs) * this.#stepMs;
    const t: number[] = [];
    const successes: number[] = [];
    const failures: number[] = [];
    const p99Ms: (number | null)[] = [];
    for (let at = last - this.#windowMs + this.#stepMs; at <= last; at += this.#stepMs) {
      const bucket = this.#buckets.get(at);
      t.push(at);
      successes.push(bucket?.successes ?? 0);
      failures.push(bucket?.failures ?? 0);
      const q = bucket ? quantile(0.99, this.#bounds, bucket.counts) : undefined;
      p99Ms.push(q === undefined ? null : round(q * 1000));
    }
    return { t, successes, failures, p99Ms };
  }

  /** p99 over the whole window, in ms; undefined without invocations. */
  p99Ms(now: number): number | undefined {
    const merged = new Array(this.#bounds.length + 1).fill(0) as number[];
    for (const [at, bucket] of this.#buckets) {
      if (at <= now - this.#windowMs) continue;
      bucket.counts.forEach((count, i) => {
        merged[i]! += count;
      });
    }
    const q = quantile(0.99, this.#bounds, merged);
    return q === undefined ? undefined : round(q * 1000);
  }
}

/**
 * The q-quantile of a histogram given per-bucket counts (the last bucket is +Inf): linear
 * interpolation within the bucket that holds it; in the +Inf bucket, the highest bound.
 */
export function quantile(q: number, bounds: readonly number[], counts: readonly number[]): number | undefined {
  const total = counts.reduce((sum, c) => sum + c, 0);
  if (total === 0) return undefined;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const count = counts[i]!;
    if (count > 0 && below + count >= rank) {
      if (i >= bounds.length) return bounds.at(-1) ?? 0;
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      const upper = bounds[i]!;
      return lower + (upper - lower) * ((rank - below) / count);
    }
    below += count;
  }
  return bounds.at(-1) ?? 0;
}

function sameBounds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function round(ms: number): number {
  return ms >= 100 ? Math.round(ms) : Math.round(ms * 10) / 10;
}

/** The window `jetfn status` shows: the last minute, in 5 s buckets. */
const BUCKET_MS = 5000;
const BUCKETS = 12;

/** Counts in one window: successes, and every other outcome. */
export interface RecentCounts {
  readonly successes: number;
  readonly failures: number;
}

/**
 * Successes and failures of one function in the last minute, as a ring of 5 s buckets
 * over an injected clock: a bucket older than the window is reset when its slot comes
 * round again, so memory stays the same whatever the traffic, and nothing runs on a timer.
 * The window is the current bucket and the 11 before it (55 to 60 s).
 */
export class MinuteRing {
  readonly #now: () => number;
  /** Per slot: the bucket number it holds (epoch ms / 5 s), and its counts. */
  readonly #bucket = new Array<number>(BUCKETS).fill(-1);
  readonly #successes = new Array<number>(BUCKETS).fill(0);
  readonly #failures = new Array<number>(BUCKETS).fill(0);

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  add(success: boolean): void {
    const bucket = Math.floor(this.#now() / BUCKET_MS);
    const slot = bucket % BUCKETS;
    if (this.#bucket[slot] !== bucket) {
      this.#bucket[slot] = bucket;
      this.#successes[slot] = 0;
      this.#failures[slot] = 0;
    }
    if (success) this.#successes[slot]!++;
    else this.#failures[slot]!++;
  }

  /** Counts of the buckets still in the window. */
  counts(): RecentCounts {
    const current = Math.floor(this.#now() / BUCKET_MS);
    let successes = 0;
    let failures = 0;
    for (let slot = 0; slot < BUCKETS; slot++) {
      const age = current - this.#bucket[slot]!;
      if (age < 0 || age >= BUCKETS) continue;
      successes += this.#successes[slot]!;
      failures += this.#failures[slot]!;
    }
    return { successes, failures };
  }
}

import { performance } from "node:perf_hooks";

/** Claims seen in progress, remembered to time their leases; the oldest is dropped past this. */
const SEEN_LIMIT = 10_000;

/**
 * Times other deliveries' claims (a `running` step or idempotency record) by this host's own
 * clock: a claim may be taken over once this host has seen the same revision of its record,
 * unchanged, for the claim's whole lease. No clocks are compared across hosts.
 */
export class LeaseClock {
  /** Per record key: the revision last seen, and since when (monotonic ms). */
  readonly #seen = new Map<string, { revision: number; since: number }>();
  readonly #monotonic: () => number;

  constructor(monotonic: () => number = () => performance.now()) {
    this.#monotonic = monotonic;
  }

  /** Milliseconds until this host may take over the claim at `revision` of `key`: `leaseMs` after it first saw that revision. */
  left(key: string, leaseMs: number, revision?: number): number {
    const now = this.#monotonic();
    let seen = this.#seen.get(key);
    if (!seen || (revision !== undefined && seen.revision !== revision)) {
      seen = { revision: revision ?? 0, since: now };
      this.#seen.delete(key);
      this.#seen.set(key, seen);
      if (this.#seen.size > SEEN_LIMIT) this.#seen.delete(this.#seen.keys().next().value!);
    }
    return seen.since + leaseMs - now;
  }

  /** Forgets the key: this host claimed it (or its record ended). */
  forget(key: string): void {
    this.#seen.delete(key);
  }
}

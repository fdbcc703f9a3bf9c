import { setTimeout as sleep } from "node:timers/promises";
import type { CompiledFunction, CompiledRateLimit } from "../config/types.ts";
import type { SyncCaller } from "../contracts/call.ts";
import { cellKey, giveBack, holdOff, type RateSpec, type Take, take } from "../contracts/rate-limit.ts";
import type { KvCells } from "../nats/kv-cas.ts";
import type { Permits } from "../nats/pull-loop.ts";
import type { Logger } from "../telemetry/logger.ts";

/** After a failed read or write of the bucket (it fails closed), the next try comes this much later. */
const FAILED_RETRY_MS = 1000;

export interface RateLimiterOptions {
  readonly fn: CompiledFunction & { readonly rateLimit: CompiledRateLimit };
  /** `JETFN_RATE_LIMITS`'s cells: each a TAT, epoch ms. */
  readonly cells: KvCells<number>;
  /** This host's clock, epoch ms. */
  readonly now: () => number;
  readonly log: Logger;
  /** Seconds this host's function spent held back, waiting for permits (`jetfn_rate_limited_seconds_total`). */
  readonly waited: (seconds: number) => void;
}

/** What `/functions` and `jetfn status` show of a rate-limited function on this host. */
export interface RateLimitStatus {
  readonly limit: number;
  readonly periodMs: number;
  readonly burst: number;
  /** Pulls of this host waiting for permits now. */
  readonly waiting: number;
  /** Why the bucket cannot be read or written, while it cannot: the function does not pull. */
  readonly failing?: string;
}

/**
 * A function's fleet-wide rate limit (the cell rule: contracts/rate-limit.ts). The function's
 * pull loops take permits before they pull and ask for only as many messages, so what waits
 * for a permit waits in the stream, never in ack pending; permits a pull did not use are
 * given back. A take never holds more than `limit` permits (one period's worth): a replica
 * that dies holding them delays the others by at most a period. When the bucket cannot be
 * reached, nothing is pulled until it can (fail closed), and the status says why.
 */
export class RateLimiter {
  readonly #options: RateLimiterOptions;
  readonly #spec: RateSpec;
  readonly #cell: string;
  readonly #most: number;
  #waiting = 0;
  #waitingSince = 0;
  #failing?: string;

  constructor(options: RateLimiterOptions) {
    this.#options = options;
    const { limit, periodMs, burst } = options.fn.rateLimit;
    this.#spec = { intervalMs: periodMs / limit, burst };
    this.#cell = cellKey(options.fn.name);
    this.#most = Math.max(1, Math.min(limit, burst));
  }

  /** Up to `want` permits of the whole function, waiting for at least one; 0 when `signal` aborted first. */
  async acquire(want: number, signal: AbortSignal): Promise<number> {
    const { now, log } = this.#options;
    let held = false;
    try {
      while (!signal.aborted) {
        let taken: Take;
        try {
          taken = await this.#options.cells.change(this.#cell, (tat) => {
            const result = take(tat, now(), Math.min(want, this.#most), this.#spec);
            return result.granted > 0 ? { write: result.tat, result } : { result };
          });
          if (this.#failing !== undefined) log.info("rate limit: its bucket answers again; pulling");
          this.#failing = undefined;
        } catch (error) {
          if (this.#failing === undefined) log.warn({ err: error }, "rate limit: its bucket cannot be reached; not pulling until it can");
          this.#failing = error instanceof Error ? error.message : String(error);
          if (!held) held = this.#hold();
          await sleep(FAILED_RETRY_MS, undefined, { signal }).catch(() => {});
          continue;
        }
        if (taken.granted > 0) return taken.granted;
        if (!held) held = this.#hold();
        await sleep(taken.waitMs, undefined, { signal }).catch(() => {});
      }
      return 0;
    } finally {
      if (held) this.#release();
    }
  }

  /**
   * One permit now, for a synchronous call, which does not wait: 0 when granted, else how
   * long until one is (1 s when the bucket cannot be reached: it fails closed).
   */
  async tryTake(): Promise<number> {
    const { cells, now } = this.#options;
    try {
      return await cells.change(this.#cell, (tat) => {
        const result = take(tat, now(), 1, this.#spec);
        return result.granted > 0 ? { write: result.tat, result: 0 } : { result: result.waitMs };
      });
    } catch (error) {
      this.#options.log.warn({ err: error }, "rate limit: its bucket cannot be reached; refusing the call");
      return FAILED_RETRY_MS;
    }
  }

  /**
   * The permits of one pull loop. A loop whose last pull received nothing (an idle stream)
   * asks for one permit at a time: an open pull holds its permits until it expires, and
   * idle pulls holding a full burst each would let the fleet start far more than `burst` at
   * once when events arrive.
   */
  forLoop(): Permits {
    let idle = false;
    return {
      acquire: (want, signal) => this.acquire(idle ? 1 : want, signal),
      settle: (granted, used) => {
        idle = used === 0;
        this.#giveBack(granted - used);
      },
    };
  }

  /** Gives back permits a pull took and did not use (best effort: a failure only wastes them). */
  #giveBack(count: number): void {
    if (count <= 0) return;
    const { cells, now, log } = this.#options;
    cells
      .change(this.#cell, (tat) => {
        const back = giveBack(tat, now(), count, this.#spec);
        return back === undefined ? { result: undefined } : { write: back, result: undefined };
      })
      .catch((error: unknown) => log.debug({ err: error, count }, "rate limit: giving back unused permits failed"));
  }

  /** A handler's `RetryAfterError`: no run of the function, on any replica, for `delayMs`. */
  holdOff(delayMs: number): void {
    const { cells, now, log } = this.#options;
    cells
      .change(this.#cell, (tat) => ({ write: holdOff(tat, now(), delayMs, this.#spec), result: undefined }))
      .catch((error: unknown) => log.warn({ err: error, delay_ms: delayMs }, "rate limit: holding the fleet off failed"));
  }

  status(): RateLimitStatus {
    const { limit, periodMs, burst } = this.#options.fn.rateLimit;
    return { limit, periodMs, burst, waiting: this.#waiting, ...(this.#failing !== undefined ? { failing: this.#failing } : {}) };
  }

  /** One more pull waits: the function is held back from now while any does. */
  #hold(): true {
    if (this.#waiting++ === 0) this.#waitingSince = performance.now();
    return true;
  }

  #release(): void {
    if (--this.#waiting === 0) this.#options.waited((performance.now() - this.#waitingSince) / 1000);
  }
}

/** `caller` behind `limiter`: a call the limit has no permit for now is answered at once, with when to try again. */
export function limitedCalls(fn: string, caller: SyncCaller, limiter: RateLimiter): SyncCaller {
  return {
    async call(request) {
      const waitMs = await limiter.tryTake();
      if (waitMs > 0) return { kind: "unavailable", message: `function ${fn} is at its rate limit`, retryAfterMs: waitMs };
      return caller.call(request);
    },
  };
}

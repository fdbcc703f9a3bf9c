import { setTimeout as sleep } from "node:timers/promises";
import type { CompiledFunction, CompiledRateLimit } from "../config/types.ts";
import type { SyncCaller } from "../contracts/call.ts";
import type { Delivery } from "../contracts/delivery.ts";
import { type EventKeySpec, eventKey } from "../contracts/event-key.ts";
import { cellKey, giveBack, holdOff, type RateSpec, take } from "../contracts/rate-limit.ts";
import type { KvCells } from "../nats/kv-cas.ts";
import type { Permits } from "../nats/pull-loop.ts";
import type { Logger } from "../telemetry/logger.ts";

/** After a failed read or write of the bucket (it fails closed), the next try comes this much later. */
const FAILED_RETRY_MS = 1000;
/**
 * A per-key limit's event whose key has a permit within this long waits for it in its slot;
 * any other is handed back to the stream at once (no attempt spent), so that other keys'
 * events behind it are pulled.
 */
const KEY_HOLD_MS = 50;
/** Keys whose turns this host remembers, at most (past turns are forgotten first). */
const MAX_TURNS = 10_000;

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
  /** Per key: each key has its own `limit`. */
  readonly perKey: boolean;
  /** This host's pulls (or, per key, events) waiting for a permit now. */
  readonly waiting: number;
  /** Why the bucket cannot be read or written, while it cannot: the function takes no permit. */
  readonly failing?: string;
}

/**
 * A function's fleet-wide rate limit (the cell rule: contracts/rate-limit.ts).
 *
 * For the whole function, its pull loops take permits before they pull and ask for only as
 * many messages, so what waits for a permit waits in the stream, never in ack pending;
 * permits a pull did not use are given back. A take never holds more than `limit` permits
 * (one period's worth): a replica that dies holding them delays the others by at most a
 * period. Per key, each event takes a permit of its key's cell once pulled (see {@link perKey}).
 *
 * When the bucket cannot be reached, no permit is taken until it can (fail closed), and the
 * status and the log say why.
 */
export class RateLimiter {
  readonly #options: RateLimiterOptions;
  readonly #spec: RateSpec;
  readonly #cell: string;
  readonly #most: number;
  #waiting = 0;
  #waitingSince = 0;
  /** Hold-offs (`RetryAfterError`) so far. */
  #holdOffs = 0;
  #failing?: string;

  constructor(options: RateLimiterOptions) {
    this.#options = options;
    const { limit, periodMs, burst } = options.fn.rateLimit;
    this.#spec = { intervalMs: periodMs / limit, burst };
    this.#cell = cellKey(options.fn.name);
    this.#most = Math.max(1, Math.min(limit, burst));
  }

  /**
   * The permits of one pull loop. A loop whose last pull received nothing (an idle stream)
   * asks for one permit at a time: an open pull holds its permits until it expires, and
   * idle pulls holding a full burst each would let the fleet start far more than `burst` at
   * once when events arrive.
   */
  forLoop(): Permits {
    let idle = false;
    let holdOffs = 0;
    return {
      acquire: (want, signal) => {
        holdOffs = this.#holdOffs;
        return this.#acquire(idle ? 1 : want, signal);
      },
      settle: (granted, used) => {
        idle = used === 0;
        // Permits taken before a hold-off are not given back: that would shorten it.
        if (holdOffs === this.#holdOffs) this.#giveBack(granted - used);
      },
    };
  }

  /**
   * `run` behind per-key limits (`rateLimit.key`): each event takes a permit of its key's
   * own cell before it runs. Events are pulled as they come (a key is known only from its
   * event). One whose key has a permit within {@link KEY_HOLD_MS} waits for it; any other is
   * handed back at once, without spending an attempt, to come again at its turn: this host
   * spaces its key's handed-back events one interval apart, so they come back about as the
   * key's permits do, and the stream moves on to other keys' events meanwhile.
   */
  perKey<R>(
    spec: EventKeySpec,
    run: (delivery: Delivery) => Promise<R>,
    handBack: (delivery: Delivery, delayMs: number) => R,
  ): (delivery: Delivery) => Promise<R> {
    const fn = this.#options.fn.name;
    /** Per key: when this host next hands one of its events back to come again (epoch ms). */
    const turns = new Map<string, number>();
    return async (delivery) => {
      const key = eventKey(delivery, spec);
      const cell = cellKey(fn, key);
      let waiting = false;
      try {
        for (;;) {
          const waitMs = await this.#take(cell);
          if (waitMs === 0) break;
          if (waitMs > KEY_HOLD_MS) return handBack(delivery, this.#turn(turns, key, waitMs));
          if (!waiting) waiting = this.#hold();
          delivery.working();
          await sleep(waitMs);
        }
      } finally {
        if (waiting) this.#release();
      }
      return run(delivery);
    };
  }

  /** The delay of a handed-back event of `key`, whose next permit is `waitMs` away: after the key's others. */
  #turn(turns: Map<string, number>, key: string, waitMs: number): number {
    const now = Date.now();
    const turn = Math.max(turns.get(key) ?? 0, now + waitMs);
    turns.delete(key); // re-inserted last: the map's order is the order of forgetting
    turns.set(key, turn + this.#spec.intervalMs);
    if (turns.size > MAX_TURNS) {
      for (const [old, at] of turns) if (at < now || turns.size > MAX_TURNS) turns.delete(old);
    }
    return turn - now;
  }

  /** `caller` behind this limit: a call with no permit now is answered at once, with when to try again. */
  calls(caller: SyncCaller): SyncCaller {
    const { fn } = this.#options;
    const spec = fn.rateLimit.key;
    return {
      call: async (request) => {
        const cell = spec ? cellKey(fn.name, eventKey(request, spec)) : this.#cell;
        const waitMs = await this.#take(cell);
        if (waitMs > 0) return { kind: "unavailable", message: `function ${fn.name} is at its rate limit`, retryAfterMs: waitMs };
        return caller.call(request);
      },
    };
  }

  /**
   * A handler's `RetryAfterError`: no run of the function (per key: of that key) starts, on
   * any replica, for `delayMs`. `interrupt` ends this host's open pulls, whose permits were
   * taken before: another replica's open pull may still start what it holds (at most a burst).
   */
  holdOff(delayMs: number, delivery: Delivery | undefined, interrupt: () => void): void {
    const { cells, fn, now, log } = this.#options;
    const key = fn.rateLimit.key;
    const cell = key && delivery ? cellKey(fn.name, eventKey(delivery, key)) : this.#cell;
    this.#holdOffs++;
    if (!key) interrupt();
    cells
      .change(cell, (tat) => ({ write: holdOff(tat, now(), delayMs, this.#spec), result: undefined }))
      .catch((error: unknown) => log.warn({ err: error, delay_ms: delayMs }, "rate limit: holding the fleet off failed"));
  }

  status(): RateLimitStatus {
    const { limit, periodMs, burst, key } = this.#options.fn.rateLimit;
    return {
      limit,
      periodMs,
      burst,
      perKey: key !== undefined,
      waiting: this.#waiting,
      ...(this.#failing !== undefined ? { failing: this.#failing } : {}),
    };
  }

  /** Up to `want` permits of the whole function, waiting for at least one; 0 when `signal` aborted first. */
  async #acquire(want: number, signal: AbortSignal): Promise<number> {
    let waiting = false;
    try {
      while (!signal.aborted) {
        const granted = await this.#grant(this.#cell, Math.min(want, this.#most));
        if (granted.permits > 0) return granted.permits;
        if (!waiting) waiting = this.#hold();
        await sleep(granted.waitMs, undefined, { signal }).catch(() => {});
      }
      return 0;
    } finally {
      if (waiting) this.#release();
    }
  }

  /** One permit of `cell` now: 0 when granted, else how long until one is. */
  async #take(cell: string): Promise<number> {
    return (await this.#grant(cell, 1)).waitMs;
  }

  /** Up to `want` permits of `cell` now, or how long until one is (fail closed: a second, when the bucket cannot be reached). */
  async #grant(cell: string, want: number): Promise<{ readonly permits: number; readonly waitMs: number }> {
    const { cells, now, log } = this.#options;
    try {
      const taken = await cells.change(cell, (tat) => {
        const result = take(tat, now(), want, this.#spec);
        return result.granted > 0 ? { write: result.tat, result } : { result };
      });
      if (this.#failing !== undefined) log.info("rate limit: its bucket answers again; taking permits");
      this.#failing = undefined;
      return { permits: taken.granted, waitMs: taken.waitMs };
    } catch (error) {
      if (this.#failing === undefined) log.warn({ err: error }, "rate limit: its bucket cannot be reached; no run starts until it can");
      this.#failing = error instanceof Error ? error.message : String(error);
      return { permits: 0, waitMs: FAILED_RETRY_MS };
    }
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

  /** One more pull or event waits: the function is held back from now while any does. */
  #hold(): true {
    if (this.#waiting++ === 0) this.#waitingSince = performance.now();
    return true;
  }

  #release(): void {
    if (--this.#waiting === 0) this.#options.waited((performance.now() - this.#waitingSince) / 1000);
  }
}

import type { CompiledBreaker } from "../config/types.ts";
import type { Gate } from "../contracts/gate.ts";
import { CircuitBreaker, type BreakerState } from "../resilience/breaker.ts";
import type { NamedBreaker } from "../resilience/breakers.ts";
import { isBreakerOpenError, isNonRetryableError } from "../sdk/errors.ts";
import type { Outcome } from "./settle.ts";

/**
 * Whether one function's deliveries may start: the one place that decides it. Two things
 * close the gate:
 * - the function's own breaker (`breaker:` in yaml) while open; half-open, it admits only
 *   its probes;
 * - a pause: a handler met an open named breaker (`ctx.breaker(name)`), so the backlog
 *   waits in the stream, unspent, until that breaker lets probes through, rather than
 *   failing fast one message after another.
 *
 * The pull loop asks {@link allowance} how much to pull and is told through
 * {@link onClose} when the gate closes; the invoker admits each delivery with
 * {@link tryAdmit} and reports how it ended with {@link finish}.
 */
export class Admission implements Gate {
  readonly breaker?: CircuitBreaker;
  readonly #now: () => number;
  readonly #closeListeners: Array<() => void> = [];
  /** Epoch ms until which nothing starts (a named breaker the handler uses is open). */
  #pausedUntil = 0;

  constructor(
    policy: CompiledBreaker | undefined,
    onBreakerChange: (from: BreakerState, to: BreakerState) => void = () => {},
    now: () => number = Date.now,
  ) {
    this.#now = now;
    if (policy) {
      this.breaker = new CircuitBreaker(policy, now, (from, to) => {
        onBreakerChange(from, to);
        if (to === "open") this.#closed();
      });
    }
  }

  /** `listener` runs whenever the gate closes: open pulls should end early. */
  onClose(listener: () => void): void {
    this.#closeListeners.push(listener);
  }

  /** Milliseconds until anything may start: 0 while the gate is open. */
  closedForMs(): number {
    return Math.max(this.#pausedUntil - this.#now(), this.breaker?.remainingOpenMs() ?? 0, 0);
  }

  /** How many deliveries may start now: unlimited, the free half-open probes, or 0. */
  allowance(): number {
    if (this.closedForMs() > 0) return 0;
    return this.breaker?.allowance() ?? Number.POSITIVE_INFINITY;
  }

  /** True while only probes may start (the function's breaker is half-open). */
  get probing(): boolean {
    return this.breaker !== undefined && this.breaker.state !== "closed";
  }

  /** Admits one delivery (a half-open probe counts), or refuses it. */
  tryAdmit(): boolean {
    if (this.#pausedUntil > this.#now()) return false;
    return this.breaker?.tryAcquire() ?? true;
  }

  /**
   * Reports how an admitted delivery ended, and returns, when a breaker it went through is
   * open (the function's, or a named one the handler used), how long to hold it: a
   * dependency's outage must not spend its attempts. Only handler errors, timeouts and
   * crashes speak of the dependency; a NonRetryableError, bad input, an open named breaker
   * or shutdown say nothing about it. A handler that met an open named breaker pauses the
   * function until that breaker lets probes through.
   */
  finish(outcome: Outcome, usedBreakers: ReadonlySet<NamedBreaker>): number | undefined {
    const breaker = this.breaker;
    if (breaker) {
      if (outcome.kind === "success") breaker.success();
      else if (outcome.kind === "timeout" || outcome.kind === "crashed") breaker.failure();
      else if (outcome.kind === "error" && !isNonRetryableError(outcome.error) && !isBreakerOpenError(outcome.error)) breaker.failure();
      else breaker.release();
    }
    if (outcome.kind === "error" && isBreakerOpenError(outcome.error)) this.pause(outcome.error.retryAfterMs);
    if (!breaker && usedBreakers.size === 0) return undefined;
    let hold: number | undefined;
    for (const used of [breaker, ...usedBreakers]) {
      if (used?.state === "open") hold = Math.max(hold ?? 0, used.remainingOpenMs());
    }
    return hold;
  }

  /** Nothing starts for `ms`. */
  pause(ms: number): void {
    const until = this.#now() + ms;
    if (until <= this.#pausedUntil) return;
    this.#pausedUntil = until;
    this.#closed();
  }

  #closed(): void {
    for (const listener of this.#closeListeners) listener();
  }
}

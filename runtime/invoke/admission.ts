import type { CompiledBreaker } from "../config/types.ts";
import type { BrokerFailure, BrokerHoldStatus } from "../contracts/broker.ts";
import type { Pause } from "../contracts/control.ts";
import type { Gate } from "../contracts/gate.ts";
import type { Outcome } from "../contracts/outcome.ts";
import type { BreakerState } from "../contracts/status.ts";
import { CircuitBreaker } from "../resilience/breaker.ts";
import type { NamedBreaker } from "../resilience/breaker-registry.ts";
import { isBreakerOpenError, isNonRetryableError, isStepError } from "../sdk/errors.ts";
import { BrokerHold, type BrokerWait, type BrokerWaits } from "./broker-hold.ts";

/**
 * While an operator's pause lasts, how long until those who wait on the gate look again
 * (they are also told at once through {@link Admission.onOpen}), and how long a delivery
 * handed back unrun is held.
 */
const PAUSED_RECHECK_MS = 1000;
/** The same while the broker refuses the function's outputs: that hold has no known end either. */
const BROKER_RECHECK_MS = 1000;

/** What `finish` is given for an invocation that used no named breaker. */
export const NO_BREAKERS: ReadonlySet<NamedBreaker> = new Set();

/**
 * Whether one function's deliveries may start: the one place that decides it. Four things
 * close the gate:
 * - an operator's pause (`jetfn pause`, see {@link setPaused}), until resumed;
 * - the function's own breaker (`breaker:` in yaml) while open; half-open, it admits only
 *   its probes;
 * - a hold: a handler met an open named breaker (`ctx.breaker(name)`), so the backlog
 *   waits in the stream, unspent, until that breaker lets probes through, rather than
 *   failing fast one message after another;
 * - the broker's hold: while a delivery's output or dead letter waits for the broker to
 *   take it (see {@link waitForBroker}), nothing new starts, until the last such publish
 *   is taken. Synchronous calls (`invoke:`) publish nothing to JetStream: it does not stop them.
 *
 * The pull loop asks {@link allowance} how much to pull and is told through
 * {@link onClose} when the gate closes and {@link onOpen} when a pause or the broker's
 * hold ends; the invoker admits each delivery with {@link tryAdmit} and reports how it
 * ended with {@link finish}.
 */
export class Admission implements Gate, BrokerWaits {
  readonly breaker?: CircuitBreaker;
  readonly #now: () => number;
  readonly #closeListeners = new Set<() => void>();
  readonly #openListeners = new Set<() => void>();
  readonly #brokerListeners = new Set<(hold: BrokerHoldStatus | undefined) => void>();
  readonly #broker: BrokerHold;
  /** Epoch ms until which nothing starts (a named breaker the handler uses is open). */
  #heldUntil = 0;
  #paused?: Pause;

  constructor(
    policy: CompiledBreaker | undefined,
    onBreakerChange: (from: BreakerState, to: BreakerState) => void = () => {},
    now: () => number = Date.now,
  ) {
    this.#now = now;
    this.#broker = new BrokerHold(now, (held) => {
      if (held) this.#closed();
      else this.#opened();
      for (const listener of [...this.#brokerListeners]) listener(this.#broker.status);
    });
    if (policy) {
      this.breaker = new CircuitBreaker(policy, now, (from, to) => {
        onBreakerChange(from, to);
        if (to === "open") this.#closed();
      });
    }
  }

  /** `listener` runs whenever the gate closes: open pulls should end early. Returns its removal. */
  onClose(listener: () => void): () => void {
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /** `listener` runs when a pause or the broker's hold ends: pulling may start again at once. Returns its removal. */
  onOpen(listener: () => void): () => void {
    this.#openListeners.add(listener);
    return () => this.#openListeners.delete(listener);
  }

  /**
   * Milliseconds until anything may start: 0 while the gate is open. A pause has no known
   * end: while it lasts, at least {@link PAUSED_RECHECK_MS}.
   */
  closedForMs(): number {
    let closed = Math.max(this.#heldUntil - this.#now(), this.breaker?.remainingOpenMs() ?? 0, 0);
    if (this.#paused) closed = Math.max(closed, PAUSED_RECHECK_MS);
    return this.#broker.held ? Math.max(closed, BROKER_RECHECK_MS) : closed;
  }

  /** While the broker refuses the function's outputs or dead letters: why, since when, how many wait. */
  get brokerHold(): BrokerHoldStatus | undefined {
    return this.#broker.status;
  }

  /**
   * A publish of a delivery's output or dead letter was refused by the broker and will be
   * retried in place: nothing new starts until every such wait has ended. Open pulls end
   * early and deliveries already pulled are handed back unrun, as for a pause.
   */
  waitForBroker(reason: BrokerFailure): BrokerWait {
    return this.#broker.waitForBroker(reason);
  }

  /** `listener` runs when the broker's hold starts (with its status) and ends (undefined). Returns its removal. */
  onBrokerHold(listener: (hold: BrokerHoldStatus | undefined) => void): () => void {
    this.#brokerListeners.add(listener);
    return () => this.#brokerListeners.delete(listener);
  }

  /** The operator's pause in force, if any. */
  get paused(): Pause | undefined {
    return this.#paused;
  }

  /**
   * Pauses the function (`jetfn pause`) or, with `undefined`, resumes it. Paused, nothing
   * starts: open pulls end early, and deliveries already pulled are handed back unrun;
   * those running finish. Resumed, pulling starts again at once (unless a breaker still holds).
   */
  setPaused(pause: Pause | undefined): void {
    const was = this.#paused;
    this.#paused = pause;
    if (pause && !was) this.#closed();
    else if (!pause && was) this.#opened();
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

  /**
   * Admits one delivery (a half-open probe counts), or refuses it. A synchronous call
   * (`"call"`) is not held by the broker's hold: its answer goes back to its caller, not to a stream.
   */
  tryAdmit(kind: "delivery" | "call" = "delivery"): boolean {
    if (this.#paused || this.#heldUntil > this.#now()) return false;
    if (kind === "delivery" && this.#broker.held) return false;
    return this.breaker?.tryAcquire() ?? true;
  }

  /**
   * Reports how an admitted delivery ended, and returns, when a breaker it went through is
   * open (the function's, or a named one the handler used), how long until it lets probes
   * through (the delivery's nak delay, `breakerOpenMs`): a
   * dependency's outage must not spend its attempts. Only handler errors, timeouts and
   * crashes speak of the dependency; a NonRetryableError, a StepError, bad input, an open
   * named breaker or shutdown say nothing about it. A handler that met an open named breaker holds the
   * function until that breaker lets probes through.
   */
  finish(outcome: Outcome, usedBreakers: ReadonlySet<NamedBreaker>): number | undefined {
    const breaker = this.breaker;
    if (breaker) {
      if (outcome.kind === "success") breaker.success();
      else if (outcome.kind === "timeout" || outcome.kind === "crashed") breaker.failure();
      else if (
        outcome.kind === "error" &&
        !isNonRetryableError(outcome.error) &&
        !isBreakerOpenError(outcome.error) &&
        !isStepError(outcome.error)
      )
        breaker.failure();
      else breaker.release();
    }
    if (outcome.kind === "error" && isBreakerOpenError(outcome.error)) this.hold(outcome.error.retryAfterMs);
    if (!breaker && usedBreakers.size === 0) return undefined;
    let openMs: number | undefined;
    for (const used of [breaker, ...usedBreakers]) {
      if (used?.state === "open") openMs = Math.max(openMs ?? 0, used.remainingOpenMs());
    }
    return openMs;
  }

  /** Nothing starts for `ms`. */
  hold(ms: number): void {
    const until = this.#now() + ms;
    if (until <= this.#heldUntil) return;
    this.#heldUntil = until;
    this.#closed();
  }

  #closed(): void {
    for (const listener of [...this.#closeListeners]) listener();
  }

  #opened(): void {
    for (const listener of [...this.#openListeners]) listener();
  }
}

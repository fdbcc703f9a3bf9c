/** `jetfn_breaker_state` values: 0 closed, 1 half-open, 2 open. */
import type { BreakerState } from "../contracts/status.ts";

export const BREAKER_STATE_VALUE: Readonly<Record<BreakerState, number>> = { closed: 0, "half-open": 1, open: 2 };

export interface BreakerPolicy {
  /** Consecutive failures that open the breaker. */
  readonly failureThreshold: number;
  /** How long it stays open before letting probes through. */
  readonly openForMs: number;
  /** Probes admitted at once while half-open; that many successes close it. */
  readonly halfOpenRequests: number;
}

/** A breaker's policy where neither `functions.yaml` nor `ctx.breaker(name, options)` sets one. */
export const DEFAULT_BREAKER_POLICY: BreakerPolicy = Object.freeze({ failureThreshold: 5, openForMs: 30_000, halfOpenRequests: 1 });

/**
 * A circuit breaker as a pure state machine over an injected clock:
 * closed -> open after `failureThreshold` consecutive failures; open -> half-open once
 * `openForMs` has passed (checked whenever the state is read); half-open admits
 * `halfOpenRequests` probes, closes after that many successes, re-opens on any failure.
 */
export class CircuitBreaker {
  readonly policy: BreakerPolicy;
  readonly #now: () => number;
  readonly #onTransition: (from: BreakerState, to: BreakerState) => void;
  #state: BreakerState = "closed";
  #failures = 0;
  #openUntil = 0;
  #probes = 0;
  #probeSuccesses = 0;

  constructor(
    policy: BreakerPolicy,
    now: () => number = Date.now,
    onTransition: (from: BreakerState, to: BreakerState) => void = () => {},
  ) {
    this.policy = policy;
    this.#now = now;
    this.#onTransition = onTransition;
  }

  get state(): BreakerState {
    if (this.#state === "open" && this.#now() >= this.#openUntil) this.#move("half-open");
    return this.#state;
  }

  /** Applies a pending open -> half-open transition (reading the state does the same). */
  refresh(): void {
    void this.state;
  }

  /** Milliseconds until an open breaker lets probes through; 0 when not open. */
  remainingOpenMs(): number {
    return this.state === "open" ? Math.max(0, this.#openUntil - this.#now()) : 0;
  }

  /** How many calls may start now: unlimited when closed, the free probes when half-open. */
  allowance(): number {
    switch (this.state) {
      case "closed":
        return Number.POSITIVE_INFINITY;
      case "half-open":
        return Math.max(0, this.policy.halfOpenRequests - this.#probes);
      case "open":
        return 0;
    }
  }

  /** Admits one call, or refuses it. Every admitted call ends in exactly one of success, failure or release. */
  tryAcquire(): boolean {
    const state = this.state;
    if (state === "closed") return true;
    if (state === "open" || this.#probes >= this.policy.halfOpenRequests) return false;
    this.#probes++;
    return true;
  }

  success(): void {
    if (this.#state === "half-open") {
      this.#probes = Math.max(0, this.#probes - 1);
      if (++this.#probeSuccesses >= this.policy.halfOpenRequests) this.#move("closed");
      return;
    }
    this.#failures = 0;
  }

  failure(): void {
    if (this.#state === "half-open") {
      this.#open();
      return;
    }
    if (this.#state === "closed" && ++this.#failures >= this.policy.failureThreshold) this.#open();
  }

  /** An admitted call that says nothing about the dependency (invalid input, say). */
  release(): void {
    if (this.#state === "half-open") this.#probes = Math.max(0, this.#probes - 1);
  }

  #open(): void {
    this.#openUntil = this.#now() + this.policy.openForMs;
    this.#move("open");
  }

  #move(to: BreakerState): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    this.#failures = 0;
    this.#probes = 0;
    this.#probeSuccesses = 0;
    this.#onTransition(from, to);
  }
}

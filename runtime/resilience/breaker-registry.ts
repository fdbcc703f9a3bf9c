import type { BreakerState } from "../contracts/status.ts";
import { parseDuration } from "../sdk/duration.ts";
import { BreakerOpenError } from "../sdk/errors.ts";
import type { Breaker, BreakerOptions } from "../sdk/types.ts";
import { type BreakerPolicy, CircuitBreaker, DEFAULT_BREAKER_POLICY } from "./breaker.ts";

/** Reports a named breaker's transition, with every function that has used it. */
export type BreakerListener = (name: string, from: BreakerState, to: BreakerState, functions: ReadonlySet<string>) => void;

interface Entry {
  readonly breaker: NamedBreaker;
  readonly functions: Set<string>;
}

/**
 * The host's named breakers (`ctx.breaker(name)`): one per name, shared by every
 * invocation of every function, created with the options of its first use.
 */
export class BreakerRegistry {
  readonly #entries = new Map<string, Entry>();
  readonly #now: () => number;
  readonly #listener: BreakerListener;

  constructor(listener: BreakerListener = () => {}, now: () => number = Date.now) {
    this.#listener = listener;
    this.#now = now;
  }

  /** The breaker named `name`, noting that `fn` uses it. */
  get(name: string, options: BreakerOptions | undefined, fn: string): NamedBreaker {
    let entry = this.#entries.get(name);
    if (!entry) {
      const functions = new Set<string>();
      const policy = this.#policy(name, options);
      const circuit = new CircuitBreaker(policy, this.#now, (from, to) => this.#listener(name, from, to, functions));
      entry = { breaker: new NamedBreaker(name, circuit), functions };
      this.#entries.set(name, entry);
    }
    if (!entry.functions.has(fn)) {
      entry.functions.add(fn);
      this.#listener(name, entry.breaker.state, entry.breaker.state, new Set([fn]));
    }
    return entry.breaker;
  }

  /** Applies pending open -> half-open transitions of every named breaker. */
  refresh(): void {
    for (const { breaker } of this.#entries.values()) breaker.refresh();
  }

  /** Names and states of the breakers `fn` has used. */
  statesOf(fn: string): Record<string, BreakerState> {
    const states: Record<string, BreakerState> = {};
    for (const [name, entry] of this.#entries) if (entry.functions.has(fn)) states[name] = entry.breaker.state;
    return states;
  }

  #policy(name: string, options: BreakerOptions = {}): BreakerPolicy {
    const openFor = options.openFor;
    let openForMs: number;
    try {
      openForMs = typeof openFor === "string" ? parseDuration(openFor) : (openFor ?? DEFAULT_BREAKER_POLICY.openForMs);
    } catch {
      openForMs = Number.NaN;
    }
    const policy = {
      failureThreshold: options.failureThreshold ?? DEFAULT_BREAKER_POLICY.failureThreshold,
      openForMs,
      halfOpenRequests: options.halfOpenRequests ?? DEFAULT_BREAKER_POLICY.halfOpenRequests,
    };
    const valid =
      Number.isInteger(policy.failureThreshold) &&
      policy.failureThreshold >= 1 &&
      Number.isFinite(policy.openForMs) &&
      policy.openForMs > 0 &&
      Number.isInteger(policy.halfOpenRequests) &&
      policy.halfOpenRequests >= 1;
    if (!valid) throw new TypeError(`ctx.breaker("${name}"): invalid options ${JSON.stringify(options)}`);
    return policy;
  }
}

/** What `ctx.breaker(name)` returns. */
export class NamedBreaker implements Breaker {
  readonly name: string;
  readonly #circuit: CircuitBreaker;

  constructor(name: string, circuit: CircuitBreaker) {
    this.name = name;
    this.#circuit = circuit;
  }

  get state(): BreakerState {
    return this.#circuit.state;
  }

  refresh(): void {
    this.#circuit.refresh();
  }

  /** Milliseconds until it lets a probe through; 0 when not open. */
  remainingOpenMs(): number {
    return this.#circuit.remainingOpenMs();
  }

  async execute<T>(fn: () => T | Promise<T>): Promise<T> {
    if (!this.tryAcquire()) throw new BreakerOpenError(this.name, this.remainingOpenMs() || 1000);
    let result: T;
    try {
      result = await fn();
    } catch (error) {
      this.failure();
      throw error;
    }
    this.success();
    return result;
  }

  /**
   * Admits one call, or refuses it; each admitted call ends in {@link success} or
   * {@link failure}. `execute()` does both; a handler in a worker thread does them apart.
   */
  tryAcquire(): boolean {
    return this.#circuit.tryAcquire();
  }

  success(): void {
    this.#circuit.success();
  }

  failure(): void {
    this.#circuit.failure();
  }
}

import { isDuration, parseDuration } from "./duration.ts";

/**
 * Brand carried by every error a handler may throw to steer settlement. Each handler is
 * its own bundle with its own copy of these classes, and may run in a worker thread, so
 * the host recognises them by this registered symbol. `instanceof` checks it too
 * (`Symbol.hasInstance`), so it works across bundles and for errors rebuilt after
 * crossing from a worker thread.
 */
export const ERROR_BRAND: unique symbol = Symbol.for("jetfn.error") as never;

export type ErrorKind = "non-retryable" | "retry-after" | "breaker-open" | "step";

interface Branded {
  readonly [ERROR_BRAND]: ErrorKind;
}

/**
 * Throw to fail the message for good: it goes to the dead-letter subject at once, without
 * retries (a declined card, a malformed order that no retry will fix).
 */
export class NonRetryableError extends Error implements Branded {
  static override [Symbol.hasInstance](value: unknown): boolean {
    return branded(this, NonRetryableError, value, "non-retryable");
  }

  readonly [ERROR_BRAND] = "non-retryable" as const;
  override readonly name = "NonRetryableError";

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * Throw to retry the message after a delay of your choosing rather than the function's
 * backoff (a 429 with `Retry-After`). It still counts as an attempt.
 */
export class RetryAfterError extends Error implements Branded {
  static override [Symbol.hasInstance](value: unknown): boolean {
    return branded(this, RetryAfterError, value, "retry-after");
  }

  readonly [ERROR_BRAND] = "retry-after" as const;
  override readonly name = "RetryAfterError";
  /** Milliseconds to wait before the next delivery. */
  readonly delayMs: number;

  /**
   * @param delay milliseconds, a duration (`"30s"`, the grammar of `functions.yaml`), or the moment to retry at.
   */
  constructor(message: string, delay: number | string | Date, options?: ErrorOptions) {
    super(message, options);
    this.delayMs = toDelayMs(delay);
  }
}

/**
 * Thrown by `ctx.breaker(name).execute()` while that breaker is open. A handler that lets
 * it escape has its message retried when the breaker lets probes through, without using
 * up an attempt: an outage of a dependency never dead-letters messages.
 */
export class BreakerOpenError extends Error implements Branded {
  static override [Symbol.hasInstance](value: unknown): boolean {
    return branded(this, BreakerOpenError, value, "breaker-open");
  }

  readonly [ERROR_BRAND] = "breaker-open" as const;
  override readonly name = "BreakerOpenError";
  /** The breaker's name. */
  readonly breaker: string;
  /** Milliseconds until the breaker lets a probe through. */
  readonly retryAfterMs: number;

  constructor(breaker: string, retryAfterMs: number) {
    super(`breaker ${breaker} is open`);
    this.breaker = breaker;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Why a `ctx.step` failed on jetfn's side rather than in the step's own code:
 * - `too-large`: its result's JSON is over `steps.maxResultSize`;
 * - `not-json`: its result does not survive `JSON.stringify` unchanged (a Date, a Map, a
 *   BigInt, NaN, a class instance, a cycle...);
 * - `busy`: another delivery of the same run is running the step now.
 */
export type StepProblem = "too-large" | "not-json" | "busy";

/**
 * Thrown by `ctx.step` when the step's result cannot be recorded (`too-large`, `not-json`:
 * the event is dead-lettered at once, as a retry would run the step's side effect again
 * and fail the same way), or when another delivery of the same run holds the step (`busy`:
 * the event is handed back after `retryAfterMs` without spending an attempt).
 */
export class StepError extends Error implements Branded {
  static override [Symbol.hasInstance](value: unknown): boolean {
    return branded(this, StepError, value, "step");
  }

  readonly [ERROR_BRAND] = "step" as const;
  override readonly name = "StepError";
  /** The step's name in its run (`charge`, or `charge#2` for the second call of that name). */
  readonly step: string;
  readonly problem: StepProblem;
  /** For `busy`: milliseconds until the event is tried again. */
  readonly retryAfterMs?: number;

  constructor(message: string, step: string, problem: StepProblem, retryAfterMs?: number) {
    super(message);
    this.step = step;
    this.problem = problem;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
  }
}

function toDelayMs(delay: number | string | Date): number {
  let value: number | undefined;
  if (delay instanceof Date) value = delay.getTime() - Date.now();
  else if (typeof delay === "string") value = isDuration(delay) ? parseDuration(delay) : undefined;
  else value = delay;
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new TypeError(`RetryAfterError: invalid delay ${String(delay)}`);
  }
  return Math.max(0, Math.round(value));
}

/** `instanceof` for the error classes: by brand for the class itself, by prototype for a subclass. */
function branded(cls: unknown, own: unknown, value: unknown, kind: ErrorKind): boolean {
  if (cls === own) return brandOf(value) === kind;
  return Function.prototype[Symbol.hasInstance].call(cls, value);
}

function brandOf(error: unknown): ErrorKind | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  return (error as Partial<Branded>)[ERROR_BRAND];
}

/** True for a `NonRetryableError` from any bundle. */
export function isNonRetryableError(error: unknown): error is NonRetryableError {
  return brandOf(error) === "non-retryable";
}

/** True for a `RetryAfterError` from any bundle (with a usable delay). */
export function isRetryAfterError(error: unknown): error is RetryAfterError {
  return brandOf(error) === "retry-after" && typeof (error as RetryAfterError).delayMs === "number";
}

/** True for a `BreakerOpenError` from any bundle. */
export function isBreakerOpenError(error: unknown): error is BreakerOpenError {
  return brandOf(error) === "breaker-open" && typeof (error as BreakerOpenError).retryAfterMs === "number";
}

/** True for a `StepError` from any bundle, or one rebuilt after crossing from a worker thread. */
export function isStepError(error: unknown): error is StepError {
  return brandOf(error) === "step" && typeof (error as StepError).problem === "string";
}

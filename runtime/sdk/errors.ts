import { isDuration, parseDuration } from "./duration.ts";

/**
 * Brand carried by every error a handler may throw to steer settlement. Each handler is
 * its own bundle with its own copy of these classes, and may run in a worker thread, so
 * the host recognises them by this registered symbol. `instanceof` checks it too
 * (`Symbol.hasInstance`), so it works across bundles and for errors rebuilt after
 * crossing from a worker thread.
 */
export const ERROR_BRAND: unique symbol = Symbol.for("jetfn.error") as never;

export type ErrorKind = "non-retryable" | "retry-after" | "breaker-open";

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

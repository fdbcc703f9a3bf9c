import type { CompiledRetry } from "../config/types.ts";
import { backoffDelay } from "../resilience/backoff.ts";
import { isBreakerOpenError, isNonRetryableError, isRetryAfterError } from "../sdk/errors.ts";

/** What happened to one delivery, before we decide what to tell the server. */
export type Outcome =
  | { readonly kind: "success"; readonly value: unknown }
  | { readonly kind: "error"; readonly error: unknown }
  | { readonly kind: "timeout"; readonly timeoutMs: number }
  /** Cut off by shutdown after the grace period. */
  | { readonly kind: "aborted" }
  | { readonly kind: "undecodable"; readonly error: Error }
  | { readonly kind: "invalid"; readonly error: Error };

/** `jetfn_dead_letters_total{reason}` values. */
export type DeadLetterReason = "non-retryable" | "attempts-exhausted" | "undecodable" | "invalid";

/** The one terminal action for a delivery (DESIGN.md, outcome table). */
export type Settlement =
  | { readonly action: "ack"; readonly output: unknown }
  | { readonly action: "nak"; readonly delayMs: number; readonly error: string }
  | { readonly action: "dead-letter"; readonly reason: DeadLetterReason; readonly error: string };

/** `jetfn_invocations_total{outcome}` values. */
export type InvocationOutcome = "success" | "error" | "timeout" | "invalid";

/** Maps an outcome to the `outcome` label of `jetfn_invocations_total`. */
export function invocationOutcome(outcome: Outcome): InvocationOutcome {
  switch (outcome.kind) {
    case "success":
    case "error":
    case "timeout":
      return outcome.kind;
    case "aborted":
      return "timeout";
    case "undecodable":
    case "invalid":
      return "invalid";
  }
}

/**
 * Decides the terminal action for one delivery. Pure: the same inputs give the same
 * answer, so every row of the outcome table is a unit test.
 *
 * - success: ack (the caller publishes `output` first, if the function has one);
 * - aborted by shutdown: nak with no delay, so another replica takes it at once;
 * - `NonRetryableError`, undecodable payload, schema failure: dead-letter at once;
 * - `BreakerOpenError` (a named breaker refused the call): nak until it lets probes
 *   through, whatever the delivery count: a dependency outage never dead-letters;
 * - any other failure while the function's breaker is open (`holdMs` given): nak until
 *   it half-opens, for the same reason;
 * - any other failure (including `RetryAfterError` and timeouts) on the last allowed
 *   delivery (`deliveryCount >= maxAttempts`): dead-letter as attempts-exhausted;
 * - `RetryAfterError`: nak with its delay; other failures: nak with the backoff delay.
 *
 * @param holdMs set while the function's breaker is open: milliseconds until it half-opens.
 */
export function settle(
  outcome: Outcome,
  deliveryCount: number,
  retry: CompiledRetry,
  random: () => number = Math.random,
  holdMs?: number,
): Settlement {
  switch (outcome.kind) {
    case "success":
      return { action: "ack", output: outcome.value };
    case "aborted":
      return { action: "nak", delayMs: 0, error: "aborted by shutdown" };
    case "undecodable":
    case "invalid":
      return { action: "dead-letter", reason: outcome.kind, error: errorMessage(outcome.error) };
    case "timeout":
    case "error": {
      const error =
        outcome.kind === "timeout" ? `timed out after ${outcome.timeoutMs}ms` : errorMessage(outcome.error);
      if (outcome.kind === "error" && isNonRetryableError(outcome.error)) {
        return { action: "dead-letter", reason: "non-retryable", error };
      }
      if (outcome.kind === "error" && isBreakerOpenError(outcome.error)) {
        return { action: "nak", delayMs: outcome.error.retryAfterMs, error };
      }
      if (holdMs !== undefined) return { action: "nak", delayMs: holdMs, error };
      if (deliveryCount >= retry.maxAttempts) {
        return { action: "dead-letter", reason: "attempts-exhausted", error };
      }
      const delayMs =
        outcome.kind === "error" && isRetryAfterError(outcome.error)
          ? outcome.error.delayMs
          : backoffDelay(retry, deliveryCount, random);
      return { action: "nak", delayMs, error };
    }
  }
}

/**
 * One line describing anything a handler may throw (an Error, a string, undefined),
 * safe for a NATS header value and a log field.
 */
export function errorMessage(error: unknown): string {
  let text: string;
  if (error instanceof Error || (typeof error === "object" && error !== null && "message" in error)) {
    const { name, message } = error as { name?: unknown; message?: unknown };
    text = typeof name === "string" && name !== "Error" ? `${name}: ${String(message)}` : String(message);
  } else {
    try {
      text = typeof error === "string" ? error : `non-error thrown: ${String(error)}`;
    } catch {
      text = "non-error thrown";
    }
  }
  const oneLine = text.replace(/[\r\n\t]+/g, " ").trim();
  return oneLine.length > 1000 ? `${oneLine.slice(0, 997)}...` : oneLine || "unknown error";
}

import type { CompiledRetry } from "../config/types.ts";
import { errorMessage } from "../contracts/error-message.ts";
import type { InvocationOutcome, Outcome, Settlement } from "../contracts/outcome.ts";
import { backoffDelay } from "../resilience/backoff.ts";
import { isBreakerOpenError, isNonRetryableError, isRetryAfterError, isStepError } from "../sdk/errors.ts";

/**
 * Maps an outcome to the `outcome` label of `jetfn_invocations_total`; undefined for a
 * delivery that was not invoked at all (the poison guard).
 */
export function invocationOutcome(outcome: Outcome): InvocationOutcome | undefined {
  switch (outcome.kind) {
    case "success":
    case "error":
    case "timeout":
    case "crashed":
      return outcome.kind;
    case "aborted":
      // Handed back before it started (its function paused, or its breaker opened): it never
      // ran. Revoked or expired: the run belongs to the event's next delivery, which counts it.
      if (outcome.cause === "released" || outcome.cause === "revoked" || outcome.cause === "expired") return undefined;
      return outcome.cause === "bystander" ? "crashed" : "timeout";
    case "undecodable":
    case "invalid":
      return "invalid";
    case "exhausted":
      return undefined;
    case "duplicate":
      return "duplicate";
  }
}

/**
 * Decides the terminal action for one delivery. Pure: the same inputs give the same
 * answer, so every row of the outcome table is a unit test.
 *
 * - success: ack (the caller publishes `output` first, if the function has one);
 * - duplicate (a run that completed before): ack, publishing nothing, or for an idempotency
 *   key the first run's output again (under the first run's `Nats-Msg-Id`);
 * - aborted (by shutdown, or as a bystander of a terminated thread): nak with no delay, so
 *   another replica, or a fresh thread, takes it at once;
 * - delivered more often than `maxAttempts` allows before it ran (`exhausted`): dead-letter
 *   as attempts-exhausted without running it;
 * - `NonRetryableError`, undecodable payload, schema failure: dead-letter at once;
 * - `BreakerOpenError` (a named breaker refused the call): nak until it lets probes
 *   through, whatever the delivery count: a dependency outage never dead-letters;
 * - `StepError`: a step's result that cannot be recorded (too large, not JSON) dead-letters
 *   at once (a retry would run its side effect again); a step another delivery of the run
 *   holds (busy) naks after its `retryAfterMs`, whatever the delivery count;
 * - any other failure while a breaker it went through is open (`breakerOpenMs` given): nak until
 *   it half-opens, for the same reason;
 * - any other failure (including `RetryAfterError`, timeouts and crashes) on the last
 *   allowed attempt (`attempt >= maxAttempts`): dead-letter as attempts-exhausted, or as
 *   crashed for a crash;
 * - `RetryAfterError`: nak with its delay; other failures: nak with the backoff delay.
 *
 * @param attempt this delivery's attempt, 1-based: the server's delivery count less the
 *   deliveries that did not spend one (see {@link spendsAttempt}).
 * @param breakerOpenMs set while a breaker the delivery went through is open (the function's, or a
 *   named one): milliseconds until it lets probes through.
 */
export function settle(
  outcome: Outcome,
  attempt: number,
  retry: CompiledRetry,
  random: () => number = Math.random,
  breakerOpenMs?: number,
): Settlement {
  switch (outcome.kind) {
    case "success":
      return { action: "ack", output: outcome.value };
    case "duplicate":
      // Its output was published before its record was written; an idempotency key's is published again under its first id.
      return { action: "ack", output: outcome.output?.value };
    case "aborted":
      if (outcome.cause === "released") {
        return {
          action: "nak",
          delayMs: 0,
          error: "handed back unrun: the function paused or its breaker opened while it waited for a slot",
        };
      }
      if (outcome.cause === "revoked") {
        // Never sent (the delivery is fenced): the partition's next owner settles the event.
        return { action: "nak", delayMs: 0, error: "cut off: this host lost the lease of the event's partition" };
      }
      if (outcome.cause === "expired") {
        // Never sent (the invoker settles nothing of it): the event's next delivery does.
        return { action: "nak", delayMs: 0, error: "expired: its ack wait ran out while this host stalled" };
      }
      return outcome.cause === "bystander"
        ? {
            action: "nak",
            delayMs: 0,
            error: "its worker thread was ended for another invocation (a hard timeout, or its partition's lease lost)",
          }
        : { action: "nak", delayMs: 0, error: "aborted by shutdown" };
    case "undecodable":
    case "invalid":
      return { action: "dead-letter", reason: outcome.kind, error: errorMessage(outcome.error) };
    case "exhausted":
      return {
        action: "dead-letter",
        reason: "attempts-exhausted",
        // Only what is known: this host did not see those deliveries fail in its handler.
        error: `not run: attempt ${outcome.attempts} is past retry.maxAttempts (${retry.maxAttempts}); its earlier deliveries were not settled by a failure of its handler on this host: they ran on another replica, on a host that stopped or crashed while running them, or outlived their ack wait`,
      };
    case "timeout":
    case "crashed":
    case "error": {
      const error =
        outcome.kind === "timeout"
          ? `timed out after ${outcome.timeoutMs}ms`
          : outcome.kind === "crashed"
            ? outcome.error
            : errorMessage(outcome.error);
      if (outcome.kind === "error" && isNonRetryableError(outcome.error)) {
        return { action: "dead-letter", reason: "non-retryable", error };
      }
      if (outcome.kind === "error" && isBreakerOpenError(outcome.error)) {
        return { action: "nak", delayMs: outcome.error.retryAfterMs, error };
      }
      if (outcome.kind === "error" && isStepError(outcome.error)) {
        const { problem, retryAfterMs } = outcome.error;
        if (problem === "too-large" || problem === "not-json") return { action: "dead-letter", reason: `step-${problem}`, error };
        if (problem === "busy") return { action: "nak", delayMs: retryAfterMs ?? 1000, error };
      }
      if (breakerOpenMs !== undefined) return { action: "nak", delayMs: breakerOpenMs, error };
      if (attempt >= retry.maxAttempts) {
        return { action: "dead-letter", reason: outcome.kind === "crashed" ? "crashed" : "attempts-exhausted", error };
      }
      const delayMs =
        outcome.kind === "error" && isRetryAfterError(outcome.error) ? outcome.error.delayMs : backoffDelay(retry, attempt, random);
      return { action: "nak", delayMs, error };
    }
  }
}

/**
 * Whether a nak for this outcome spends one of the message's attempts. Shutdown, a thread
 * terminated for another invocation, a step held by another delivery of the run, and an open breaker (the function's while it holds
 * failures, or a named one the handler met) are not the message's fault: the redelivery
 * the nak causes is not counted against `retry.maxAttempts`.
 */
export function spendsAttempt(outcome: Outcome, breakerOpenMs?: number): boolean {
  if (outcome.kind === "aborted") return false;
  if (outcome.kind === "error" && isBreakerOpenError(outcome.error)) return false;
  if (outcome.kind === "error" && isStepError(outcome.error) && outcome.error.problem === "busy") return false;
  return breakerOpenMs === undefined;
}

import type { DeadLetterReason } from "./dead-letter.ts";

/**
 * How one delivery or call ended, and what the host does about it: the words that
 * settlement (`invoke/outcome-table.ts`), the executors, metrics and the test kit share.
 */

/** What happened to one delivery, before we decide what to tell the server. */
export type Outcome =
  | { readonly kind: "success"; readonly value: unknown }
  | { readonly kind: "error"; readonly error: unknown }
  | { readonly kind: "timeout"; readonly timeoutMs: number }
  /**
   * Cut off through no fault of its own: by shutdown after the grace period, as a
   * bystander on a worker thread terminated for another invocation's hard timeout, or
   * released unrun from its thread's waiting room when the function paused or its breaker
   * opened, or revoked: its ordered function lost the partition's lease, and another
   * replica runs the event (nothing of this run is sent), or expired: its delivery's ack
   * wait ran out while this host stalled, and the server delivers it again (nothing sent).
   */
  | { readonly kind: "aborted"; readonly cause?: "shutdown" | "bystander" | "released" | "revoked" | "expired" }
  /** Its worker thread ended under it: out of memory, `process.exit()`, an uncaught error. */
  | { readonly kind: "crashed"; readonly reason: CrashReason; readonly error: string }
  | { readonly kind: "undecodable"; readonly error: Error }
  | { readonly kind: "invalid"; readonly error: Error }
  /** Not run: delivered more often than `retry.maxAttempts` allows (the poison guard). */
  | { readonly kind: "exhausted"; readonly attempts: number }
  /**
   * Not run: a delivery of a run that already completed (its completion record says so: the
   * ack was lost, or its host died between recording and acking), or an event whose
   * idempotency key ran before. Acked; a run's output was published before its record was
   * written. `output`: the first run's, for an idempotency key, published again under the
   * first run's `Nats-Msg-Id`.
   */
  | { readonly kind: "duplicate"; readonly output?: { readonly value: unknown; readonly msgId: string } };

/** Why a worker thread crashed, or was ended for a hard timeout: `crashed` outcomes' reasons. */
export type CrashReason = "timeout" | "out-of-memory" | "exit" | "uncaught" | "load";

/**
 * Why a worker thread ended when nobody closed it: `jetfn_worker_restarts_total{reason}`
 * values. `lease-lost`: the host ended it because an ordered function's event ran in it
 * when the lease of the event's partition was lost.
 */
export type ThreadEndReason = CrashReason | "lease-lost";

/** The one terminal action for a delivery (DESIGN.md, outcome table). */
export type Settlement =
  | { readonly action: "ack"; readonly output: unknown }
  | { readonly action: "nak"; readonly delayMs: number; readonly error: string }
  | { readonly action: "dead-letter"; readonly reason: DeadLetterReason; readonly error: string };

/** `jetfn_invocations_total{outcome}` values. */
export type InvocationOutcome = "success" | "error" | "timeout" | "invalid" | "crashed" | "duplicate";

/** `jetfn_dead_letters_total{reason}` values (the `Jetfn-Reason` header's). */
export type { DeadLetterReason };

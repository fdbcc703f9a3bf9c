import type { Context, Span } from "@opentelemetry/api";
import type { BatchSettle } from "../contracts/batch.ts";
import type { Delivery } from "../contracts/delivery.ts";
import type { Outcome } from "../contracts/outcome.ts";
import type { NamedBreaker } from "../resilience/breaker-registry.ts";
import type { Deadline } from "./run.ts";

/** One admitted delivery on its way through an executor. */
export interface Invocation {
  readonly delivery: Delivery;
  /** The delivery's CONSUMER span. */
  readonly span: Span;
  /** The delivery's trace context (its span): the parent of what the handler publishes. */
  readonly context: Context;
  /** Named breakers the handler went through (`ctx.breaker`); made when it uses the first. */
  breakers?: Set<NamedBreaker>;
  /** Set when the handler called `ctx.step`: a success then writes the run's completion record. */
  stepped?: true;
  /** `ctx.working()`: resets the message's ack timer, and counts it. */
  working(): void;
  /** A synchronous call (HTTP `invoke:` route, NATS request), not a delivery. */
  readonly call?: true;
}

/**
 * One admitted batch (`batch:`): its messages, in order, and how the handler settles one of
 * them before the batch ends. `delivery` is its first message (the batch's span and
 * context are the batch's own).
 */
export interface BatchInvocation extends Invocation {
  readonly batch: readonly Delivery[];
  /** Message `index` settled (by the handler, or found invalid); the first settle of each wins. */
  settle(index: number, how: BatchSettle): void;
}

/**
 * Runs a function's handler for one delivery and tells how it ended: decode, validate
 * (the handler's schema), invoke. It is the only part of a delivery's way that differs
 * between `isolation: none` (in the host's thread) and `isolation: worker` (in a worker
 * thread); admission, the deadline, heartbeats, settlement, metrics and spans stay around
 * it in the invoker.
 */
export interface Executor {
  /**
   * Never rejects. The invoker's deadline may settle the delivery before this resolves;
   * `deadline` tells when: on the timeout, or at shutdown.
   */
  run(invocation: Invocation, deadline: Deadline): Promise<Outcome>;
  /**
   * Runs a batch handler (`defineBatchFunction`) on a batch: never rejects; the outcome is the
   * batch's (success, error), for the messages it did not settle through `batch.settle`.
   */
  runBatch?(batch: BatchInvocation, deadline: Deadline): Promise<Outcome>;
  /**
   * Deliveries it holds beyond the function's `concurrency`, waiting in it for a slot (a
   * worker thread starts the next one as soon as a slot frees, without a trip to the host).
   * The function's capacity counts them, and heartbeats every running delivery then.
   */
  readonly waitingRoom: number;
  /**
   * Makes it ready to run deliveries at once (a worker thread started); with `keep`, from
   * then on, idle or not. See `WorkerExecutor.warm`.
   */
  warm?(options: { readonly keep: boolean }): Promise<void>;
  /** What `/functions` shows about how the function runs (its threads), if anything. */
  status(): Record<string, unknown> | undefined;
  /** Releases what the executor holds (threads). */
  close(): Promise<void>;
}

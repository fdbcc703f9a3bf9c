import type { Publisher } from "./delivery.ts";

/**
 * Why the broker did not take a publish of ours (an output or a dead letter): the
 * `reason` values of `jetfn_output_failures_total`, and of a function's `brokerHold`.
 * - `storage-full`: JetStream's store, or a stream's limits with `discard: new`, refused it;
 * - `timeout`: no answer in time (a stream leader election, an overloaded server);
 * - `no-responders`: nothing answered for the subject (no stream captures it, or JetStream
 *   is unavailable);
 * - `disconnected`: the host has no connection to the broker;
 * - `refused`: any other refusal (a permission, an API error).
 */
export const BROKER_FAILURES = ["storage-full", "timeout", "no-responders", "disconnected", "refused"] as const;

export type BrokerFailure = (typeof BROKER_FAILURES)[number];

/**
 * `jetfn_output_failures_total{reason}` values: the broker's failures, and `too-large`, a
 * publish refused for the message's own size (the stream's max_msg_size), which no retry helps.
 */
export const OUTPUT_FAILURE_REASONS = [...BROKER_FAILURES, "too-large"] as const;

export type OutputFailureReason = (typeof OUTPUT_FAILURE_REASONS)[number];

/**
 * A publisher that tells the broker's failures from the message's own: what settlement
 * publishes outputs and dead letters through (the nats layer reads the client's typed
 * errors; invoke/ sees only the answer).
 */
export interface BrokerPublisher extends Publisher {
  /**
   * Why the broker did not take a publish that failed with `error`, or undefined when the
   * message itself is at fault (larger than the server's max_payload or the stream's
   * max_msg_size): no retry can help then.
   */
  failureOf(error: unknown): BrokerFailure | undefined;
}

/** While a function's publishes wait for the broker: why, since when, how many wait. */
export interface BrokerHoldStatus {
  /** The latest refusal's reason. */
  readonly reason: BrokerFailure;
  /** ISO 8601: when the first of them was refused. */
  readonly since: string;
  /** Deliveries whose output or dead letter waits for the broker now. */
  readonly waiting: number;
}

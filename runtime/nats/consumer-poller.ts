import type { JetStreamManager } from "@nats-io/jetstream";
import type { CompiledFunction } from "../config/types.ts";
import { forwardsOrdered } from "../contracts/ordered.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { Periodic } from "./periodic.ts";
import { partitionConsumer } from "./provision.ts";

/** A function's consumer as last seen on the server. */
export interface ConsumerSample {
  /** Messages in the stream not yet delivered to the consumer. */
  readonly pending: number;
  /** Delivered to some replica and not yet acked. */
  readonly ackPending: number;
  readonly sampledAt: Date;
}

/**
 * Polls each function's consumer info on an interval (never per message) into
 * `jetfn_consumer_pending_messages` and `jetfn_consumer_ack_pending_messages`, and keeps
 * the last sample for `/functions`. A failed poll (disconnected) keeps the last values.
 */
export class ConsumerPoller {
  readonly #jsm: JetStreamManager;
  readonly #functions: readonly CompiledFunction[];
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #samples = new Map<string, ConsumerSample>();
  readonly #polls = new Periodic(() => this.#poll());

  constructor(jsm: JetStreamManager, functions: readonly CompiledFunction[], metrics: Metrics, log: Logger) {
    this.#jsm = jsm;
    this.#functions = functions;
    this.#metrics = metrics;
    this.#log = log;
  }

  /** Polls now, then every `intervalMs`. */
  start(intervalMs = 5000): void {
    this.#polls.start(intervalMs);
  }

  stop(): Promise<void> {
    return this.#polls.stop();
  }

  sample(fn: string): ConsumerSample | undefined {
    return this.#samples.get(fn);
  }

  async #poll(): Promise<void> {
    await Promise.all(
      this.#functions.map(async (fn) => {
        try {
          const sample = { ...(await this.#counts(fn)), sampledAt: new Date() };
          this.#samples.set(fn.name, sample);
          this.#metrics.consumerPending.set({ function: fn.name }, sample.pending);
          this.#metrics.consumerAckPending.set({ function: fn.name }, sample.ackPending);
        } catch (error) {
          this.#log.debug({ function: fn.name, err: error }, "consumer info poll failed");
        }
      }),
    );
  }

  /**
   * A function's backlog and what it holds un-acked. An ordered function with one partition
   * reads its stream through that partition's durable. With more, an event waits either in
   * its stream (for the forwarder) or in one partition's subject: the backlog is their sum.
   */
  async #counts(fn: CompiledFunction): Promise<{ pending: number; ackPending: number }> {
    const consumers = fn.ordering
      ? [...(forwardsOrdered(fn) ? [fn] : []), ...Array.from({ length: fn.ordering.partitions }, (_, p) => partitionConsumer(fn, p))]
      : [fn];
    const infos = await Promise.all(consumers.map((c) => this.#jsm.consumers.info(c.stream, c.durable)));
    return {
      pending: infos.reduce((sum, info) => sum + info.num_pending, 0),
      ackPending: infos.reduce((sum, info) => sum + info.num_ack_pending, 0),
    };
  }
}

import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { CompiledFunction, CompiledOrdering } from "../config/types.ts";
import type { Delivery } from "../contracts/delivery.ts";
import type { Gate } from "../contracts/gate.ts";
import { PartitionLeases } from "../nats/leases.ts";
import { ensureConsumer, partitionConsumer, rewindConsumer } from "../nats/provision.ts";
import { PullLoop } from "../nats/pull-loop.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { orderingKey, partitionOf } from "./key.ts";
import { KeyLanes, Slots, type RunResult } from "./lanes.ts";

export interface OrderedFunctionDeps {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** The `JETFN_LEASES` bucket. */
  readonly kv: KV;
  readonly fn: CompiledFunction;
  readonly hostId: string;
  /** Runs one event to its settlement (the invoker). */
  readonly run: (delivery: Delivery) => Promise<RunResult>;
  readonly admission: Gate;
  readonly metrics: Metrics;
  readonly log: Logger;
}

/** One owned partition: its durable's pull loop and its key lanes. */
interface Owned {
  readonly loop: PullLoop;
  readonly lanes: KeyLanes;
  /** Resolves once the consumer is bound (rewound if needed) and pulling. */
  readonly started: Promise<void>;
}

/**
 * Events held per partition beyond the concurrency: events that wait behind their key must
 * not keep other keys' events from being pulled.
 */
const HELD_PER_SLOT = 8;

/**
 * An ordered function on this host: the partitions it holds leases for, each read through
 * its own durable, its events in key lanes. Partitions move between replicas with their
 * leases (`JETFN_LEASES`); a partition taken over starts from its durable's ack floor, so a
 * key's unfinished event comes before any later one.
 */
export class OrderedFunction {
  readonly #deps: OrderedFunctionDeps;
  readonly #ordering: CompiledOrdering;
  readonly #log: Logger;
  readonly #slots: Slots;
  readonly #owned = new Map<number, Owned>();
  readonly #leases: PartitionLeases;
  /** Partitions being let go: their running events finish first. */
  readonly #leaving = new Set<Promise<void>>();
  #started = false;

  constructor(deps: OrderedFunctionDeps) {
    this.#deps = deps;
    this.#ordering = deps.fn.ordering!;
    this.#log = deps.log.child({ function: deps.fn.name });
    this.#slots = new Slots(deps.fn.concurrency);
    const labels = { function: deps.fn.name };
    deps.metrics.partitionsOwned.set(labels, 0);
    this.#leases = new PartitionLeases({
      kv: deps.kv,
      function: deps.fn.name,
      partitions: this.#ordering.partitions,
      hostId: deps.hostId,
      ttlMs: this.#ordering.leaseTtlMs,
      log: this.#log,
      events: {
        acquired: (partition, reason) => {
          deps.metrics.leaseChanges.inc({ ...labels, reason });
          this.#acquire(partition);
        },
        lost: (partition, reason) => {
          deps.metrics.leaseChanges.inc({ ...labels, reason });
          this.#leave(partition);
        },
        release: (partition) => {
          deps.metrics.leaseChanges.inc({ ...labels, reason: "released" });
          return this.#leave(partition);
        },
      },
    });
  }

  /** Joins the function's replicas: takes its share of the partitions. */
  async start(): Promise<void> {
    await this.#leases.start();
    this.#started = true;
  }

  /** Taking part: leases started, and every owned partition's durable pulling. */
  get bound(): boolean {
    return this.#started && [...this.#owned.values()].every(({ loop }) => loop.bound);
  }

  /** Ends open pulls early (a reconnect): they are made anew. */
  interrupt(): void {
    for (const { loop } of this.#owned.values()) loop.interrupt();
  }

  /** Stops pulling every partition; running events go on (see {@link settled}). */
  async stop(): Promise<void> {
    await Promise.all([...this.#owned.values()].map(({ loop }) => loop.stop()));
  }

  /**
   * After {@link stop}: resolves when no event runs here. Events held and not started are let
   * go, un-acked, for the partition's next owner.
   */
  async settled(): Promise<void> {
    await Promise.all(
      [...this.#owned.values()].map(async ({ loop, lanes }) => {
        await lanes.settled();
        lanes.drop();
        await loop.settled();
      }),
    );
    await Promise.all(this.#leaving);
  }

  /** Hands every partition to the other replicas (after {@link stop} and {@link settled}). */
  async release(): Promise<void> {
    await this.#leases.stop();
    await Promise.all(this.#leaving);
  }

  /** What `/functions` shows. */
  status(): Record<string, unknown> {
    const owners = Object.fromEntries([...this.#leases.owners()].map(([partition, owner]) => [partition, owner]));
    let waiting = 0;
    for (const { lanes } of this.#owned.values()) waiting += lanes.size - lanes.running;
    return {
      ordering: {
        key: this.#ordering.key,
        partitions: this.#ordering.partitions,
        host: this.#deps.hostId,
        owned: [...this.#owned.keys()].sort((a, b) => a - b),
        owners,
        replicas: this.#leases.members(),
        waiting,
      },
    };
  }

  #acquire(partition: number): void {
    if (this.#owned.has(partition)) return;
    const { fn, js, jsm, metrics } = this.#deps;
    const consumer = partitionConsumer(fn, partition);
    const labels = { function: fn.name };
    const lanes = new KeyLanes({
      slots: this.#slots,
      mayStart: () => this.#leases.owns(partition),
      heartbeatMs: Math.max(100, fn.ackWaitMs / 2),
      waited: (seconds) => metrics.keyWait.observe(labels, seconds),
      run: this.#deps.run,
    });
    const spec = this.#ordering.key;
    const partitions = this.#ordering.partitions;
    const loop = new PullLoop(
      js,
      fn,
      (delivery) => {
        const key = orderingKey(delivery, spec);
        // Every partition's durable sees every event: another partition's is acked at once.
        if (partitionOf(key, partitions) !== partition) {
          delivery.ack();
          return Promise.resolve();
        }
        return lanes.add(key, delivery);
      },
      this.#log,
      {
        durable: consumer.durable,
        capacity: fn.concurrency * HELD_PER_SLOT,
        // One pull at a time: deliveries are taken in stream order.
        maxPulls: 1,
        admission: this.#deps.admission,
        rebind: async () => {
          if (this.#leases.owns(partition)) await ensureConsumer(jsm, consumer, this.#log);
        },
      },
    );
    const started = (async () => {
      try {
        await ensureConsumer(jsm, consumer, this.#log);
        await rewindConsumer(jsm, consumer, this.#log);
      } catch (error) {
        this.#log.warn({ err: error, partition }, "binding the partition's consumer failed; the pull loop retries");
      }
      if (this.#owned.get(partition)?.loop === loop) loop.start();
    })();
    this.#owned.set(partition, { loop, lanes, started });
    metrics.partitionsOwned.set(labels, this.#owned.size);
  }

  /**
   * Stops starting the partition's events and pulling them; resolves once its running
   * events settled. Events it held and did not start stay un-acked for the next owner.
   */
  #leave(partition: number): Promise<void> {
    const owned = this.#owned.get(partition);
    if (!owned) return Promise.resolve();
    this.#owned.delete(partition);
    this.#deps.metrics.partitionsOwned.set({ function: this.#deps.fn.name }, this.#owned.size);
    const leaving = (async () => {
      await owned.started;
      await owned.loop.stop();
      owned.lanes.drop();
      await owned.lanes.settled();
      await owned.loop.settled();
      owned.lanes.close();
    })();
    this.#leaving.add(leaving);
    void leaving.finally(() => this.#leaving.delete(leaving));
    return leaving;
  }
}

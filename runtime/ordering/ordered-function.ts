import { setTimeout as sleep } from "node:timers/promises";
import type { CompiledFunction, CompiledOrdering } from "../config/types.ts";
import type { Delivery } from "../contracts/delivery.ts";
import { eventKey } from "../contracts/event-key.ts";
import type { Gate } from "../contracts/gate.ts";
import { forwarded, forwardsOrdered } from "../contracts/ordered.ts";
import type { Heartbeats } from "../invoke/heartbeats.ts";
import type { NatsClients } from "../nats/clients.ts";
import { type KV, PartitionLeases } from "../nats/leases.ts";
import { ensureConsumer, partitionConsumer, rewindConsumer } from "../nats/provision.ts";
import { PullLoop } from "../nats/pull-loop.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { PartitionFence } from "./fence.ts";
import { Forwarder } from "./forwarder.ts";
import { KeyLanes, type RunResult, Slots } from "./lanes.ts";

export interface OrderedFunctionDeps {
  readonly nc: NatsClients["nc"];
  readonly js: NatsClients["js"];
  readonly jsm: NatsClients["jsm"];
  /** The `JETFN_LEASES` bucket. */
  readonly kv: KV;
  readonly fn: CompiledFunction;
  readonly hostId: string;
  /** Runs one event to its settlement (the invoker). */
  readonly run: (delivery: Delivery) => Promise<RunResult>;
  readonly admission: Gate;
  /** The function's heartbeats: they keep the events waiting for their key alive. */
  readonly heartbeats: Heartbeats;
  readonly metrics: Metrics;
  readonly log: Logger;
}

/** One owned partition: its durable's pull loop and its key lanes. */
interface Owned {
  readonly loop: PullLoop;
  readonly lanes: KeyLanes;
  /** Revoked when the lease is lost: its runs are cut off and nothing of them is sent. */
  readonly fence: PartitionFence;
  /** Aborted when the partition is let go: a wait for the previous owner ends. */
  readonly leaving: AbortController;
  /** Until when (epoch ms) it waits for the previous owner's runs to end; 0 once pulling. */
  takeoverUntil: number;
  /** Resolves once the consumer is bound (rewound if needed) and pulling. */
  readonly started: Promise<void>;
}

/**
 * Events held per partition beyond the concurrency: events that wait behind their key must
 * not keep other keys' events from being pulled.
 */
const HELD_PER_SLOT = 8;

/**
 * How long a host that took a partition over from an owner that lost its lease waits, in
 * `worker` isolation, before it starts the partition's events: time for the old owner to
 * end the worker thread its runs were in. The old owner ends it when its lease deadline
 * passes, which is at least the lease margin (ttl/4, at least 250 ms) before the takeover.
 */
const THREAD_END_MS = 1000;

/** A partition's durable that could not be made or rewound (JetStream unavailable for now) is tried again this much later. */
const BIND_RETRY_MS = 1000;

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
  /** Keeps the events waiting for their key alive, in every partition. */
  readonly #heartbeats: Heartbeats;
  readonly #owned = new Map<number, Owned>();
  readonly #leases: PartitionLeases;
  /** Partitions being let go: their running events finish first. */
  readonly #leaving = new Set<Promise<void>>();
  /** The partitions being let go, by number: a lease lost meanwhile still revokes their runs. */
  readonly #left = new Map<number, Owned>();
  /** With two partitions or more: reads the stream once and forwards each event to its partition. */
  readonly #forwarder: Forwarder | undefined;
  #started = false;

  constructor(deps: OrderedFunctionDeps) {
    this.#deps = deps;
    this.#ordering = deps.fn.ordering!;
    this.#log = deps.log.child({ function: deps.fn.name });
    this.#slots = new Slots(deps.fn.concurrency);
    this.#heartbeats = deps.heartbeats;
    const labels = { function: deps.fn.name };
    deps.metrics.partitionsOwned.set(labels, 0);
    this.#forwarder = forwardsOrdered(deps.fn) ? new Forwarder({ ...deps, log: this.#log }) : undefined;
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
          // A lease released by its owner ("free") comes after its runs ended; one that ran
          // out may still have a run going on its old owner, which ends it at its deadline.
          this.#acquire(partition, reason === "free" ? 0 : this.#takeoverMs());
        },
        lost: (partition, reason) => {
          deps.metrics.leaseChanges.inc({ ...labels, reason });
          (this.#owned.get(partition) ?? this.#left.get(partition))?.fence.revoke();
          void this.#leave(partition);
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
    this.#forwarder?.start();
    this.#started = true;
  }

  /** Taking part: leases started, and every owned partition's durable pulling. */
  get bound(): boolean {
    return this.#started && [...this.#owned.values()].every(({ loop }) => loop.bound);
  }

  /** Ends open pulls early (a reconnect): they are made anew. */
  interrupt(): void {
    for (const { loop } of this.#owned.values()) loop.interrupt();
    this.#forwarder?.interrupt();
  }

  /**
   * Stops pulling every partition (running events go on: see {@link settled}) and forwarding
   * (what is in flight lands first; another replica forwards from there).
   */
  async stop(): Promise<void> {
    await Promise.all([...[...this.#owned.values()].map(({ loop }) => loop.stop()), this.#forwarder?.stop()]);
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
    const takingOver: Record<number, string> = {};
    for (const [partition, { lanes, takeoverUntil }] of this.#owned) {
      waiting += lanes.size - lanes.running;
      if (takeoverUntil > 0) takingOver[partition] = new Date(takeoverUntil).toISOString();
    }
    return {
      ordering: {
        key: this.#ordering.key,
        partitions: this.#ordering.partitions,
        host: this.#deps.hostId,
        owned: [...this.#owned.keys()].sort((a, b) => a - b),
        owners,
        replicas: this.#leases.members(),
        waiting,
        ...(this.#forwarder ? { forwarder: this.#forwarder.status() } : {}),
        ...(Object.keys(takingOver).length > 0 ? { takingOver } : {}),
      },
    };
  }

  /**
   * How long the previous owner's runs may go on after its lease deadline: the time to end
   * a worker thread, or, in `none` isolation, the function's timeout (a handler in the
   * host's thread cannot be stopped, only asked to through its signal).
   */
  #takeoverMs(): number {
    const fn = this.#deps.fn;
    return fn.isolation === "worker" ? THREAD_END_MS : fn.timeoutMs;
  }

  /** Makes the partition's durable and rewinds it to its ack floor (see `rewindConsumer`). */
  async #rewind(consumer: CompiledFunction, signal: AbortSignal): Promise<void> {
    await ensureConsumer(this.#deps.jsm, consumer, this.#log);
    await rewindConsumer(this.#deps.jsm, consumer, this.#log, signal);
  }

  /** {@link #rewind}; false when that failed. */
  async #bind(consumer: CompiledFunction, partition: number, signal: AbortSignal): Promise<boolean> {
    try {
      await this.#rewind(consumer, signal);
      return true;
    } catch (error) {
      if (!signal.aborted) this.#log.warn({ err: error, partition }, "binding the partition's consumer failed; trying again");
      return false;
    }
  }

  /** Starts pulling `partition`'s durable, after `waitMs` for a previous owner's runs to end. */
  #acquire(partition: number, waitMs: number): void {
    if (this.#owned.has(partition)) return;
    const { fn, js, jsm, metrics } = this.#deps;
    const consumer = partitionConsumer(fn, partition);
    const labels = { function: fn.name };
    const fence = new PartitionFence(() => this.#leases.holds(partition));
    const leaving = new AbortController();
    const lanes = new KeyLanes({
      slots: this.#slots,
      mayStart: () => this.#leases.owns(partition),
      heartbeats: this.#heartbeats,
      waited: (seconds) => metrics.keyWait.observe(labels, seconds),
      run: this.#deps.run,
    });
    const spec = this.#ordering.key;
    const loop = new PullLoop(
      js,
      consumer,
      this.#forwarder
        ? (delivery) => {
            const original = forwarded(delivery);
            return lanes.add(eventKey(original, spec), fence.wrap(original));
          }
        : (delivery) => lanes.add(eventKey(delivery, spec), fence.wrap(delivery)),
      this.#log,
      {
        capacity: fn.concurrency * HELD_PER_SLOT,
        // One pull at a time: deliveries are taken in stream order.
        maxPulls: 1,
        admission: this.#deps.admission,
        rebind: async () => {
          if (this.#leases.owns(partition)) await ensureConsumer(jsm, consumer, this.#log);
        },
        resync: {
          drop: () => lanes.drop(),
          rewind: async () => {
            if (this.#leases.owns(partition)) await this.#rewind(consumer, leaving.signal);
          },
        },
      },
    );
    const started = (async () => {
      if (waitMs > 0) {
        this.#log.info(
          { partition, wait_ms: waitMs },
          "partition taken over: waiting for the previous owner's runs to end before starting its events",
        );
        const waited = await sleep(waitMs, true, { signal: leaving.signal }).catch(() => false);
        const owned = this.#owned.get(partition);
        if (owned?.loop === loop) owned.takeoverUntil = 0;
        if (!waited) return;
      }
      // Not one event is pulled before the previous owner's unfinished ones come first: a
      // loop started on a durable not rewound would run later events before them.
      while (!(await this.#bind(consumer, partition, leaving.signal))) {
        if (!(await sleep(BIND_RETRY_MS, true, { signal: leaving.signal }).catch(() => false))) return;
      }
      if (this.#owned.get(partition)?.loop === loop) loop.start();
    })();
    this.#owned.set(partition, { loop, lanes, fence, leaving, takeoverUntil: waitMs > 0 ? Date.now() + waitMs : 0, started });
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
    this.#left.set(partition, owned);
    owned.leaving.abort();
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
    void leaving.finally(() => {
      this.#leaving.delete(leaving);
      if (this.#left.get(partition) === owned) this.#left.delete(partition);
    });
    return leaving;
  }
}

import { setTimeout as sleep } from "node:timers/promises";
import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { CompiledFunction, CompiledRetry } from "../config/types.ts";
import type { Delivery } from "../contracts/delivery.ts";
import type { Gate } from "../contracts/gate.ts";
import { backoffDelay } from "../resilience/backoff.ts";
import type { Logger } from "../telemetry/logger.ts";
import { AckBatch } from "./ack-batch.ts";
import { type BudgetPart, PullBudget, type PullState, pullSize } from "./pull-budget.ts";

export interface PullLoopOptions {
  /** Re-creates the consumer after it was found missing. */
  readonly rebind: () => Promise<void>;
  /**
   * Whether the function's deliveries may start: nothing is pulled while its gate is
   * closed, only probes while its breaker is half-open. Each delivery is still admitted by
   * the dispatcher, which hands back what arrives after the gate closed.
   */
  readonly admission: Gate;
  /** The durable to pull from. @default the function's `durable` */
  readonly durable?: string;
  /**
   * Deliveries held at once: running, or handed to `dispatch` and not finished. An ordered
   * function holds events that wait for their key, so it holds more than its concurrency.
   * @default the function's `concurrency`
   */
  readonly capacity?: number;
  /** Room shared with the function's other loops (its replays'); `capacity` is ignored then. */
  readonly budget?: BudgetPart;
  /** Pull requests open at once. @default 4 */
  readonly maxPulls?: number;
  /**
   * A rate limit's permits (`rateLimit:`): each pull asks for only as many messages as it
   * was granted, so what waits for a permit waits in the stream; what it did not receive
   * is given back. Give it `maxPulls: 1`: open pulls hold their permits.
   */
  readonly permits?: Permits;
  /**
   * An ordered partition's loop (with `maxPulls: 1`): its deliveries must reach `dispatch`
   * in the consumer's order, none missing. One that never arrives (lost in transit when a
   * pull ends at a reconnect or a stall, or read too late to run) would come back only after
   * its ack wait, behind later events of its key. So a gap in the consumer's delivery
   * sequence, or a delivery not run, makes the loop drop what follows, call `resync.drop`
   * (let go of what is held and not running), wait for what runs to settle, and call
   * `resync.rewind` (rewind the consumer to its ack floor, so that everything unsettled
   * comes again, in order) before it pulls again.
   */
  readonly resync?: Resync;
}

/** How an ordered loop starts its deliveries afresh after a gap (see {@link PullLoopOptions.resync}). */
export interface Resync {
  /**
   * Lets go of every dispatched delivery not running. Held ones may wait for a delivery that
   * only a pull after the rewind brings (a key's retry): waiting for them would never end.
   */
  readonly drop: () => void;
  /** Rewinds the consumer to its ack floor. */
  readonly rewind: () => Promise<void>;
}

/** Where a rate-limited loop's permits come from (see `RateLimiter`): one per loop. */
export interface Permits {
  /** Up to `want` permits, waiting for at least one; 0 when `signal` aborted first. */
  acquire(want: number, signal: AbortSignal): Promise<number>;
  /** A pull granted `granted` permits received `used` messages: the rest are given back. */
  settle(granted: number, used: number): void;
}

/**
 * How long one pull request lives. Short, because a pull lost with its consumer leader
 * (a node dies, a leader steps down) is only noticed when it expires: this bounds the
 * stall. An idle function costs one small request per period.
 */
const PULL_EXPIRES_MS = 2000;

/** Between attempts to pull again after a failure: 200 ms doubling to 5 s, jittered. */
const REBIND_BACKOFF: CompiledRetry = {
  maxAttempts: Number.POSITIVE_INFINITY,
  backoff: "exponential",
  initialDelayMs: 200,
  maxDelayMs: 5000,
  jitter: true,
};

/** Pull requests one function keeps open at once, unless told otherwise. */
const MAX_PULLS = 4;
/**
 * A pull still open this long after its expiry is given up: the client missed its end (a
 * consumer leader that changed under it, say), and a fresh pull takes its place.
 */
const STALL_GRACE_MS = 10_000;

/**
 * One function's pull loop. It never asks for more messages than it has free concurrency
 * slots (slots taken by running invocations or promised to open pull requests), so every
 * message it receives starts at once and none waits locally while its ack timer runs.
 * Slots freed while a pull is open are used by another pull, once enough are free to make
 * a worthwhile batch. A failed pull (consumer deleted, heartbeats missed, server gone) is
 * logged and retried with backoff, re-creating the consumer when it is missing; the loop
 * only ends on `stop()`.
 */
export class PullLoop {
  readonly #js: JetStreamClient;
  readonly #fn: CompiledFunction;
  readonly #dispatch: (delivery: Delivery) => Promise<unknown>;
  readonly #durable: string;
  readonly #budget: BudgetPart;
  readonly #log: Logger;
  readonly #options: PullLoopOptions;
  readonly #stopping = new AbortController();
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #acks = new AckBatch();
  readonly #pulls = new Map<ConsumerMessages, Promise<void>>();
  #failure?: unknown;
  #failures = 0;
  /** With `resync`: the consumer delivery sequence the next delivery must have, once known. */
  #nextDelivery?: number;
  /** With `resync`: why the order broke, once it did; deliveries are dropped until the resync. */
  #gap?: string;
  #wake?: () => void;
  #bound = false;
  #done?: Promise<void>;
  readonly #unlisten: ReadonlyArray<() => void>;
  /** What {@link pullSize} reads, made once: this runs each time a slot frees. */
  readonly #state: PullState;

  constructor(
    js: JetStreamClient,
    fn: CompiledFunction,
    dispatch: (delivery: Delivery) => Promise<unknown>,
    log: Logger,
    options: PullLoopOptions,
  ) {
    this.#js = js;
    this.#fn = fn;
    this.#durable = options.durable ?? fn.durable;
    this.#budget = options.budget ?? new PullBudget(options.capacity ?? fn.concurrency).part();
    // Room freed by this loop, or by another one sharing the budget.
    this.#budget.onGive(() => this.#notify());
    this.#dispatch = dispatch;
    this.#log = log.child({ function: fn.name });
    this.#options = options;
    this.#unlisten = [options.admission.onClose(() => this.interrupt()), options.admission.onOpen(() => this.#notify())];
    this.#state = new LoopState(options.admission, this.#budget, this.#pulls, options.maxPulls ?? MAX_PULLS);
  }

  /** True while the consumer is known to exist and the last pull did not fail. */
  get bound(): boolean {
    return this.#bound;
  }

  start(): void {
    this.#done ??= this.#run();
  }

  /** Stops pulling; messages still arriving from open pulls are nak'd at once. */
  async stop(): Promise<void> {
    for (const unlisten of this.#unlisten) unlisten();
    this.#stopping.abort();
    this.interrupt();
    this.#notify();
    await this.#done;
    await Promise.all(this.#pulls.values());
    this.#bound = false;
  }

  /** Ends the open pulls early (the gate closed, a reconnect): the server stops sending their messages. */
  interrupt(): void {
    for (const pull of this.#pulls.keys()) pull.stop();
  }

  /**
   * With `resync`: starts deliveries afresh as after a gap (drops what follows, settles what
   * runs, rewinds): a forwarder's copy that failed.
   */
  resync(why: string): void {
    if (this.#options.resync) this.#breakOrder(why);
  }

  /** Resolves when every dispatched delivery has settled. */
  async settled(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    this.#acks.flush();
  }

  async #run(): Promise<void> {
    const stopped = this.#stopping.signal;
    let consumer: Consumer | undefined;
    while (!stopped.aborted) {
      if (this.#failure !== undefined) {
        consumer = undefined;
        await this.#recover();
        continue;
      }
      if (!consumer) {
        // Found before anything is pulled, so a function paused from the start is bound too.
        try {
          consumer = await this.#js.consumers.get(this.#fn.stream, this.#durable);
          this.#bound = true;
        } catch (error) {
          if (!stopped.aborted) this.#failure = error;
          continue;
        }
      }
      let want = this.#want();
      if (want === 0) {
        await this.#changed(this.#options.admission.closedForMs() || 1000);
        continue;
      }
      this.#budget.take(want);
      const permits = this.#options.permits;
      if (permits) {
        const granted = await permits.acquire(want, stopped);
        this.#budget.give(want - granted);
        want = granted;
        if (want === 0) continue;
      }
      try {
        const issuedAt = performance.now();
        const pull = await consumer.fetch({ max_messages: want, expires: PULL_EXPIRES_MS });
        this.#bound = true;
        this.#pulls.set(pull, this.#receive(pull, want, issuedAt));
      } catch (error) {
        this.#budget.give(want);
        permits?.settle(want, 0);
        if (!stopped.aborted) this.#failure = error;
      }
    }
  }

  /** How many messages to ask for now; 0 to wait. */
  #want(): number {
    return pullSize(this.#state);
  }

  async #receive(pull: ConsumerMessages, asked: number, issuedAt: number): Promise<void> {
    const stopped = this.#stopping.signal;
    // The server delivers a pull's messages before the pull expires: one read later than
    // that plus twice the ack wait (a margin for the server's own timing and a busy event
    // loop) was given up by the server, which delivers it again (to this host or another).
    // Running it would run it twice; it is left to the server.
    const staleAfter = issuedAt + PULL_EXPIRES_MS + 2 * this.#fn.ackWaitMs;
    let stale = 0;
    let received = 0;
    const watchdog = setTimeout(() => {
      this.#log.warn({ received, asked }, "pull still open past its expiry: replacing it");
      pull.stop();
    }, PULL_EXPIRES_MS + STALL_GRACE_MS);
    try {
      for await (const msg of pull) {
        received++;
        // Its room passes from the pull to the running delivery, or back to the budget.
        if (stopped.aborted) {
          msg.nak();
          this.#budget.give(1);
        } else if (this.#options.resync && !this.#inOrder(msg)) {
          // Left unsettled: the resync's rewind delivers it again, in order.
          this.#budget.give(1);
        } else if (performance.now() > staleAfter) {
          stale++;
          this.#budget.give(1);
          if (this.#options.resync) this.#breakOrder("a delivery read after its ack wait ran out");
        } else {
          this.#start(msg);
        }
      }
      this.#failures = 0;
    } catch (error) {
      if (!stopped.aborted) this.#failure = error;
    } finally {
      if (stale > 0) {
        this.#log.warn(
          { stale, ack_wait_ms: this.#fn.ackWaitMs },
          "messages read after their ack wait had run out (this host stalled): not run, the server delivers them again",
        );
      }
      clearTimeout(watchdog);
      this.#pulls.delete(pull);
      this.#budget.give(asked - received);
      this.#options.permits?.settle(asked, received);
    }
  }

  /** Whether `msg` comes next in the consumer's order (an ordered loop); if not, the gap is noted. */
  #inOrder(msg: JsMsg): boolean {
    if (this.#gap !== undefined) return false;
    const delivery = msg.info.deliverySequence;
    if (this.#nextDelivery !== undefined && delivery !== this.#nextDelivery) {
      this.#breakOrder(`delivery ${delivery} arrived where ${this.#nextDelivery} was due`);
      return false;
    }
    this.#nextDelivery = delivery + 1;
    return true;
  }

  /** Drops every later delivery and ends the open pull, until the resync in {@link #recover}. */
  #breakOrder(why: string): void {
    if (this.#gap !== undefined) return;
    this.#gap = why;
    this.#failure ??= new Error(why);
    this.interrupt();
    this.#notify();
  }

  /**
   * After a delivery gap: the open pull ends, what is held is let go, what runs settles, the
   * consumer is rewound (tried until it works or the loop stops), and the order starts afresh.
   */
  async #resync(resync: Resync, why: string): Promise<void> {
    this.#log.warn({ why }, "a delivery went missing in transit: settling what runs, then rewinding the consumer");
    await Promise.all(this.#pulls.values());
    resync.drop();
    await this.settled();
    for (let failures = 1; !this.#stopping.signal.aborted; failures++) {
      try {
        await resync.rewind();
        break;
      } catch (error) {
        this.#log.warn({ err: error, failures }, "rewinding the consumer after a delivery gap failed; trying again");
        await sleep(backoffDelay(REBIND_BACKOFF, failures), undefined, { signal: this.#stopping.signal }).catch(() => {});
      }
    }
    this.#nextDelivery = undefined;
    this.#gap = undefined;
  }

  /** After a failed pull: log, re-create the consumer if it is gone, back off. */
  async #recover(): Promise<void> {
    const error = this.#failure;
    this.#failure = undefined;
    if (this.#gap !== undefined && this.#options.resync) {
      await this.#resync(this.#options.resync, this.#gap);
      return;
    }
    this.#bound = false;
    this.#failures++;
    this.#log.warn({ err: error, failures: this.#failures }, "pull failed; re-binding the consumer");
    try {
      await this.#options.rebind();
    } catch (rebindError) {
      this.#log.error({ err: rebindError }, "re-binding the consumer failed");
    }
    const delay = backoffDelay(REBIND_BACKOFF, this.#failures);
    await sleep(delay, undefined, { signal: this.#stopping.signal }).catch(() => {});
  }

  #start(msg: JsMsg): void {
    const running = this.#dispatch(new JsDelivery(msg, this.#acks, this.#fn.ackWaitMs)).finally(() => {
      this.#inflight.delete(running);
      this.#budget.give(1);
    });
    this.#inflight.add(running);
  }

  /** Resolves on the next {@link #notify}, after `timeoutMs`, or on stop. */
  #changed(timeoutMs: number): Promise<void> {
    if (this.#stopping.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** A JetStream message as a {@link Delivery}; methods on the prototype keep it cheap. */
class JsDelivery implements Delivery {
  readonly #msg: JsMsg;
  readonly #acks: AckBatch;
  readonly #ackWaitMs: number;
  readonly headers: Readonly<Record<string, string>>;
  #timestamp?: Date;
  /**
   * Until when (performance.now()) the server surely still waits for it: twice its ack wait
   * from receipt or its last heartbeat. Past one ack wait the server may already have given
   * it up; the second is a margin for the server's timing and a busy event loop, so that
   * only a real stall (a SIGSTOP, a long pause) expires a delivery.
   */
  #aliveUntil: number;

  constructor(msg: JsMsg, acks: AckBatch, ackWaitMs: number) {
    this.#msg = msg;
    this.#acks = acks;
    this.#ackWaitMs = ackWaitMs;
    this.#aliveUntil = performance.now() + 2 * ackWaitMs;
    // No prototype: a header named __proto__ is just a header.
    const headers = Object.create(null) as Record<string, string>;
    if (msg.headers) for (const key of msg.headers.keys()) headers[key] = msg.headers.get(key);
    this.headers = headers;
  }

  get data(): Uint8Array {
    return this.#msg.data;
  }
  get subject(): string {
    return this.#msg.subject;
  }
  get stream(): string {
    return this.#msg.info.stream;
  }
  get seq(): number {
    return this.#msg.seq;
  }
  get deliveryCount(): number {
    return this.#msg.info.deliveryCount;
  }
  get timestamp(): Date {
    // From the delivery info already parsed (a double: exact to well under a millisecond);
    // msg.timestampNanos would split the reply subject again and make a BigInt.
    this.#timestamp ??= new Date(Math.floor(this.#msg.info.timestampNanos / 1e6));
    return this.#timestamp;
  }
  ack(): void {
    this.#acks.add(() => this.#msg.ack());
  }
  nak(delayMs: number): void {
    this.#acks.add(() => this.#msg.nak(delayMs));
  }
  term(): void {
    this.#acks.add(() => this.#msg.term());
  }
  working(): void {
    const now = performance.now();
    // Too late: the server gave it up (this host stalled) and delivers it again.
    if (now > this.#aliveUntil) return;
    this.#aliveUntil = now + 2 * this.#ackWaitMs;
    this.#msg.working();
  }
  expired(): boolean {
    return performance.now() > this.#aliveUntil;
  }
}

/**
 * A loop's {@link PullState}, read through getters on the prototype (no object is made per
 * decision), each only when {@link pullSize} needs it: a closed gate never reads the
 * breaker's state, which can move it from open to half-open.
 */
class LoopState implements PullState {
  readonly #gate: Gate;
  readonly #budget: BudgetPart;
  readonly #pulls: ReadonlyMap<unknown, unknown>;
  readonly maxPulls: number;

  constructor(gate: Gate, budget: BudgetPart, pulls: ReadonlyMap<unknown, unknown>, maxPulls: number) {
    this.#gate = gate;
    this.#budget = budget;
    this.#pulls = pulls;
    this.maxPulls = maxPulls;
  }

  get allowance(): number {
    return this.#gate.allowance();
  }

  get room(): number {
    return this.#budget.free();
  }

  get probing(): boolean {
    return this.#gate.probing;
  }

  get openPulls(): number {
    return this.#pulls.size;
  }

  get limit(): number {
    return this.#budget.limit;
  }
}

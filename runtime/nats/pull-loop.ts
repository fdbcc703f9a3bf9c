import { setTimeout as sleep } from "node:timers/promises";
import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { CompiledFunction } from "../config/types.ts";
import type { Delivery } from "../invoke/delivery.ts";
import type { CircuitBreaker } from "../resilience/breaker.ts";
import type { Logger } from "../telemetry/logger.ts";
import { Slots } from "./slots.ts";

export interface PullLoopOptions {
  /** How long one pull request waits on the server for messages. @default 5000 */
  readonly expiresMs?: number;
  /** Re-creates the consumer after it was found missing. */
  readonly rebind: () => Promise<void>;
  /** The function's breaker: while open nothing is pulled; half-open, only its probes. */
  readonly breaker?: CircuitBreaker;
  /** Called for each message handed back (nak'd) because the breaker refused it. */
  readonly onReleased?: () => void;
}

/**
 * One function's pull loop: wait for a free concurrency slot, fetch at most as many
 * messages as there are free slots, hand each to `dispatch`, repeat. A failed fetch
 * (consumer deleted, heartbeats missed, server gone) is logged and retried with backoff,
 * re-creating the consumer when it is missing; the loop only ends on `stop()`.
 */
export class PullLoop {
  readonly slots: Slots;
  readonly #js: JetStreamClient;
  readonly #fn: CompiledFunction;
  readonly #dispatch: (delivery: Delivery) => Promise<void>;
  readonly #log: Logger;
  readonly #options: PullLoopOptions;
  readonly #inflight = new Set<Promise<void>>();
  readonly #stopping = new AbortController();
  #batch?: ConsumerMessages;
  #bound = false;
  #done?: Promise<void>;

  constructor(
    js: JetStreamClient,
    fn: CompiledFunction,
    dispatch: (delivery: Delivery) => Promise<void>,
    log: Logger,
    options: PullLoopOptions,
  ) {
    this.#js = js;
    this.#fn = fn;
    this.#dispatch = dispatch;
    this.#log = log.child({ function: fn.name });
    this.#options = options;
    this.slots = new Slots(fn.concurrency);
  }

  /** True while the consumer is known to exist and the last pull did not fail. */
  get bound(): boolean {
    return this.#bound;
  }

  start(): void {
    this.#done ??= this.#run();
  }

  /** Stops pulling; messages still arriving from the last pull are nak'd at once. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    this.#batch?.stop();
    this.slots.wakeAll();
    await this.#done;
    this.#bound = false;
  }

  /** Ends the current pull early (the breaker opened): the server stops sending its messages. */
  interrupt(): void {
    this.#batch?.stop();
  }

  /** Resolves when every dispatched delivery has settled. */
  async settled(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }

  async #run(): Promise<void> {
    const stopped = this.#stopping.signal;
    let consumer: Consumer | undefined;
    let failures = 0;
    while (!stopped.aborted) {
      await this.slots.whenFree();
      if (stopped.aborted) break;
      const breaker = this.#options.breaker;
      const allowance = breaker ? breaker.allowance() : Number.POSITIVE_INFINITY;
      if (allowance === 0) {
        // Open (or every probe busy): take nothing, so no delivery is spent.
        await sleep(breaker!.remainingOpenMs() || 50, undefined, { signal: stopped }).catch(() => {});
        continue;
      }
      try {
        consumer ??= await this.#js.consumers.get(this.#fn.stream, this.#fn.durable);
        const max = Math.min(this.slots.free, allowance);
        this.#batch = await consumer.fetch({ max_messages: max, expires: this.#options.expiresMs ?? 5000 });
        this.#bound = true;
        for await (const msg of this.#batch) {
          if (stopped.aborted) msg.nak();
          else if (breaker && !breaker.tryAcquire()) this.#release(msg, breaker);
          else this.#start(msg);
        }
        failures = 0;
      } catch (error) {
        if (stopped.aborted) break;
        this.#bound = false;
        consumer = undefined;
        failures++;
        this.#log.warn({ err: error, failures }, "pull failed; re-binding the consumer");
        try {
          await this.#options.rebind();
        } catch (rebindError) {
          this.#log.error({ err: rebindError }, "re-binding the consumer failed");
        }
        await sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)), undefined, { signal: stopped }).catch(() => {});
      }
    }
  }

  /** Hands a message back until the breaker lets probes through. */
  #release(msg: JsMsg, breaker: CircuitBreaker): void {
    msg.nak(breaker.remainingOpenMs() || 1000);
    this.#options.onReleased?.();
  }

  #start(msg: JsMsg): void {
    this.slots.take();
    const running = this.#dispatch(toDelivery(msg)).finally(() => {
      this.#inflight.delete(running);
      this.slots.release();
    });
    this.#inflight.add(running);
  }
}

function toDelivery(msg: JsMsg): Delivery {
  // No prototype: a header named __proto__ is just a header.
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  if (msg.headers) for (const key of msg.headers.keys()) headers[key] = msg.headers.get(key);
  return {
    data: msg.data,
    subject: msg.subject,
    headers,
    stream: msg.info.stream,
    seq: msg.seq,
    deliveryCount: msg.info.deliveryCount,
    timestamp: new Date(Number(msg.timestampNanos / 1_000_000n)),
    ack: () => msg.ack(),
    nak: (delayMs) => msg.nak(delayMs),
    term: () => msg.term(),
    working: () => msg.working(),
  };
}

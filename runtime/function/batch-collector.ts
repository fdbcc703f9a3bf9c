import type { CompiledBatch } from "../config/types.ts";
import type { Delivery } from "../contracts/delivery.ts";
import type { Heartbeats } from "../invoke/heartbeats.ts";

/** A batch being filled. */
interface Filling {
  readonly deliveries: Delivery[];
  bytes: number;
  /** One promise for all its events (none made per event). */
  readonly done: Promise<"settled">;
  resolve(ran: Promise<"settled">): void;
  timer?: NodeJS.Timeout;
  unbeat?: () => void;
}

export interface BatchCollectorOptions {
  readonly batch: CompiledBatch;
  /** Runs a full batch to the settlement of each message (see `BatchInvoker.process`). */
  readonly run: (batch: readonly Delivery[]) => Promise<void>;
  /** Keeps the events of the filling batch alive: `beat` is called for each, every half ack wait. */
  readonly heartbeats: Heartbeats;
  /** Resets one message's ack timer (and counts it). */
  readonly beat: (delivery: Delivery) => void;
}

/**
 * Gathers a batch function's deliveries (one pull loop's) into batches: a batch is handed
 * over when it holds `maxSize` events, when adding the next event's payload would take it
 * past `maxBytes` (an event larger than that goes alone), or when `maxWait` has passed
 * since its first event. {@link take} is the pull loop's dispatch: it resolves once the
 * event's batch has settled every message, which frees the loop's room for more.
 */
export class BatchCollector {
  readonly #options: BatchCollectorOptions;
  #filling?: Filling;

  constructor(options: BatchCollectorOptions) {
    this.#options = options;
  }

  /** Adds a delivery to the filling batch; resolves when its batch is settled (each message acked, handed back or dead-lettered). */
  take(delivery: Delivery): Promise<"settled"> {
    const { maxSize, maxBytes } = this.#options.batch;
    const size = delivery.data.length;
    if (maxBytes !== undefined && this.#filling && this.#filling.bytes + size > maxBytes) this.flush();
    const filling = (this.#filling ??= this.#start());
    filling.deliveries.push(delivery);
    filling.bytes += size;
    if (filling.deliveries.length >= maxSize || (maxBytes !== undefined && filling.bytes >= maxBytes)) this.flush();
    return filling.done;
  }

  /** Hands over the filling batch now, if there is one. */
  flush(): void {
    const filling = this.#filling;
    if (!filling) return;
    this.#filling = undefined;
    clearTimeout(filling.timer);
    filling.unbeat?.();
    filling.resolve(this.#options.run(filling.deliveries).then(settled));
  }

  #start(): Filling {
    let resolve!: (ran: Promise<"settled">) => void;
    const done = new Promise<"settled">((settle) => {
      resolve = settle;
    });
    const filling: Filling = { deliveries: [], bytes: 0, done, resolve };
    filling.timer = setTimeout(() => {
      if (this.#filling === filling) this.flush();
    }, this.#options.batch.maxWaitMs);
    // maxWait is at most the ack wait: beaten, its first event is not redelivered while it fills.
    filling.unbeat = this.#options.heartbeats.add(() => {
      for (const delivery of filling.deliveries) this.#options.beat(delivery);
    });
    return filling;
  }
}

function settled(): "settled" {
  return "settled";
}

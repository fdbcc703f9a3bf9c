import type { CompiledDebounce, CompiledFunction } from "../config/types.ts";
import {
  type DebounceEntry,
  type EventStep,
  entryKey,
  fireAt,
  fireSubject,
  parseFireSubject,
  releaseFire,
  takeEvent,
  takeFire,
} from "../contracts/debounce.ts";
import { isForwardedHeader } from "../contracts/delayed.ts";
import { DelegatingDelivery, type Delivery, type Publisher } from "../contracts/delivery.ts";
import { eventKey } from "../contracts/event-key.ts";
import type { DebounceKeys } from "../nats/debounce-keys.ts";
import type { Logger } from "../telemetry/logger.ts";

/** A take or a fire that failed (the bucket or the delayed stream unavailable) is handed back for this long. */
const AGAIN_MS = 1000;

export interface DebouncerOptions {
  readonly fn: CompiledFunction & { readonly debounce: CompiledDebounce };
  readonly keys: DebounceKeys;
  /** Schedules the fires (delayed events). */
  readonly publisher: Publisher;
  /** This host's clock, epoch ms. */
  readonly now: () => number;
  readonly log: Logger;
  /** An event will not run: a newer one of its key took its place (`jetfn_debounced_total`). */
  readonly debounced: () => void;
}

/**
 * A debounced function's two halves (wire format and rules: contracts/debounce.ts). `take`
 * receives the function's events: each becomes its key's newest, is scheduled as a fire and
 * is acked, never run. `fire` receives the fires: the one whose event is still its key's
 * newest (or that claimed the key before, when retried) runs the handler with that event,
 * through the function's invoker like any delivery; the others are acked unrun.
 */
export class Debouncer {
  readonly #options: DebouncerOptions;

  constructor(options: DebouncerOptions) {
    this.#options = options;
  }

  /** Takes one of the function's events. */
  async take(delivery: Delivery): Promise<void> {
    const { fn, keys, publisher, now, debounced } = this.#options;
    const { key, periodMs, maxWaitMs } = fn.debounce;
    try {
      const at = now();
      const { step, entry } = await keys.change<{ step: EventStep; entry?: DebounceEntry }>(
        entryKey(fn.name, eventKey(delivery, key)),
        (entry) => {
          const step = takeEvent(entry, delivery.seq, at);
          return step.kind === "take" ? { write: step.entry, result: { step, entry: step.entry } } : { result: { step, entry } };
        },
      );
      if (step.kind !== "old" && entry) {
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(delivery.headers)) if (isForwardedHeader(name)) headers[name] = value;
        await publisher.publish(fireSubject(fn.name, delivery.seq, delivery.subject), delivery.data, {
          headers,
          msgId: `debounce:${fn.name}:${delivery.stream}:${delivery.seq}`,
          deliverAt: fireAt(entry, at, periodMs, maxWaitMs),
        });
      }
      delivery.ack();
      // Counted once each: when a newer event takes its place, or on arrival when a newer one
      // was taken first (taken in parallel, out of order). A redelivery was counted before.
      if ((step.kind === "take" && step.superseded) || (step.kind === "old" && delivery.deliveryCount === 1)) debounced();
    } catch (error) {
      this.#options.log.warn(
        { err: error, subject: delivery.subject, seq: delivery.seq },
        "debounce: taking an event failed; it comes again",
      );
      delivery.nak(AGAIN_MS);
    }
  }

  /** Takes one fire; `run` runs the handler with its event and says whether that delivery settled. */
  async fire(delivery: Delivery, run: (event: Delivery) => Promise<"settled" | "again">): Promise<void> {
    const { fn, keys, log } = this.#options;
    const fire = parseFireSubject(delivery.subject);
    if (fire === undefined || fire.fn !== fn.name) {
      log.warn({ subject: delivery.subject, seq: delivery.seq }, "debounce: not a fire of this function; dropped");
      delivery.term();
      return;
    }
    const event = new FiredEvent(delivery, fire.subject);
    const key = entryKey(fn.name, eventKey(event, fn.debounce.key));
    let runs: boolean;
    try {
      runs = await keys.change(key, (entry) => {
        const step = takeFire(entry, fire.seq, delivery.seq);
        return { ...(step.kind === "run" && step.claim ? { write: step.claim } : {}), result: step.kind === "run" };
      });
    } catch (error) {
      log.warn({ err: error, subject: fire.subject, seq: fire.seq }, "debounce: reading the key of a fire failed; it comes again");
      delivery.nak(AGAIN_MS);
      return;
    }
    if (!runs) return delivery.ack();
    if ((await run(event)) !== "settled") return;
    try {
      await keys.change(key, (entry) => {
        const released = releaseFire(entry, delivery.seq);
        return released ? { write: released, result: undefined } : { result: undefined };
      });
    } catch (error) {
      // Harmless: the next window's fire claims the key over it.
      log.debug({ err: error, subject: fire.subject }, "debounce: releasing a key failed");
    }
  }
}

/** A fire as its handler sees it: the event's own subject, its data and headers. */
class FiredEvent extends DelegatingDelivery {
  readonly #subject: string;

  constructor(inner: Delivery, subject: string) {
    super(inner);
    this.#subject = subject;
  }

  override get subject(): string {
    return this.#subject;
  }
}

/**
 * The mover's hands (see delayed-mover.ts): delivering a due delayed event to its target
 * and deleting it, parking it when the target refuses, and moving an event to the bucket
 * of its time. It also knows which events are in hand, so that a second read of the
 * stream skips them, and counts what happened.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { bucketOf, DELAYED_STREAM, type DelayedFailureReason, delayedSubject, deliveryMsgId } from "../contracts/delayed.ts";
import type { Logger } from "../telemetry/logger.ts";
import { brokerFailureOf } from "./broker-failures.ts";
import { ParkedTargets } from "./delayed-parking.ts";
import { forwardedHeaders, isGone, type StoredDelayed } from "./delayed-read.ts";

/** Events published (and deleted) at a time. */
export const DELIVERY_CHUNK = 1000;

/** What the host learns of each delivery and failure, for its metrics. */
export interface DelayedMoverObserver {
  /** An event delivered (not a duplicate), `latenessMs` after its due time (or after it was scheduled, if that is later). */
  delivered?(latenessMs: number): void;
  /** A delivery failed; the event is kept and tried again. */
  failed?(reason: DelayedFailureReason): void;
}

/** Options of {@link DelayedDelivery}. */
export interface DelayedDeliveryOptions {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly log: Logger;
  readonly observer: DelayedMoverObserver;
  /** The wall clock (epoch ms). */
  readonly clock: () => number;
  /** When `JETFN_DELAYED` was created (epoch ms): part of each delivery's `Nats-Msg-Id`. */
  readonly streamCreatedMs: () => number;
  /** Whether this host may still deliver (it holds the mover's lease). */
  readonly going: () => boolean;
}

/** Delivers due delayed events: publish to the target, then delete; a refusal parks the event. */
export class DelayedDelivery {
  readonly counts = { delivered: 0, duplicates: 0, failures: 0, cancelled: 0 };
  readonly #o: DelayedDeliveryOptions;
  readonly #parked = new ParkedTargets<StoredDelayed>();
  /** Ids held, parked, or being delivered. */
  readonly #inHand = new Set<number>();

  constructor(options: DelayedDeliveryOptions) {
    this.#o = options;
  }

  /** Whether the event with this id is in hand here (held, parked, or on its way). */
  has(seq: number): boolean {
    return this.#inHand.has(seq);
  }

  /** Takes an event in hand that waits for its moment (the mover holds it). */
  hold(seq: number): void {
    this.#inHand.add(seq);
  }

  /** A held event found gone at its moment: cancelled. */
  cancelled(seq: number): void {
    this.counts.cancelled++;
    this.#inHand.delete(seq);
  }

  /** Due events whose target refused them and that wait. */
  get parked(): number {
    return this.#parked.size;
  }

  /** When the next parked target is tried (epoch ms), if any. */
  nextTryAt(): number | undefined {
    return this.#parked.nextTryAt();
  }

  /** Forgets every event in hand (the lease was lost: the next mover reads them again). */
  reset(): void {
    this.#parked.clear();
    this.#inHand.clear();
  }

  /** Delivers `events`, up to {@link DELIVERY_CHUNK} at a time, in flight together. */
  async deliverAll(events: readonly StoredDelayed[]): Promise<void> {
    for (let i = 0; i < events.length && this.#o.going(); i += DELIVERY_CHUNK) {
      await Promise.all(events.slice(i, i + DELIVERY_CHUNK).map((e) => this.deliver(e)));
    }
  }

  /** Publishes one due event to its target, then deletes it; a refusal parks it. */
  async deliver(event: StoredDelayed): Promise<void> {
    const target = event.target!;
    this.#inHand.add(event.seq);
    if (!this.#o.going()) return void this.#inHand.delete(event.seq);
    // Behind earlier events its target refused: it waits its turn.
    if (this.#parked.has(target)) return this.#parked.park(target, event, "refused", this.#o.clock());
    const refused = await this.#publish(event);
    if (refused === undefined) return this.#delete(event.seq);
    if (!this.#parked.has(target))
      this.#o.log.warn({ target, reason: refused }, "a delayed event's target refused it; it waits and is tried again");
    this.#parked.park(target, event, refused, this.#o.clock());
  }

  /** Tries each parked target whose time has come with its first event; the rest follow once it passes. */
  async retryParked(): Promise<void> {
    await Promise.all(
      this.#parked.due(this.#o.clock()).map(async ({ target, event }) => {
        if (!this.#o.going()) return;
        const refused = await this.#publish(event);
        if (refused !== undefined) return this.#parked.failedAgain(target, refused, this.#o.clock());
        this.#o.log.info({ target }, "a delayed event's target takes events again");
        const [first, ...rest] = this.#parked.passed(target);
        if (first !== undefined) await this.#delete(first.seq);
        await this.deliverAll(rest);
      }),
    );
  }

  /**
   * Moves an event whose `Jetfn-Deliver-At` is in a later bucket than its subject's to that
   * bucket (it gets a new id). A failure leaves it where it is, for a later sweep.
   */
  async rebucket(event: StoredDelayed): Promise<void> {
    const headers = natsHeaders();
    for (const [name, values] of event.headers ?? []) if (!/^nats-/i.test(name)) for (const v of values) headers.append(name, v);
    const subject = delayedSubject(bucketOf(event.due), event.target!);
    try {
      await this.#o.js.publish(subject, event.data, { headers, msgID: `rebucket:${this.#o.streamCreatedMs()}:${event.seq}` });
      await this.#o.jsm.streams.deleteMessage(DELAYED_STREAM, event.seq, false);
      this.#o.log.info(
        { id: event.seq, subject: event.subject, to: subject },
        "moved a delayed event to the bucket of its Jetfn-Deliver-At",
      );
    } catch (error) {
      this.#o.log.warn(
        { err: error, id: event.seq },
        "could not move a delayed event to the bucket of its time; a later sweep tries again",
      );
    }
  }

  /** Undefined once the target has it (new, or a duplicate of an earlier delivery); else why it was refused. */
  async #publish(event: StoredDelayed): Promise<DelayedFailureReason | undefined> {
    const headers = natsHeaders();
    for (const [name, value] of forwardedHeaders(event.headers)) headers.append(name, value);
    try {
      const msgID = deliveryMsgId(this.#o.streamCreatedMs(), event.seq);
      const ack = await this.#o.js.publish(event.target!, event.data, { headers, msgID });
      if (ack.duplicate) this.counts.duplicates++;
      else {
        this.counts.delivered++;
        this.#o.observer.delivered?.(Math.max(0, this.#o.clock() - Math.max(event.due, event.storedAt)));
      }
      return undefined;
    } catch (error) {
      // Undefined from brokerFailureOf: the message's own fault, its size (the target's max_msg_size).
      const reason = brokerFailureOf(error, !this.#o.nc.isClosed()) ?? "too-large";
      this.counts.failures++;
      this.#o.observer.failed?.(reason);
      this.#o.log.debug({ err: error, target: event.target, id: event.seq, reason }, "delayed event refused by its target");
      return reason;
    }
  }

  async #delete(seq: number): Promise<void> {
    try {
      await this.#o.jsm.streams.deleteMessage(DELAYED_STREAM, seq, false);
    } catch (error) {
      // Gone already (cancelled meanwhile, or another mover) is fine. Otherwise a later
      // sweep reads it again, and the target drops its second publish as a duplicate.
      if (!isGone(error)) this.#o.log.debug({ err: error, id: seq }, "could not delete a delivered delayed event");
    }
    this.#inHand.delete(seq);
  }
}

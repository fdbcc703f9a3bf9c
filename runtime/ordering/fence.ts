import type { Delivery } from "../contracts/delivery.ts";
import type { StreamPosition } from "../sdk/types.ts";

/**
 * A partition's fence: once its lease is lost, no delivery of it that this host pulled may
 * be settled here any more. Another replica takes the partition and rewinds its consumer,
 * so a late ack of ours could land on the new consumer and settle an event that never ran
 * to its end. {@link revoke} cuts off the partition's runs (`Delivery.revoked`) and turns
 * every later ack, nak, term or `working()` of its deliveries into nothing.
 */
export class PartitionFence {
  readonly #controller = new AbortController();

  get revoked(): boolean {
    return this.#controller.signal.aborted;
  }

  revoke(): void {
    this.#controller.abort();
  }

  /** The delivery as this partition's runs see it: revocable, and silent once revoked. */
  wrap(delivery: Delivery): Delivery {
    return new FencedDelivery(delivery, this.#controller.signal);
  }
}

class FencedDelivery implements Delivery {
  readonly #inner: Delivery;
  readonly revoked: AbortSignal;

  constructor(inner: Delivery, revoked: AbortSignal) {
    this.#inner = inner;
    this.revoked = revoked;
  }

  get data(): Uint8Array {
    return this.#inner.data;
  }
  get subject(): string {
    return this.#inner.subject;
  }
  get headers(): Readonly<Record<string, string>> {
    return this.#inner.headers;
  }
  get stream(): string {
    return this.#inner.stream;
  }
  get seq(): number {
    return this.#inner.seq;
  }
  get deliveryCount(): number {
    return this.#inner.deliveryCount;
  }
  get timestamp(): Date {
    return this.#inner.timestamp;
  }
  get replayOf(): StreamPosition | undefined {
    return this.#inner.replayOf;
  }

  ack(): void {
    if (!this.revoked.aborted) this.#inner.ack();
  }
  nak(delayMs: number): void {
    if (!this.revoked.aborted) this.#inner.nak(delayMs);
  }
  term(): void {
    if (!this.revoked.aborted) this.#inner.term();
  }
  working(): void {
    if (!this.revoked.aborted) this.#inner.working();
  }
}

import { DelegatingDelivery, type Delivery } from "../contracts/delivery.ts";

/**
 * A partition's fence: once its lease is lost, no delivery of it that this host pulled may
 * be settled here any more. Another replica takes the partition and rewinds its consumer,
 * so a late ack of ours could land on the new consumer and settle an event that never ran
 * to its end. {@link revoke} cuts off the partition's runs (`Delivery.revoked`) and turns
 * every later ack, nak, term or `working()` of its deliveries into nothing.
 *
 * The lease's loss is reported by a timer; a process that stalled past its lease (a GC
 * pause, SIGSTOP) may run other callbacks first when it wakes. So every settlement also
 * asks `held()` (the lease's deadline, by this host's clock) before it is sent.
 */
export class PartitionFence {
  readonly #controller = new AbortController();
  readonly #held: () => boolean;

  /** @param held whether the partition's lease is still this host's now (held, or being released). */
  constructor(held: () => boolean) {
    this.#held = held;
  }

  /** Whether the partition's deliveries may no longer be settled here. */
  get revoked(): boolean {
    this.check();
    return this.#controller.signal.aborted;
  }

  revoke(): void {
    this.#controller.abort();
  }

  /** Revokes the partition now if its lease ran out, before the loss is reported. */
  check(): void {
    if (!this.#controller.signal.aborted && !this.#held()) this.revoke();
  }

  /** The delivery as this partition's runs see it: revocable, and silent once revoked. */
  wrap(delivery: Delivery): Delivery {
    return new FencedDelivery(delivery, this, this.#controller.signal);
  }
}

/** A partition's delivery: revocable, and silent once revoked. */
class FencedDelivery extends DelegatingDelivery {
  readonly #fence: PartitionFence;
  readonly #signal: AbortSignal;

  constructor(inner: Delivery, fence: PartitionFence, signal: AbortSignal) {
    super(inner);
    this.#fence = fence;
    this.#signal = signal;
  }

  override get revoked(): AbortSignal {
    this.#fence.check();
    return this.#signal;
  }
  override ack(): void {
    if (!this.#fence.revoked) this.inner.ack();
  }
  override nak(delayMs: number): void {
    if (!this.#fence.revoked) this.inner.nak(delayMs);
  }
  override term(): void {
    if (!this.#fence.revoked) this.inner.term();
  }
  override working(): void {
    if (!this.#fence.revoked) this.inner.working();
  }
}

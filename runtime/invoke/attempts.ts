import type { Delivery } from "../contracts/delivery.ts";

/**
 * Counts, per message, the deliveries that did not spend an attempt (see
 * `spendsAttempt()`): a nak at shutdown, a bystander of a terminated thread, a message
 * held by an open breaker or handed back unrun. The server's delivery count alone cannot
 * tell these from failures; a message's attempt is its delivery count less them.
 *
 * Kept by this host in memory: a redelivery that another replica receives counts every
 * delivery. Bounded: past `limit` messages, the oldest note is dropped.
 */
export class AttemptLedger {
  readonly #spared = new Map<string, number>();
  readonly #limit: number;

  constructor(limit = 10_000) {
    this.#limit = limit;
  }

  /** This delivery's attempt, 1-based. */
  attempt(delivery: Delivery): number {
    if (this.#spared.size === 0) return delivery.deliveryCount;
    return Math.max(1, delivery.deliveryCount - (this.#spared.get(key(delivery)) ?? 0));
  }

  /** Notes that this delivery's redelivery must not count as an attempt. */
  spare(delivery: Delivery): void {
    const id = key(delivery);
    const spared = (this.#spared.get(id) ?? 0) + 1;
    this.#spared.delete(id); // re-inserted last: the map's order is the eviction order
    this.#spared.set(id, spared);
    if (this.#spared.size > this.#limit) this.#spared.delete(this.#spared.keys().next().value!);
  }

  /** The message is settled for good (acked or dead-lettered). */
  forget(delivery: Delivery): void {
    if (this.#spared.size > 0) this.#spared.delete(key(delivery));
  }
}

function key(delivery: Delivery): string {
  return `${delivery.stream}:${delivery.seq}`;
}

/**
 * Sends acknowledgements in batches. nats.js writes out what one microtask queued; acks
 * settled by many invocations land in many microtasks, and so cost one socket write each.
 * Here every ack, nak or term asked for during one turn of the event loop is sent together
 * on the next `setImmediate`, in one write. The delay is below a millisecond.
 */
export class AckBatch {
  #pending: (() => void)[] = [];
  #scheduled?: NodeJS.Immediate;

  add(send: () => void): void {
    this.#pending.push(send);
    this.#scheduled ??= setImmediate(() => this.flush());
  }

  /** Sends what is waiting now (before the connection drains, say). */
  flush(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    const batch = this.#pending;
    this.#pending = [];
    for (const send of batch) {
      try {
        send();
      } catch {
        // A closed connection: the server redelivers after the ack wait; nothing is lost.
      }
    }
  }
}

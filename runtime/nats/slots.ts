/**
 * Concurrency slots of one function. The pull loop waits for a free slot before it pulls,
 * so no message sits in a local queue while its ack timer runs (backpressure by waiting).
 * p-limit queues work instead of making the caller wait, which is what we must avoid here.
 */
export class Slots {
  readonly size: number;
  #free: number;
  #waiters: (() => void)[] = [];

  constructor(size: number) {
    this.size = size;
    this.#free = size;
  }

  get free(): number {
    return this.#free;
  }

  /** Resolves once a slot is free (or at once when one is). */
  whenFree(): Promise<void> {
    if (this.#free > 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  take(): void {
    this.#free--;
  }

  release(): void {
    this.#free++;
    this.#waiters.shift()?.();
  }

  /** Wakes every waiter, so a stopping loop does not wait for a slot. */
  wakeAll(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

/**
 * Keeps held deliveries from being redelivered behind the host's back: every delivery added
 * is sent `working()` (through its `beat`) every half ack wait until it is removed. One timer
 * for all of a function's held deliveries, whatever holds them: the invoker while a handler
 * may outlive half the ack wait or waits in its thread for a slot, an ordered function's
 * lanes while an event waits for its key. The first beat comes within one period of the
 * add, so a delivery's ack timer is reset at least every ack wait.
 */
export class Heartbeats {
  readonly #periodMs: number;
  readonly #beats = new Set<() => void>();
  #timer?: NodeJS.Timeout;

  /** Beats every half of `ackWaitMs` (at least every 100 ms). */
  static forAckWait(ackWaitMs: number): Heartbeats {
    return new Heartbeats(Math.max(100, Math.floor(ackWaitMs / 2)));
  }

  constructor(periodMs: number) {
    this.#periodMs = periodMs;
  }

  /** Deliveries beaten now. */
  get size(): number {
    return this.#beats.size;
  }

  /** Beats `beat` every period until the returned function is called. */
  add(beat: () => void): () => void {
    // Its own function, so that one beat added twice is removed once each.
    const entry = (): void => beat();
    this.#beats.add(entry);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#beat(), this.#periodMs);
      this.#timer.unref();
    }
    return () => {
      this.#beats.delete(entry);
      if (this.#beats.size === 0) this.#stop();
    };
  }

  /** Stops beating everything. */
  close(): void {
    this.#beats.clear();
    this.#stop();
  }

  #beat(): void {
    for (const beat of this.#beats) beat();
  }

  #stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Keeps a long invocation's message from being redelivered: calls `beat` (the message's
 * `working()`) every half ack wait until stopped. Stopped when the invocation settles, so
 * a timed-out handler is not kept alive past its timeout.
 */
export class Heartbeat {
  readonly #timer: NodeJS.Timeout;

  constructor(ackWaitMs: number, beat: () => void) {
    this.#timer = setInterval(beat, Math.max(100, Math.floor(ackWaitMs / 2)));
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

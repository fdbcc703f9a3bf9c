/** How often the watch ticks; a tick that comes late by more than this measures a stall. */
const TICK_MS = 50;

/**
 * Measures how long the event loop stalled: a timer ticks every 50 ms, and the lateness of
 * each tick is a stall (a handler hogging the loop with synchronous work). Keeps the
 * longest stall of the current window and of the one before it.
 */
export class LoopWatch {
  readonly #timer: NodeJS.Timeout;
  readonly #window: NodeJS.Timeout;
  #last = performance.now();
  #current = 0;
  #previous = 0;

  constructor(windowMs: number) {
    this.#timer = setInterval(() => {
      const now = performance.now();
      this.#current = Math.max(this.#current, now - this.#last - TICK_MS);
      this.#last = now;
    }, TICK_MS);
    this.#window = setInterval(() => {
      this.#previous = this.#current;
      this.#current = 0;
    }, windowMs);
    this.#timer.unref();
    this.#window.unref();
  }

  /** The longest stall seen in the current and the previous window, in ms. */
  get longestStallMs(): number {
    return Math.max(this.#current, this.#previous);
  }

  stop(): void {
    clearInterval(this.#timer);
    clearInterval(this.#window);
  }
}

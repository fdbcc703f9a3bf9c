/**
 * A job run now and then every `intervalMs`, one run at a time: a run still going when the
 * next is due makes that one skip, so a slow server never piles them up. The timer does
 * not keep the process alive. `run` must not reject: it logs its own failures.
 */
export class Periodic {
  readonly #run: () => Promise<void>;
  #timer?: NodeJS.Timeout;
  #running?: Promise<void>;

  constructor(run: () => Promise<void>) {
    this.#run = run;
  }

  start(intervalMs: number): void {
    const tick = (): void => {
      this.#running ??= this.#run().finally(() => (this.#running = undefined));
    };
    tick();
    this.#timer = setInterval(tick, intervalMs);
    this.#timer.unref();
  }

  /** No more runs; resolves when the one going, if any, has ended. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}

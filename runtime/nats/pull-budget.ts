/**
 * The deliveries one function may hold at once, shared by its pull loops (its stream's and
 * its replays'): running, or asked for by an open pull and not arrived yet. Whatever loop
 * frees room, every loop sharing the budget is told, so a replay never runs a function
 * beyond its `concurrency`, and live events take the room a replay leaves.
 */
export class PullBudget {
  readonly capacity: number;
  #held = 0;
  readonly #listeners = new Set<() => void>();

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Room left: what a loop may ask for now. */
  get free(): number {
    return this.capacity - this.#held;
  }

  take(n: number): void {
    this.#held += n;
  }

  give(n: number): void {
    this.#held -= n;
    for (const listener of this.#listeners) listener();
  }

  /** `listener` runs whenever room is given back. */
  onGive(listener: () => void): void {
    this.#listeners.add(listener);
  }
}

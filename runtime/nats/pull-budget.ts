/**
 * The deliveries one function may hold at once, shared by its pull loops (its stream's and
 * its replays'): running, or asked for by an open pull and not arrived yet. Each loop holds
 * a {@link BudgetPart} with a limit of its own, and together they never exceed the
 * capacity (the function's `concurrency`). Whatever loop gives room back, every loop is
 * told.
 *
 * Limits are what keeps one loop from taking everything: an idle loop keeps its pulls open
 * (for up to 2 s each), and the room they ask for is held until they end.
 */
export class PullBudget {
  readonly capacity: number;
  #held = 0;
  readonly #listeners = new Set<() => void>();

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** A loop's part: it holds at most `limit()` (read anew each time), and the budget's room. */
  part(limit: () => number = () => this.capacity): BudgetPart {
    let held = 0;
    return {
      get limit() {
        return limit();
      },
      free: () => Math.max(0, Math.min(this.capacity - this.#held, limit() - held)),
      take: (n) => {
        held += n;
        this.#held += n;
      },
      give: (n) => {
        held -= n;
        this.#held -= n;
        for (const listener of this.#listeners) listener();
      },
      onGive: (listener) => {
        this.#listeners.add(listener);
      },
    };
  }
}

/** One pull loop's share of a {@link PullBudget}. */
export interface BudgetPart {
  /** The most this loop may hold now. */
  readonly limit: number;
  /** Room this loop may ask for now. */
  free(): number;
  take(n: number): void;
  give(n: number): void;
  /** `listener` runs whenever any loop of the budget gives room back. */
  onGive(listener: () => void): void;
}

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

/**
 * What a pull loop knows when it decides how much to ask for (see {@link pullSize}). The
 * loop passes getters: each is read at most once, and only when the decision needs it
 * (reading a breaker's state can move it from open to half-open).
 */
export interface PullState {
  /** Deliveries the gate lets start now: 0 (closed), a few probes, or unlimited. */
  readonly allowance: number;
  /** Room the loop may ask for now ({@link BudgetPart.free}). */
  readonly room: number;
  /** Whether only probes may start (the breaker is half-open). */
  readonly probing: boolean;
  /** Pull requests the loop has open. */
  readonly openPulls: number;
  /** Pull requests the loop may keep open at once. */
  readonly maxPulls: number;
  /** The most the loop may hold ({@link BudgetPart.limit}). */
  readonly limit: number;
}

/**
 * How many messages a pull loop asks for now; 0 to wait. Nothing while the gate is closed
 * or the room is taken; while probing, the free probes from one pull at a time; all the
 * room when no pull is open; with pulls open, all the room only once it is a worthwhile
 * batch (a quarter of the limit) and fewer than `maxPulls` are open, so a busy function
 * pulls in batches, not one message per freed slot.
 */
export function pullSize(state: PullState): number {
  const allowance = state.allowance;
  if (allowance === 0) return 0;
  const room = state.room;
  if (room <= 0) return 0;
  if (state.probing) {
    // Only probes, from one pull at a time.
    return state.openPulls > 0 ? 0 : Math.min(room, allowance);
  }
  const openPulls = state.openPulls;
  if (openPulls === 0) return room;
  return openPulls < state.maxPulls && room >= Math.ceil(state.limit / 4) ? room : 0;
}

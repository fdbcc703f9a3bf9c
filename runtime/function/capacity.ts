import type { CompiledFunction } from "../config/types.ts";
import { Heartbeats } from "../invoke/heartbeats.ts";
import { type BudgetPart, PullBudget } from "../nats/pull-budget.ts";

/** What an executor declares about the deliveries it holds (see `Executor.waitingRoom`). */
export interface HeldByExecutor {
  /** Deliveries it holds beyond the function's `concurrency`, waiting in it for a slot. */
  readonly waitingRoom: number;
}

/**
 * How many deliveries one function holds, and how they are kept alive: the one owner of
 * that arithmetic.
 *
 * - Its live events and its replays share its `concurrency`: while replays wait, they have
 *   half of it (at least 1), and live events the rest. An ordered function's replays, which
 *   run unordered beside its partitions, have a `concurrency` of their own.
 * - An executor with a waiting room (a worker thread) holds that many more live events,
 *   which wait in it for a slot.
 * - Every delivery held past half its ack wait is heartbeated: a running one when the
 *   function's `timeout` may outlive half its ack wait, or when it may first wait in its
 *   executor's waiting room; one waiting for its key (ordering); one whose output waits for
 *   the broker. One {@link Heartbeats} timer beats them all.
 */
export class Capacity {
  /** Room for the live events' pull loop (unordered functions: an ordered one holds its own). */
  readonly live: BudgetPart;
  /** Room for the replays' pull loop. */
  readonly replays: BudgetPart;
  /** Deliveries a live pull loop may hold: `concurrency` plus the executor's waiting room. */
  readonly liveCapacity: number;
  /** Whether a running delivery is heartbeated. */
  readonly heartbeat: boolean;
  readonly heartbeats: Heartbeats;

  /** @param replaysWaiting whether replays of the function wait to run (its replay gate). */
  constructor(
    fn: Pick<CompiledFunction, "concurrency" | "ackWaitMs" | "timeoutMs" | "ordering" | "batch">,
    executor: HeldByExecutor,
    replaysWaiting: () => boolean,
  ) {
    const extra = executor.waitingRoom;
    const replayShare = Math.max(1, Math.floor(fn.concurrency / 2));
    // A batch function holds events by the batch: `concurrency` batches running, and one filling.
    const per = fn.batch?.maxSize ?? 1;
    const filling = fn.batch ? per : 0;
    this.liveCapacity = fn.concurrency * per + filling + extra;
    const budget = new PullBudget(this.liveCapacity);
    this.live = budget.part(() => (replaysWaiting() ? fn.concurrency - replayShare : fn.concurrency) * per + filling + extra);
    this.replays = fn.ordering ? new PullBudget(fn.concurrency).part() : budget.part(() => replayShare * per);
    this.heartbeat = fn.timeoutMs > fn.ackWaitMs / 2 || extra > 0;
    this.heartbeats = Heartbeats.forAckWait(fn.ackWaitMs);
  }
}

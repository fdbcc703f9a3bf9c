import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { CompiledFunction, CompiledSchedule } from "../config/types.ts";
import { SCHEDULE_STREAM, ScheduleHeader, scheduleSubject } from "../contracts/schedule.ts";
import { CronSchedule } from "../schedule/cron-schedule.ts";
import type { Logger } from "../telemetry/logger.ts";

/** `jetfn_schedule_ticks_total{result}`: run on time, run late by a catch-up, or not run (missed). */
export type TickResult = "fired" | "caught_up" | "skipped";

export interface TickerOptions {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly fn: CompiledFunction & { readonly schedule: CompiledSchedule };
  readonly log: Logger;
  /** This host's clock, epoch ms (with `JETFN_TEST_CLOCK_OFFSET` applied). */
  readonly now: () => number;
  /** Ticks this host published (`fired`, `caught_up`) or decided not to run (`skipped`). */
  readonly counted: (result: TickResult, count: number) => void;
  /** The next tick this host waits for. */
  readonly next: (at: number | undefined) => void;
}

/**
 * A tick this late (by this host's clock) is still run on time: later ones were missed. A few
 * seconds, so that a replica whose event loop stalled briefly (a busy machine, a GC pause)
 * runs what came due meanwhile rather than applying `catchUp` to it.
 */
const ON_TIME_MS = 5000;
/** Missed ticks are counted up to this many (for `skipped`): counting costs about 50 µs a tick. */
const COUNT_CAP = 1000;
/** Reads and publishes of one tick, each refused because another replica's came first, before the step fails. */
const MAX_TRIES = 5;
/** After a failed step, the next one comes this much later. */
const RETRY_MS = 1000;

/** The last tick on the function's subject, as the stream holds it. */
interface LastTick {
  readonly at: number;
  readonly seq: number;
  /** The cron and time zone it was worked out from. */
  readonly spec: string | undefined;
}

/**
 * Publishes one function's ticks into `JETFN_SCHEDULES`, once each across every replica,
 * with no leader. Every replica works out the due ticks by its own clock and publishes each
 * with `Nats-Expected-Last-Subject-Sequence` set to the last tick it read: the first publish
 * wins, the others are refused (or dropped as duplicates of `tick:<function>:<time>`), read
 * again and find the tick there. A replica whose clock runs ahead publishes a tick early;
 * the others then find it done. Ticks are never published out of order, nor a time twice.
 *
 * Missed ticks (more than {@link ON_TIME_MS} overdue: no replica ran, or this host stalled)
 * follow `catchUp`: `none` skips them, `latest` runs the last, `all` runs each, at most
 * `maxCatchUp` of the newest, in order. A changed cron or time zone re-anchors from now: no
 * catch-up, and no time at or before the last tick runs again.
 */
export class Ticker {
  readonly #options: TickerOptions;
  readonly #schedule: CronSchedule;
  readonly #subject: string;
  /** The schedule as the ticks' header says it. */
  readonly #spec: string;
  /** The latest tick time this host published or decided not to run. */
  #floor = Number.NEGATIVE_INFINITY;
  /** Whether the first step has decided where this host goes on from. */
  #anchored = false;
  /**
   * The first step found no tick of this schedule and went on from its own clock's now.
   * Until a tick of this host's lands, a tick of the same schedule found there first (another
   * replica's, whose clock is behind) moves the anchor back to it: a clock running ahead
   * must not skip the ticks between the two clocks' nows.
   */
  #anchoredAtNow = false;
  #timer?: NodeJS.Timeout;
  #stepping?: Promise<void>;
  #stopped = false;

  constructor(options: TickerOptions) {
    this.#options = options;
    const { cron, timezone } = options.fn.schedule;
    this.#schedule = new CronSchedule({ cron, timezone });
    this.#subject = scheduleSubject(options.fn.name);
    this.#spec = `${cron} ${timezone}`;
  }

  /** Catches up with what was missed (by `catchUp`), then keeps time. */
  async start(): Promise<void> {
    await this.#step();
  }

  /** Stops: no tick is published after this resolves. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#stepping;
    this.#options.next(undefined);
  }

  #step(): Promise<void> {
    this.#stepping = this.#run()
      .catch((error: unknown) => {
        this.#options.log.warn({ err: error }, "schedule: publishing a tick failed; trying again");
        this.#arm(this.#options.now() + RETRY_MS);
      })
      .finally(() => (this.#stepping = undefined));
    return this.#stepping;
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    const { fn, now } = this.#options;
    const { catchUp, maxCatchUp } = fn.schedule;
    const at = now();
    const last = await this.#last();
    // Going on from the last tick of the same schedule; a new one (or none yet) from now.
    if (!this.#anchored && last?.spec !== this.#spec) {
      this.#floor = Math.max(this.#floor, at, last?.at ?? Number.NEGATIVE_INFINITY);
      this.#anchoredAtNow = true;
    } else this.#goOnFrom(last);
    this.#anchored = true;
    const anchor = Math.max(this.#floor, last?.at ?? Number.NEGATIVE_INFINITY);
    // Missed: more than ON_TIME_MS overdue. Only the newest `keep` of them are read, and
    // the rest counted up to COUNT_CAP (a cron every second is 86,400 ticks a day).
    const cut = at - ON_TIME_MS;
    const onTime = this.#schedule.between(Math.max(anchor, cut), at, 1000);
    const keep = catchUp === "none" ? 0 : catchUp === "latest" ? 1 : maxCatchUp;
    const newest = anchor < cut ? this.#schedule.newest(anchor, cut, Math.max(keep, 1)) : [];
    const caughtUp = keep > 0 ? newest : [];
    const missedCount = newest.length > 0 ? Math.max(newest.length, this.#schedule.count(anchor, cut, COUNT_CAP)) : 0;
    const skipped = missedCount - caughtUp.length;
    if (skipped > 0) {
      this.#options.counted("skipped", skipped);
      const fields = { skipped: missedCount >= COUNT_CAP ? `at least ${skipped}` : skipped, catch_up: catchUp };
      this.#options.log.warn(fields, "schedule: missed ticks not run");
    }
    if (newest.length > 0) this.#floor = Math.max(this.#floor, newest.at(-1)!);
    for (const [tick, result] of [...caughtUp.map((t) => [t, "caught_up"] as const), ...onTime.map((t) => [t, "fired"] as const)]) {
      if (await this.#publish(tick, result)) return this.#run();
    }
    const next = this.#schedule.next(Math.max(this.#floor, anchor, at));
    if (next !== undefined) this.#arm(next);
    else this.#options.next(undefined);
  }

  #arm(at: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#options.next(at);
    this.#timer = setTimeout(() => void this.#step(), Math.max(0, at - this.#options.now()));
    this.#timer.unref();
  }

  /**
   * While this host is anchored at its own now, a tick of the same schedule before that
   * anchor is another replica's, whose clock is behind: this host goes on from it.
   * Returns whether it did (the due ticks are then worked out again).
   */
  #goOnFrom(last: LastTick | undefined): boolean {
    if (!this.#anchoredAtNow || last?.spec !== this.#spec || last.at >= this.#floor) return false;
    this.#options.log.info({ from: new Date(last.at).toISOString() }, "schedule: another replica's tick came first; going on from it");
    this.#anchoredAtNow = false;
    this.#floor = last.at;
    return true;
  }

  /**
   * Publishes tick `at` unless another replica has (or a later one is there). Returns true
   * when it found a tick that moves this host's anchor back (see {@link #goOnFrom}).
   */
  async #publish(at: number, result: TickResult): Promise<boolean> {
    const { js, fn } = this.#options;
    for (let tries = 0; tries < MAX_TRIES; tries++) {
      if (this.#stopped) return false;
      const last = await this.#last();
      if (this.#goOnFrom(last)) return true;
      if (last && last.at >= at) break;
      const h = natsHeaders();
      h.set(ScheduleHeader.ScheduledTime, String(at));
      h.set(ScheduleHeader.Schedule, this.#spec);
      const event = { ...fn.schedule.payload, scheduledTime: new Date(at).toISOString() };
      try {
        const ack = await js.publish(this.#subject, JSON.stringify(event), {
          headers: h,
          msgID: `tick:${fn.name}:${at}`,
          expect: { lastSubjectSequence: last?.seq ?? 0 },
        });
        if (!ack.duplicate) this.#options.counted(result, 1);
        this.#anchoredAtNow = false;
        break;
      } catch (error) {
        // Another replica published first: read again, and find the tick there.
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequence) {
          if (tries + 1 < MAX_TRIES) continue;
          // Never given up by moving on: the step fails, and the next one (a second later) tries again.
          throw new Error(`tick ${new Date(at).toISOString()} kept meeting other replicas' publishes (${MAX_TRIES} tries)`);
        }
        throw error;
      }
    }
    this.#floor = Math.max(this.#floor, at);
    return false;
  }

  async #last(): Promise<LastTick | undefined> {
    const message = await this.#options.jsm.streams.getMessage(SCHEDULE_STREAM, { last_by_subj: this.#subject });
    if (!message) return undefined;
    const at = Number(message.header?.get(ScheduleHeader.ScheduledTime));
    return { at: Number.isFinite(at) ? at : 0, seq: message.seq, spec: message.header?.get(ScheduleHeader.Schedule) || undefined };
  }
}

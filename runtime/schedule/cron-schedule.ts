import { Cron } from "croner";

/** A function's `schedule:` as compiled. */
export interface ScheduleSpec {
  /** 5 fields, or 6 with seconds first. */
  readonly cron: string;
  /** IANA time zone. */
  readonly timezone: string;
}

/** How far back a clock may have been turned to repeat a local time (DST: an hour). */
const REPEAT_WINDOW_MS = 3 * 60 * 60 * 1000;

/**
 * When a cron fires, in its time zone, by EventBridge Scheduler's rule for daylight saving:
 * a local time that does not exist (the hour skipped in spring) is skipped, and a local time
 * that happens twice (the hour repeated in autumn) fires once, the first time. croner reads
 * the pattern and the zone; this keeps its answers that honour that rule.
 */
export class CronSchedule {
  readonly spec: ScheduleSpec;
  readonly #cron: Cron;
  readonly #local: Intl.DateTimeFormat;

  /** Throws a readable Error for a pattern croner refuses or an unknown time zone. */
  constructor(spec: ScheduleSpec) {
    this.spec = spec;
    this.#cron = new Cron(spec.cron, { timezone: spec.timezone, paused: true });
    // Reading a time in the zone once: an unknown zone throws here, not at the first tick.
    this.#local = new Intl.DateTimeFormat("en-US", {
      timeZone: spec.timezone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    this.#cron.nextRun(new Date(0));
  }

  /** The first tick strictly after `after` (epoch ms); undefined when there is none. */
  next(after: number): number | undefined {
    let from = after;
    for (let guard = 0; guard < 1000; guard++) {
      const at = this.#cron.nextRun(new Date(from))?.getTime();
      if (at === undefined) return undefined;
      if (this.#fires(at)) return at;
      from = at;
    }
    return undefined;
  }

  /** Ticks in `(after, until]`, oldest first, at most `limit` of the newest. */
  between(after: number, until: number, limit: number): number[] {
    const ticks: number[] = [];
    for (let at = this.next(after); at !== undefined && at <= until; at = this.next(at)) {
      ticks.push(at);
      if (ticks.length > limit) ticks.shift();
    }
    return ticks;
  }

  /** The newest `count` ticks in `(after, until]`, oldest first: found walking back from `until`. */
  newest(after: number, until: number, count: number): number[] {
    const found: number[] = [];
    let before = until + 1;
    while (found.length < count) {
      const runs = this.#cron.previousRuns(count, new Date(before));
      if (runs.length === 0) break;
      for (const run of runs) {
        const at = run.getTime();
        if (at <= after) return found.reverse();
        if (this.#fires(at)) found.push(at);
        before = at;
        if (found.length === count) break;
      }
    }
    return found.reverse();
  }

  /** How many ticks fall in `(after, until]`, counting no further than `cap` (croner's time zone arithmetic is slow). */
  count(after: number, until: number, cap: number): number {
    let count = 0;
    for (let at = this.next(after); at !== undefined && at <= until && count < cap; at = this.next(at)) count++;
    return count;
  }

  /** The local wall-clock time of `at` in the zone, as `YYYY-MM-DD HH:MM:SS`. */
  local(at: number): string {
    const parts = Object.fromEntries(this.#local.formatToParts(new Date(at)).map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
  }

  /**
   * Whether croner's `at` is a tick by the rule: its local time is one the pattern names (not
   * a skipped local time moved forward), and it is not the second time of a repeated one.
   */
  #fires(at: number): boolean {
    if (!this.#cron.match(new Date(at))) return false;
    // Only where the clock went back in the hours before can a local time repeat.
    if (this.#offset(at - REPEAT_WINDOW_MS) <= this.#offset(at)) return true;
    const wall = this.local(at);
    // The same local time earlier, by as much as the clock went back: the first time it fired.
    for (let back = 15 * 60 * 1000; back <= REPEAT_WINDOW_MS; back += 15 * 60 * 1000) {
      if (this.local(at - back) === wall) return false;
    }
    return true;
  }

  /** The zone's offset from UTC at `at`, in ms (its local wall-clock time read as UTC, less `at`). */
  #offset(at: number): number {
    const wall = Date.parse(`${this.local(at).replace(" ", "T")}Z`);
    return wall - Math.floor(at / 1000) * 1000;
  }
}

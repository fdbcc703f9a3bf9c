/**
 * Scheduled functions' ticks (`schedule:` in functions.yaml): the stream of jetfn's they are
 * published to, one subject per function, and the headers a tick carries. Each tick is one
 * message, published by whichever replica comes first (see `nats/ticker.ts`).
 */

/** The stream holding every function's ticks. */
export const SCHEDULE_STREAM = "JETFN_SCHEDULES";

/** Its subjects: `jetfn.schedule.<function>`. */
export const SCHEDULE_SUBJECTS = "jetfn.schedule.>";

/** The subject of one function's ticks. */
export function scheduleSubject(fn: string): string {
  return `jetfn.schedule.${fn}`;
}

/** Headers of a tick. */
export const ScheduleHeader = {
  /** The tick's time, epoch milliseconds: `ctx.schedule.scheduledTime`. */
  ScheduledTime: "Jetfn-Scheduled-Time",
  /** The cron and time zone it was worked out from: a changed schedule re-anchors from now. */
  Schedule: "Jetfn-Schedule",
} as const;

/** `ctx.schedule` of a tick's run, from the delivery's headers; undefined for any other event. */
export function scheduleOf(
  headers: Readonly<Record<string, string>>,
  now = Date.now(),
): { scheduledTime: Date; lateMs: number } | undefined {
  const raw = headers[ScheduleHeader.ScheduledTime];
  if (raw === undefined) return undefined;
  const ms = Number(raw);
  if (!Number.isFinite(ms)) return undefined;
  return { scheduledTime: new Date(ms), lateMs: now - ms };
}

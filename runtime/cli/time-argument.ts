import { isDuration, parseDuration } from "../config/duration.ts";

/** An ISO 8601 date, optionally with a time and zone: 2024-05-01, 2024-05-01T14:30:00Z. */
const ISO_DATE = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * A point in time as an option gives it (`--since`, `--before`): an ISO 8601 date or date and
 * time (a date alone is midnight UTC, a time without a zone is local time, as JavaScript reads
 * them), or a duration in jetfn's grammar (`90s`, `30m`, `2h`, `168h`) meaning that long
 * before `now`. Anything else throws a `RangeError` saying what is accepted.
 */
export function parseTimeArgument(text: string, now: Date = new Date()): Date {
  if (isDuration(text)) return new Date(now.getTime() - parseDuration(text));
  const time = ISO_DATE.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(time))
    throw new RangeError(`expected an ISO date like 2024-05-01T14:30:00Z or a duration like 2h, got ${JSON.stringify(text)}`);
  return new Date(time);
}

import { defineFunction } from "jetfn";
import { z } from "zod";

/** A tick of this function's `schedule:` (functions.yaml): its time, and the schedule's payload. */
const Tick = z.object({
  scheduledTime: z.string(),
  olderThanMinutes: z.number().int().positive().default(30),
});

/**
 * Every 10 minutes (see `schedule:` in functions.yaml), once across every replica: expires
 * the orders left unpaid for longer than `olderThanMinutes`. Here a log line stands in for
 * the database query.
 */
export default defineFunction({
  schema: Tick,
  async handler(tick, ctx) {
    const cutoff = new Date(Date.parse(tick.scheduledTime) - tick.olderThanMinutes * 60_000);
    ctx.log.info({ cutoff: cutoff.toISOString(), late_ms: ctx.schedule?.lateMs }, "expired orders unpaid since before the cutoff");
    return { cutoff: cutoff.toISOString() };
  },
});

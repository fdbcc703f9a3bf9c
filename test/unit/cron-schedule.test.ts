/**
 * CronSchedule: when a cron fires in its time zone, with daylight saving by EventBridge
 * Scheduler's rule (a local time that does not exist is skipped; one that happens twice
 * fires once). The clock is injected: every case names its own instants.
 */
import { describe, expect, it } from "vitest";
import { CronSchedule } from "../../runtime/schedule/cron-schedule.ts";

const iso = (ms: number) => new Date(ms).toISOString();
const ticks = (schedule: CronSchedule, from: string, to: string) => schedule.between(Date.parse(from), Date.parse(to), 1000).map(iso);

describe("CronSchedule", () => {
  it("fires on the pattern in UTC by default, 5 fields or 6 with seconds", () => {
    expect(ticks(new CronSchedule({ cron: "*/10 * * * *", timezone: "UTC" }), "2030-01-01T00:00:00Z", "2030-01-01T00:30:00Z")).toEqual([
      "2030-01-01T00:10:00.000Z",
      "2030-01-01T00:20:00.000Z",
      "2030-01-01T00:30:00.000Z",
    ]);
    expect(ticks(new CronSchedule({ cron: "*/2 * * * * *", timezone: "UTC" }), "2030-01-01T00:00:00Z", "2030-01-01T00:00:05Z")).toEqual([
      "2030-01-01T00:00:02.000Z",
      "2030-01-01T00:00:04.000Z",
    ]);
  });

  it("keeps only the newest `limit` ticks of a range, oldest first", () => {
    const schedule = new CronSchedule({ cron: "* * * * *", timezone: "UTC" });
    expect(schedule.between(Date.parse("2030-01-01T00:00:00Z"), Date.parse("2030-01-01T00:10:00Z"), 2).map(iso)).toEqual([
      "2030-01-01T00:09:00.000Z",
      "2030-01-01T00:10:00.000Z",
    ]);
  });

  it("finds the newest ticks of a range walking back, and counts a range up to a cap", () => {
    const schedule = new CronSchedule({ cron: "* * * * * *", timezone: "Europe/Berlin" });
    const from = Date.parse("2030-01-01T00:00:00Z");
    expect(schedule.newest(from, from + 86_400_000, 3).map(iso)).toEqual([
      "2030-01-01T23:59:58.000Z",
      "2030-01-01T23:59:59.000Z",
      "2030-01-02T00:00:00.000Z",
    ]);
    expect(schedule.newest(from, from + 2000, 5).map(iso)).toEqual(["2030-01-01T00:00:01.000Z", "2030-01-01T00:00:02.000Z"]);
    expect(schedule.count(from, from + 86_400_000, 1000)).toBe(1000);
    expect(schedule.count(from, from + 5000, 1000)).toBe(5);
    // Daylight saving holds walking back too: 02:30 on 29 March 2026 does not exist.
    const daily = new CronSchedule({ cron: "30 2 * * *", timezone: "Europe/Berlin" });
    expect(daily.newest(Date.parse("2026-03-27T12:00:00Z"), Date.parse("2026-03-30T12:00:00Z"), 2).map(iso)).toEqual([
      "2026-03-28T01:30:00.000Z",
      "2026-03-30T00:30:00.000Z",
    ]);
  });

  it("Europe/Berlin, spring: 02:30 does not exist on 29 March 2026 and is skipped", () => {
    const daily = new CronSchedule({ cron: "30 2 * * *", timezone: "Europe/Berlin" });
    expect(ticks(daily, "2026-03-27T12:00:00Z", "2026-03-31T12:00:00Z")).toEqual([
      "2026-03-28T01:30:00.000Z", // 02:30 CET
      "2026-03-30T00:30:00.000Z", // 02:30 CEST
      "2026-03-31T00:30:00.000Z",
    ]);
  });

  it("Europe/Berlin, autumn: 02:30 happens twice on 25 October 2026 and fires once, the first time", () => {
    const daily = new CronSchedule({ cron: "30 2 * * *", timezone: "Europe/Berlin" });
    expect(ticks(daily, "2026-10-23T12:00:00Z", "2026-10-27T12:00:00Z")).toEqual([
      "2026-10-24T00:30:00.000Z",
      "2026-10-25T00:30:00.000Z", // 02:30 CEST; 02:30 CET (01:30Z) does not fire
      "2026-10-26T01:30:00.000Z",
      "2026-10-27T01:30:00.000Z",
    ]);
  });

  it("America/New_York, autumn: the repeated hour's half hours fire once each", () => {
    const halfHourly = new CronSchedule({ cron: "*/30 * * * *", timezone: "America/New_York" });
    const fired = halfHourly.between(Date.parse("2026-11-01T04:50:00Z"), Date.parse("2026-11-01T08:10:00Z"), 100);
    expect(fired.map((at) => halfHourly.local(at))).toEqual([
      "2026-11-01 01:00:00",
      "2026-11-01 01:30:00",
      "2026-11-01 02:00:00",
      "2026-11-01 02:30:00",
      "2026-11-01 03:00:00",
    ]);
    expect(fired.map(iso).slice(0, 3)).toEqual(["2026-11-01T05:00:00.000Z", "2026-11-01T05:30:00.000Z", "2026-11-01T07:00:00.000Z"]);
  });

  it("America/New_York, spring: 02:00 and 02:30 do not exist on 8 March 2026 and are skipped", () => {
    const halfHourly = new CronSchedule({ cron: "*/30 * * * *", timezone: "America/New_York" });
    const fired = halfHourly.between(Date.parse("2026-03-08T05:50:00Z"), Date.parse("2026-03-08T08:10:00Z"), 100);
    expect(fired.map((at) => halfHourly.local(at))).toEqual([
      "2026-03-08 01:00:00",
      "2026-03-08 01:30:00",
      "2026-03-08 03:00:00",
      "2026-03-08 03:30:00",
      "2026-03-08 04:00:00",
    ]);
  });

  it("refuses a pattern croner cannot read and an unknown time zone", () => {
    expect(() => new CronSchedule({ cron: "61 * * * *", timezone: "UTC" })).toThrow(/minute/);
    expect(() => new CronSchedule({ cron: "* * * * *", timezone: "Mars/Olympus_Mons" })).toThrow();
  });
});

/**
 * Scheduled functions (`schedule:`) on a real nats-server: ticks run through the function
 * like any event, with `ctx.schedule` and the payload; after every replica was down, each
 * `catchUp` policy does what it says. Handlers record each run on a subject the test reads.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
const hosts: Host[] = [];
afterEach(async () => {
  for (const host of hosts.splice(0)) await host.shutdown();
});

interface Run {
  function: string;
  scheduledTime: string;
  scope: string | null;
  ctxScheduledTime: string | null;
  lateMs: number | null;
}

function project(record: string, functions: string): string {
  return makeProject(
    {
      "functions.yaml": `
streams:
  - { name: REC_${record}, subjects: ["rec.${record.toLowerCase()}"], storage: memory }
functions:
${functions}`,
    },
    { fixtures: "schedule" },
  );
}

function scheduled(name: string, record: string, schedule: string): string {
  return `
  - name: ${name}
    handler: fns/tick.ts
    schedule: ${schedule}
    config: { record: rec.${record.toLowerCase()} }
`;
}

async function runs(record: string): Promise<Run[]> {
  const info = await nats.jsm.streams.info(`REC_${record}`);
  const found: Run[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage(`REC_${record}`, { seq });
    if (message) found.push(message.json<Run>());
  }
  return found;
}

async function start(dir: string): Promise<{ host: Host; baseUrl: string }> {
  const started = await startHost(dir, nats.server.url);
  hosts.push(started.host);
  return started;
}

describe("schedule", () => {
  it("runs each tick once through the function, with its payload and ctx.schedule; /functions and metrics show it", async () => {
    const dir = project("SA", scheduled("every-second", "SA", `{ cron: "* * * * * *", payload: { scope: eu } }`));
    const { baseUrl } = await start(dir);
    await waitFor(async () => (await runs("SA")).length >= 3, { timeout: 15_000, interval: 200, message: "three ticks ran" });
    const all = await runs("SA");
    const times = all.map((run) => Date.parse(run.scheduledTime));
    expect(new Set(times).size).toBe(times.length);
    for (const run of all) {
      expect(Date.parse(run.scheduledTime) % 1000).toBe(0);
      expect(run).toMatchObject({ function: "every-second", scope: "eu", ctxScheduledTime: run.scheduledTime });
      expect(run.lateMs).toBeGreaterThanOrEqual(0);
      expect(run.lateMs).toBeLessThan(2000);
    }
    expect(await scrape(baseUrl, `jetfn_schedule_ticks_total{function="every-second",result="fired"}`)).toBeGreaterThanOrEqual(3);
    expect(await scrape(baseUrl, `jetfn_schedule_next_tick_timestamp_seconds{function="every-second"}`)).toBeGreaterThan(
      Date.now() / 1000 - 2,
    );
    const functions = (await (await fetch(`${baseUrl}/functions`)).json()) as { name: string; schedule?: Record<string, string> }[];
    expect(functions[0]!.schedule).toMatchObject({ cron: "* * * * * *", timezone: "UTC", catchUp: "latest", nextTick: expect.any(String) });
  });

  it("after every replica was down: none skips the missed ticks, latest runs the last, all runs up to maxCatchUp, in order", async () => {
    const dir = project(
      "SB",
      scheduled("skip", "SB", `{ cron: "* * * * * *", catchUp: none }`) +
        scheduled("last", "SB", `{ cron: "* * * * * *", catchUp: latest }`) +
        scheduled("each", "SB", `{ cron: "* * * * * *", catchUp: all, maxCatchUp: 3 }`),
    );
    const first = await start(dir);
    await waitFor(async () => new Set((await runs("SB")).map((run) => run.function)).size === 3, { timeout: 15_000, interval: 200 });
    await first.host.shutdown();
    const downAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 15_000));
    const upAt = Date.now();
    const second = await start(dir);
    await waitFor(async () => (await runs("SB")).filter((run) => Date.parse(run.scheduledTime) > upAt).length >= 6, {
      timeout: 15_000,
      interval: 200,
    });

    const all = await runs("SB");
    const gapRuns = (fn: string) =>
      all
        .filter((run) => run.function === fn)
        .map((run) => Date.parse(run.scheduledTime))
        .filter((at) => at > downAt + 1000 && at <= upAt - 6000)
        .sort((a, b) => a - b);
    // Well inside the gap (more than 6 s before the restart: missed, not on time, which is 5 s).
    expect(gapRuns("skip")).toEqual([]);
    expect(gapRuns("last").length).toBeLessThanOrEqual(1);
    const each = gapRuns("each");
    expect(each.length).toBeGreaterThanOrEqual(1);
    expect(each.length).toBeLessThanOrEqual(3);
    // The ones caught up are the newest missed ones, one second apart, run in order.
    for (let i = 1; i < each.length; i++) expect(each[i]! - each[i - 1]!).toBe(1000);
    const eachOrder = all.filter((run) => run.function === "each").map((run) => Date.parse(run.scheduledTime));
    expect([...eachOrder].sort((a, b) => a - b)).toEqual(eachOrder);
    // Nothing ran twice.
    for (const fn of ["skip", "last", "each"]) {
      const times = all.filter((run) => run.function === fn).map((run) => run.scheduledTime);
      expect(new Set(times).size, fn).toBe(times.length);
    }
    const skipped = (fn: string) => scrape(second.baseUrl, `jetfn_schedule_ticks_total{function="${fn}",result="skipped"}`);
    expect(await skipped("skip")).toBeGreaterThanOrEqual(6);
    expect(await skipped("last")).toBeGreaterThanOrEqual(5);
    expect(await skipped("each")).toBeGreaterThanOrEqual(3);
    expect(await scrape(second.baseUrl, `jetfn_schedule_ticks_total{function="each",result="caught_up"}`)).toBe(3);
    expect(await scrape(second.baseUrl, `jetfn_schedule_ticks_total{function="last",result="caught_up"}`)).toBe(1);
  });

  it("a changed cron re-anchors from now: no catch-up, and no time runs twice", async () => {
    const every2 = scheduled("changes", "SC", `{ cron: "*/2 * * * * *", catchUp: all, maxCatchUp: 100 }`);
    const dir = project("SC", every2);
    const first = await start(dir);
    await waitFor(async () => (await runs("SC")).length >= 2, { timeout: 15_000, interval: 200 });
    await first.host.shutdown();
    const downAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 5000));
    // The same function, every second now: its missed ticks are not the new schedule's.
    const configFile = path.join(dir, "functions.yaml");
    const yaml = `
streams:
  - { name: REC_SC, subjects: ["rec.sc"], storage: memory }
functions:
${scheduled("changes", "SC", `{ cron: "* * * * * *", catchUp: all, maxCatchUp: 100 }`)}`;
    writeFileSync(configFile, yaml);
    const upAt = Date.now();
    const second = await start(dir);
    await waitFor(async () => (await runs("SC")).filter((run) => Date.parse(run.scheduledTime) > upAt).length >= 2, {
      timeout: 15_000,
      interval: 200,
    });
    const times = (await runs("SC")).map((run) => Date.parse(run.scheduledTime));
    expect(new Set(times).size).toBe(times.length);
    expect(times.filter((at) => at > downAt + 1000 && at < upAt - 1000)).toEqual([]);
    expect(await scrape(second.baseUrl, `jetfn_schedule_ticks_total{function="changes",result="caught_up"}`)).toBe(0);
  });
});

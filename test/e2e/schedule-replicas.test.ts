/**
 * A cron that fires every second, on 3 `jetfn start` processes, one of whose clocks runs 5 s
 * ahead (JETFN_TEST_CLOCK_OFFSET), for about 20 s, with one of the others SIGKILLed midway:
 * exactly one tick per second in JETFN_SCHEDULES from the fleet's first, none missing, none
 * twice; every tick runs. (Twice on CI the first tick was followed by a gap of four: two
 * replicas had both found no tick and anchored at their own nows, 5 s apart; the ticker now
 * goes on from the slower one's tick, see test/integration/ticker.test.ts.) The failure
 * message carries each host's schedule log lines.
 */
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { SCHEDULE_STREAM, ScheduleHeader } from "../../runtime/contracts/schedule.ts";
import { killCliHosts, startCliHost } from "../support/cli.ts";
import { makeProject, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
afterEach(killCliHosts);

const FUNCTION = "every-second";

/** Every message of a stream (one subject each here), oldest first. */
async function messages(stream: string) {
  const info = await nats.jsm.streams.info(stream);
  const found = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage(stream, { seq });
    if (message) found.push(message);
  }
  return found;
}

it("three replicas, one clock 5 s ahead, one SIGKILLed: one tick a second, none missing, none twice", async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: REC_SR, subjects: ["rec.sr"], storage: memory }
functions:
  - name: ${FUNCTION}
    handler: fns/tick.ts
    # catchUp: all, so that a tick is never missed for a replica starved of CPU on a busy
    # machine (that policy is tested elsewhere): this test is about once across replicas.
    schedule: { cron: "* * * * * *", catchUp: all, maxCatchUp: 100 }
    config: { record: rec.sr }
`,
    },
    { fixtures: "schedule" },
  );
  const config = path.join(dir, "functions.yaml");
  const env = { LOG_LEVEL: "warn" };
  const hosts = [await startCliHost(config, nats.server.url, { ...env, JETFN_TEST_CLOCK_OFFSET: "5s" })];
  const victim = await startCliHost(config, nats.server.url, env);
  hosts.push(victim, await startCliHost(config, nats.server.url, env));
  const from = Date.now() + 1000;
  await new Promise((resolve) => setTimeout(resolve, 8000));
  victim.cli.child.kill("SIGKILL");
  const killedAt = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 12_000));
  const until = Date.now() - 2000;

  const ticks = (await messages(SCHEDULE_STREAM)).map((m) => Number(m.header?.get(ScheduleHeader.ScheduledTime)));
  expect(new Set(ticks).size, "no tick published twice").toBe(ticks.length);
  const sorted = [...ticks].sort((a, b) => a - b);
  expect(sorted, "published in order").toEqual(ticks);
  // From the fleet's first tick (published while the others start and bundle, on a busy
  // machine): every second, up to the clock of the replica 5 s ahead.
  const window = ticks.filter((at) => at <= until);
  const first = window[0]!;
  const logs = hosts
    .map(({ cli }) =>
      cli
        .output()
        .split("\n")
        .filter((line) => /schedule/.test(line))
        .join("\n"),
    )
    .join("\n---\n");
  const shown = `ticks: ${ticks.map((at) => new Date(at).toISOString().slice(17, 19)).join(" ")}; from ${new Date(from).toISOString()}\n${logs}`;
  expect(first, shown).toBeLessThanOrEqual(from + 6000);
  expect(window.length, shown).toBe((window.at(-1)! - first) / 1000 + 1);
  expect(window.at(-1)!).toBeGreaterThanOrEqual(until - 1000);
  for (let i = 1; i < window.length; i++) expect(window[i]! - window[i - 1]!, "none missing").toBe(1000);

  // Every tick runs; a second run only of a tick the killed replica had in hand.
  await waitFor(
    async () => {
      const ran = new Set((await messages("REC_SR")).map((m) => Date.parse(m.json<{ scheduledTime: string }>().scheduledTime)));
      return window.every((at) => ran.has(at));
    },
    { timeout: 15_000, interval: 250, message: "every tick ran" },
  );
  const runs = (await messages("REC_SR")).map((m) => m.json<{ scheduledTime: string; lateMs: number }>());
  const counts = new Map<string, number>();
  for (const run of runs) counts.set(run.scheduledTime, (counts.get(run.scheduledTime) ?? 0) + 1);
  const twice = [...counts].filter(([, n]) => n > 1).map(([at]) => Date.parse(at));
  for (const at of twice) expect(Math.abs(at - killedAt), `ran twice: ${new Date(at).toISOString()}`).toBeLessThan(5000);
  expect(twice.length).toBeLessThanOrEqual(1);
  // The replica whose clock runs 5 s ahead published the ticks early, by its clock on time:
  // they ran about 5 s before their time (lateMs near -5000), once each all the same.
  const early = runs.filter((run) => run.lateMs < -3000);
  expect(early.length).toBeGreaterThan(runs.length / 2);
});

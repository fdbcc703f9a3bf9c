/**
 * `jetfn pause` and `jetfn resume` as an operator runs them, against two `jetfn start`
 * processes: the pause reaches both hosts, holds the function's events in the stream,
 * survives a host's restart, and lets running invocations finish; resume runs the backlog.
 */
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { killCliHosts, runCli, startCliHost } from "../support/cli.ts";
import { makeProject, scrape, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();

afterEach(killCliHosts);

/** A project whose functions run test/fixtures/control/record.ts, each publishing its runs to pzdone.<function>. */
function project(stream: string, extra = ""): string {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: ${stream}, subjects: ["${stream.toLowerCase()}.>"], storage: memory }
  - { name: ${stream}DONE, subjects: ["${stream.toLowerCase()}done.>"], storage: memory }
functions:
  - { name: record, handler: record.ts, stream: ${stream}, subjects: [${stream.toLowerCase()}.in], output: ${stream.toLowerCase()}done.record, concurrency: 8 }
  - { name: other, handler: record.ts, stream: ${stream}, subjects: [${stream.toLowerCase()}.in], output: ${stream.toLowerCase()}done.other }
${extra}`,
    },
    { fixtures: "control" },
  );
  return path.join(dir, "functions.yaml");
}

interface FunctionView {
  name: string;
  paused: boolean;
  pausedReason?: string | null;
  inflight: number;
}

async function functionView(base: string, name: string): Promise<FunctionView> {
  const fns = (await (await fetch(`${base}/functions`)).json()) as FunctionView[];
  return fns.find((f) => f.name === name)!;
}

/** Runs of `fn` so far: messages its output put in the done stream. */
async function runs(stream: string, fn: string): Promise<number> {
  const subject = `${stream.toLowerCase()}done.${fn}`;
  const info = await nats.jsm.streams.info(`${stream}DONE`, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

async function control(configFile: string, ...args: string[]): Promise<{ code: number | string; output: string }> {
  const cli = runCli(args, { NATS_URL: nats.server.url, JETFN_CONFIG: configFile });
  const code = await cli.exited;
  return { code, output: cli.output() };
}

describe("jetfn pause and resume", () => {
  it("holds a function on every host, across a restart, until resumed; then all of its events run", async () => {
    const config = project("PZ");
    let a = await startCliHost(config, nats.server.url);
    const b = await startCliHost(config, nats.server.url);

    const paused = await control(config, "pause", "record", "--reason", "db repair");
    expect(paused.code).toBe(0);
    expect(paused.output).toContain("paused record (reason: db repair)");
    const pausedAt = Date.now();
    for (const { base } of [a, b]) {
      await waitFor(async () => (await functionView(base, "record")).paused, { timeout: 2000, message: `${base} shows record paused` });
    }
    expect(Date.now() - pausedAt).toBeLessThan(2500);
    for (const { base } of [a, b]) {
      expect(await functionView(base, "record")).toMatchObject({ paused: true, pausedReason: "db repair" });
      expect(await functionView(base, "other")).toMatchObject({ paused: false });
      expect(await scrape(base, 'jetfn_function_paused{function="record"}')).toBe(1);
      expect(await scrape(base, 'jetfn_function_paused{function="other"}')).toBe(0);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
    }

    const published = Date.now();
    await Promise.all(Array.from({ length: 50 }, (_, n) => nats.js.publish("pz.in", JSON.stringify({ n }))));
    // The hosts are working: the other function on the same subject runs every event.
    await waitFor(async () => (await runs("PZ", "other")) === 50, { message: "other ran the 50 events" });
    // None runs in the 5 s after the publish: absence takes the waiting.
    await sleep(Math.max(0, 5000 - (Date.now() - published)));
    expect(await runs("PZ", "record")).toBe(0);
    const held = await nats.jsm.consumers.info("PZ", "jetfn_record");
    expect([held.num_pending, held.num_ack_pending]).toEqual([50, 0]);

    // A restart does not resume: the new process reads the pause before it pulls, and is ready.
    a.cli.child.kill("SIGTERM");
    expect(await a.cli.exited).toBe(0);
    a = await startCliHost(config, nats.server.url);
    expect(await functionView(a.base, "record")).toMatchObject({ paused: true, pausedReason: "db repair" });
    expect(await scrape(a.base, 'jetfn_function_paused{function="record"}')).toBe(1);
    expect(await runs("PZ", "record")).toBe(0);

    const resumed = await control(config, "resume", "record");
    expect(resumed.code).toBe(0);
    expect(resumed.output).toContain("resumed record");
    await waitFor(async () => (await runs("PZ", "record")) === 50, { message: "record ran the 50 events after resume" });
    for (const { base } of [a, b]) {
      expect(await functionView(base, "record")).toMatchObject({ paused: false });
      expect(await scrape(base, 'jetfn_function_paused{function="record"}')).toBe(0);
    }
    const done = await nats.jsm.consumers.info("PZ", "jetfn_record");
    expect([done.num_pending, done.num_ack_pending]).toEqual([0, 0]);
    // Every event ran once (outputs are deduplicated by message id, so the hosts' counters tell).
    const successes = await Promise.all(
      [a, b].map(({ base }) => scrape(base, 'jetfn_invocations_total{function="record",outcome="success"}')),
    );
    expect(successes[0]! + successes[1]!).toBe(50);

    // Resuming what runs changes nothing.
    const again = await control(config, "resume", "record");
    expect(again.code).toBe(0);
    expect(again.output).toContain("record is not paused");
  });

  it("lets the invocations running at the pause finish and acks them; the one waiting for a slot is handed back unrun", async () => {
    const config = project(
      "PZF",
      "  - { name: slow, handler: record.ts, stream: PZF, subjects: [pzf.slow], output: pzfdone.slow, concurrency: 4, config: { sleepMs: 1500 } }\n",
    );
    const { base } = await startCliHost(config, nats.server.url);
    await Promise.all(Array.from({ length: 8 }, (_, n) => nats.js.publish("pzf.slow", JSON.stringify({ n }))));
    // 4 run; in worker mode a fifth waits in the function's thread for a slot.
    await waitFor(async () => (await functionView(base, "slow")).inflight === 5, { message: "4 invocations running, 1 waiting" });

    expect((await control(config, "pause", "slow")).code).toBe(0);
    await waitFor(async () => (await functionView(base, "slow")).paused, { timeout: 2000 });
    await waitFor(async () => (await functionView(base, "slow")).inflight === 0, { message: "the running ones finished" });
    expect(await runs("PZF", "slow")).toBe(4);
    expect(await scrape(base, 'jetfn_acks_total{function="slow",action="ack"}')).toBe(4);
    // The waiting one never ran: nak'd back (its redeliveries, held while paused, nak'd again).
    expect(await scrape(base, 'jetfn_acks_total{function="slow",action="nak"}')).toBeGreaterThanOrEqual(1);
    expect(await scrape(base, 'jetfn_invocations_total{function="slow",outcome="success"}')).toBe(4);
    expect(await scrape(base, 'jetfn_invocations_total{function="slow",outcome="crashed"}')).toBe(0);
    expect(await scrape(base, 'jetfn_invocations_total{function="slow",outcome="timeout"}')).toBe(0);

    expect((await control(config, "resume", "slow")).code).toBe(0);
    await waitFor(async () => (await runs("PZF", "slow")) === 8, { message: "the other 4 ran after resume" });
    await waitFor(async () => (await scrape(base, 'jetfn_invocations_total{function="slow",outcome="success"}')) === 8);
    const done = await nats.jsm.consumers.info("PZF", "jetfn_slow");
    expect([done.num_pending, done.num_ack_pending]).toEqual([0, 0]);
  });

  it("holds an ordered function too (its partitions' pulls share the admission gate)", async () => {
    const config = project(
      "PZO",
      "  - { name: ordered, handler: record.ts, stream: PZO, subjects: [pzo.ordered], output: pzodone.ordered, ordering: { key: k, partitions: 2, leaseTtl: 2s } }\n",
    );
    const { base } = await startCliHost(config, nats.server.url);
    expect((await control(config, "pause", "ordered")).code).toBe(0);
    await waitFor(async () => (await functionView(base, "ordered")).paused, { timeout: 2000 });
    const published = Date.now();
    await Promise.all(Array.from({ length: 20 }, (_, n) => nats.js.publish("pzo.ordered", JSON.stringify({ n, k: `k${n % 4}` }))));
    await sleep(Math.max(0, 3000 - (Date.now() - published)));
    expect(await runs("PZO", "ordered")).toBe(0);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    expect((await control(config, "resume", "ordered")).code).toBe(0);
    await waitFor(async () => (await runs("PZO", "ordered")) === 20, { message: "the ordered function ran the 20 events after resume" });
  });

  it("refuses a function that functions.yaml does not have, naming it", async () => {
    const config = project("PZU");
    const result = await control(config, "pause", "nope");
    expect(result.code).toBe(2);
    expect(result.output).toContain("no function named nope in");
    expect((await control(config, "resume")).code).toBe(2);
  });
});

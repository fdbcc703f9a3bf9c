/**
 * `jetfn status` as an operator runs it, against two `jetfn start` processes: every host
 * found through the NATS service `jetfn`, with its functions and their counts.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import type { FleetFunctionStatus, FleetStatus } from "../../runtime/contracts/status.ts";
import { killCliHosts, runCli, startCliHost } from "../support/cli.ts";
import { makeProject, REPO_ROOT, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();

afterEach(killCliHosts);

const VERSION = (JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;

function project(): string {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: ST, subjects: ["st.>"], storage: memory }
  - { name: STDONE, subjects: ["stdone.>"], storage: memory }
functions:
  - { name: record, handler: record.ts, stream: ST, subjects: [st.in], output: stdone.record, concurrency: 6 }
  - { name: other, handler: record.ts, stream: ST, subjects: [st.other], breaker: { failureThreshold: 5, openFor: 10s } }
`,
    },
    { fixtures: "control" },
  );
  return path.join(dir, "functions.yaml");
}

async function cli(config: string, ...args: string[]): Promise<{ code: number | string; output: string }> {
  const run = runCli(args, { NATS_URL: nats.server.url, JETFN_CONFIG: config });
  const code = await run.exited;
  return { code, output: run.output() };
}

async function status(config: string): Promise<FleetStatus> {
  const { code, output } = await cli(config, "status", "--json");
  expect(code, output).toBe(0);
  return JSON.parse(output) as FleetStatus;
}

function fn(fleet: FleetStatus, host: number, name: string): FleetFunctionStatus {
  return fleet.hosts[host]!.functions.find((f) => f.name === name)!;
}

it("lists every host with its version, uptime and functions, and their counts", async () => {
  const config = project();
  const a = await startCliHost(config, nats.server.url);
  const b = await startCliHost(config, nats.server.url);

  expect((await cli(config, "status")).code).toBe(0);
  await Promise.all(Array.from({ length: 20 }, (_, n) => nats.js.publish("st.in", JSON.stringify({ n, fail: n % 5 === 0 }))));
  await waitFor(async () => (await nats.jsm.streams.info("JETFN_DLQ")).state.messages === 4, { message: "4 dead letters" });
  await waitFor(async () => (await nats.jsm.consumers.info("ST", "jetfn_record")).num_ack_pending === 0);
  expect((await cli(config, "pause", "other", "--reason", "vendor outage")).code).toBe(0);

  // Counts the hosts may still be settling are waited for; the rest is read once.
  const fleet = await waitFor(
    async () => {
      const seen = await status(config);
      const paused = seen.hosts.every((h) => h.functions.find((f) => f.name === "other")?.paused);
      const pending = seen.hosts.every((h) => h.functions.find((f) => f.name === "record")?.pending === 0);
      return seen.hosts.length === 2 && paused && pending ? seen : undefined;
    },
    { timeout: 20_000, message: "both hosts in jetfn status, other paused, record's backlog polled as 0" },
  );

  expect(fleet.hosts.map((h) => h.host.split("-").at(-2)).sort()).toEqual([String(a.cli.child.pid), String(b.cli.child.pid)].sort());
  for (const [i, host] of fleet.hosts.entries()) {
    expect(host).toMatchObject({ version: VERSION, state: "running", ready: true });
    expect(host.error).toBeUndefined();
    expect(host.uptimeMs).toBeGreaterThan(0);
    expect(Date.parse(host.startedAt!)).toBeLessThanOrEqual(Date.parse(fleet.at));
    expect(host.functions.map((f) => f.name)).toEqual(["record", "other"]);
    expect(fn(fleet, i, "record")).toMatchObject({
      bound: true,
      paused: false,
      inflight: 0,
      limit: 6,
      pending: 0,
      ackPending: 0,
      deadLetters: 4,
    });
    expect(fn(fleet, i, "record").breaker).toBeUndefined();
    expect(fn(fleet, i, "other")).toMatchObject({
      paused: true,
      pausedReason: "vendor outage",
      limit: 16,
      breaker: "closed",
      deadLetters: 0,
    });
  }
  // The two hosts shared the 20 events: 16 succeeded, 4 were dead-lettered.
  const sum = (pick: (f: FleetFunctionStatus) => number) => pick(fn(fleet, 0, "record")) + pick(fn(fleet, 1, "record"));
  expect(sum((f) => f.lastMinute.successes)).toBe(16);
  expect(sum((f) => f.lastMinute.failures)).toBe(4);
  expect(sum((f) => f.deadLettered)).toBe(4);

  // The table: a row per function per host.
  const table = await cli(config, "status");
  expect(table.code).toBe(0);
  const lines = table.output.trim().split("\n");
  expect(lines[0]).toMatch(/^HOST\s+VERSION\s+UPTIME\s+FUNCTION\s+BOUND\s+PAUSED\s+IN FLIGHT/);
  for (const host of fleet.hosts) expect(table.output).toContain(host.host);
  expect(lines.filter((line) => /\srecord\s+yes\s+no\s+0\/6\s+0\s+0\s+-\s+\d+\s+\d+\s+4$/.test(line))).toHaveLength(2);
  expect(lines.filter((line) => /\sother\s+yes\s+yes: vendor outage\s+0\/16\s/.test(line))).toHaveLength(2);
  expect(lines.at(-1)).toMatch(/^2 hosts at /);
});

it("--watch refreshes until interrupted, and no host is exit 1 naming the server", async () => {
  const config = project();
  await startCliHost(config, nats.server.url);
  const watch = runCli(["status", "--watch", "--json"], { NATS_URL: nats.server.url, JETFN_CONFIG: config });
  await waitFor(() => watch.output().trim().split("\n").length >= 2, { timeout: 15_000, message: "two refreshes" });
  watch.child.kill("SIGINT");
  expect(await watch.exited).toBe(0);
  for (const line of watch.output().trim().split("\n")) expect((JSON.parse(line) as FleetStatus).hosts).toHaveLength(1);

  await killCliHosts();
  const none = await cli(config, "status");
  expect(none.code).toBe(1);
  expect(none.output).toContain(`no jetfn host answered on ${nats.server.url}`);
});

/**
 * Ordered functions (`ordering:`) against the same handlers unordered: how fast a backlog of
 * events over many keys drains, at 1 and 3 hosts, with a no-op and a 5 ms handler. jetfn runs
 * as the container runs it: `node bin/jetfn.js start` processes (NODE_ENV=production), each on
 * its own HTTP port, against a private nats-server this script starts. Prints a markdown
 * table on stdout; progress goes to stderr.
 *
 *   node --import tsx bench/ordering.ts          (npm run bench runs it after throughput.ts)
 *
 * Environment:
 *   BENCH_ORDERED_EVENTS       events in each scenario's backlog (default 20000)
 *   BENCH_ORDERED_KEYS         distinct keys; the backlog is interleaved, key 0..K-1 then
 *                              again (default 1000, so 20 events per key)
 *   BENCH_ORDERED_ROUNDS       how many times the scenario list runs; medians (default 1)
 *   BENCH_ORDERED_WARMUP       events run through the hosts before the clock, one per key
 *                              `warm-<n>` (default 1000; 0 for none)
 *   BENCH_ORDERED_PARTITIONS   `partitions:` of the ordered functions (default 8)
 *   BENCH_ORDERED_CONCURRENCY  `concurrency:` of every function, per host (default 16, jetfn's)
 *   BENCH_ORDERED_ISOLATION    worker | none (default worker, jetfn's)
 *   BENCH_ORDERED_ONLY         comma list of scenario names (e.g. noop-ordered-h3)
 *   BENCH_ORDERED_NODE_ARGS    extra node flags for the hosts (e.g. --cpu-prof --cpu-prof-dir=DIR)
 *
 * Method, per scenario: the backlog (`{"account":"acct-<k>","i":<n>}`, keys interleaved) is
 * published before any host starts, into a staging stream (not timed). The function's own
 * memory stream starts empty. The hosts are spawned at the same moment and wait until every
 * host answers /readyz 200 and, for an ordered function, the hosts' `/functions` list every
 * partition as owned (`ordering.owned` sums to the partition count) and evenly (at most one
 * apart). Then BENCH_ORDERED_WARMUP events (one per key `warm-<n>`) run through the hosts,
 * not timed (a handler thread starts at its function's first event). Then the clock starts
 * and the function's stream is made to source the staging stream: the server copies the
 * backlog in, in order (about 0.1 s for 20,000 events here; the hosts consume meanwhile).
 * So the backlog reaches hosts that are all running with their partitions spread: none
 * runs events while the others start, and no partition moves with events in flight. The
 * clock stops when the server reports every durable of the function (see `durables`) with
 * num_pending 0, num_ack_pending 0 and the ack floor at the last event, and a forwarding
 * ordered function's `JETFN_ORDERED_<function>` empty (polled every 50 ms); the hosts' /metrics must then count at least N successful runs.
 *
 * Over the same window: CPU (utime+stime) of every host process and of nats-server from
 * /proc/<pid>/stat; the messages nats-server received and sent (/varz in_msgs, out_msgs);
 * and the machine's other load, its busy time (/proc/stat) less these processes and this
 * script's own, in cores.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { orderedStream } from "../runtime/contracts/ordered.ts";
import { type NatsServer, startNatsServer } from "../test/support/nats-server.ts";
import { CLK_TCK, choiceEnv, cpuOf, fmt, intEnv, listOf, machineLines, median, runBenchmark } from "./env.ts";

// ---------------------------------------------------------------------------------------
// Settings

const EVENTS = intEnv("BENCH_ORDERED_EVENTS", 20_000);
const KEYS = intEnv("BENCH_ORDERED_KEYS", 1_000);
const ROUNDS = intEnv("BENCH_ORDERED_ROUNDS", 1);
const WARMUP = intEnv("BENCH_ORDERED_WARMUP", 1_000, 0);
const PARTITIONS = intEnv("BENCH_ORDERED_PARTITIONS", 8);
const CONCURRENCY = intEnv("BENCH_ORDERED_CONCURRENCY", 16);
const ISOLATION = choiceEnv("BENCH_ORDERED_ISOLATION", ["worker", "none"], "worker");
const ONLY = listOf("BENCH_ORDERED_ONLY");
/** Extra node flags for the hosts (a profile: `--cpu-prof --cpu-prof-dir=/tmp/prof`). */
const NODE_ARGS = (process.env.BENCH_ORDERED_NODE_ARGS ?? "").split(" ").filter(Boolean);
/** `ordering.leaseTtl`: jetfn's default. Lease rounds run every ttl/3. */
const LEASE_TTL = "10s";
const SLEEP_MS = 5;
const PUBLISH_BATCH = 1_000;
const READY_TIMEOUT_MS = 120_000;
const DRAIN_TIMEOUT_MS = 300_000;
const READY_POLL_MS = 20;
const DRAIN_POLL_MS = 50;

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const JETFN_BIN = path.join(REPO_ROOT, "bin", "jetfn.js");
/** The throwaway project, under the repo's git-ignored `.jetfn/` so handlers resolve `jetfn`. */
const PROJECT = path.join(REPO_ROOT, ".jetfn", "bench-ordering");
const LOG_DIR = path.join(PROJECT, "logs");

// ---------------------------------------------------------------------------------------
// Scenarios

type Handler = "noop" | "sleep5";

interface Scenario {
  readonly name: string;
  readonly handler: Handler;
  readonly ordered: boolean;
  readonly hosts: number;
}

function scenario(handler: Handler, ordered: boolean, hosts: number): Scenario {
  return { name: `${handler}-${ordered ? "ordered" : "unordered"}-h${hosts}`, handler, ordered, hosts };
}

/** Each handler's rows run together, so they share the same moment's noise. */
const ALL_SCENARIOS: Scenario[] = (["noop", "sleep5"] as const).flatMap((handler) => [
  scenario(handler, false, 1),
  scenario(handler, true, 1),
  scenario(handler, true, 3),
  scenario(handler, false, 3),
]);
for (const name of ONLY) {
  if (!ALL_SCENARIOS.some((s) => s.name === name)) {
    console.error(`BENCH_ORDERED_ONLY: unknown scenario ${name}; known: ${ALL_SCENARIOS.map((s) => s.name).join(", ")}`);
    process.exit(2);
  }
}
const SCENARIOS = ALL_SCENARIOS.filter((s) => ONLY.length === 0 || ONLY.includes(s.name));

const HANDLERS: Record<Handler, string> = {
  noop: `import { defineFunction } from "jetfn";

export default defineFunction({
  async handler() {},
});
`,
  sleep5: `import { defineFunction } from "jetfn";

export default defineFunction({
  async handler() {
    await new Promise((resolve) => setTimeout(resolve, ${SLEEP_MS}));
  },
});
`,
};

/** One scenario's run in one round: its function, stream and durable names. */
interface Target {
  readonly scenario: Scenario;
  readonly round: number;
  readonly fn: string;
  readonly stream: string;
  readonly subject: string;
  readonly durable: string;
  /** The stream that holds the backlog until the clock starts. */
  readonly staging: string;
  readonly configFile: string;
}

function targetOf(s: Scenario, round: number, index: number): Target {
  const id = `r${round}s${index}`;
  return {
    scenario: s,
    round,
    fn: `${s.name}-r${round}`,
    stream: `OBENCH_${id.toUpperCase()}`,
    subject: `obench.${id}.entries`,
    durable: `obench_${id}`,
    staging: `OBENCH_${id.toUpperCase()}_STAGED`,
    configFile: path.join(PROJECT, `${s.name}-r${round}.yaml`),
  };
}

function functionEntry(t: Target): string[] {
  return [
    `  - name: ${t.fn}`,
    `    handler: fns/${t.scenario.handler}.ts`,
    `    stream: ${t.stream}`,
    `    subjects: ["${t.subject}"]`,
    `    durable: ${t.durable}`,
    `    concurrency: ${CONCURRENCY}`,
    `    isolation: ${ISOLATION}`,
    ...(t.scenario.ordered ? [`    ordering: { key: account, partitions: ${PARTITIONS}, leaseTtl: ${LEASE_TTL} }`] : []),
  ];
}

/**
 * The durables whose state says the backlog is drained, and their streams: with one
 * partition, `<durable>_p0` on the function's stream; with more, the forwarder's `<durable>`
 * there and each partition's `<durable>_p<n>` on `JETFN_ORDERED_<function>`.
 */
function durables(t: Target): { stream: string; durable: string }[] {
  if (!t.scenario.ordered) return [{ stream: t.stream, durable: t.durable }];
  const partitions = Array.from({ length: PARTITIONS }, (_, p) => `${t.durable}_p${p}`);
  if (PARTITIONS === 1) return [{ stream: t.stream, durable: partitions[0]! }];
  return [{ stream: t.stream, durable: t.durable }, ...partitions.map((durable) => ({ stream: orderedStream(t.fn), durable }))];
}

// ---------------------------------------------------------------------------------------
// Helpers

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

async function get(url: string): Promise<{ status: number; body: string } | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
    return { status: response.status, body: await response.text() };
  } catch {
    return undefined; // not listening yet
  }
}

/** `jetfn_invocations_total` of one function by outcome, from a /metrics text. */
function invocations(metrics: string, fn: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of metrics.split("\n")) {
    if (!line.startsWith("jetfn_invocations_total{") || !line.includes(`function="${fn}"`)) continue;
    const outcome = /outcome="([^"]+)"/.exec(line)?.[1];
    if (outcome) counts.set(outcome, (counts.get(outcome) ?? 0) + Number(line.split(" ").pop()));
  }
  return counts;
}

function logTail(file: string): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-30).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Busy CPU time of the whole machine so far (every core; idle and iowait left out), in seconds. */
function machineBusySeconds(): number {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return (user + nice + system + irq + softirq + steal) / CLK_TCK;
}

function processCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function loadavg(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
}

/** `count` events, event n of key `<prefix>-<n % keys>`: keys interleaved, each key's events in order. */
async function publishEvents(js: JetStreamClient, subject: string, count: number, keys: number, prefix: string): Promise<void> {
  const encoder = new TextEncoder();
  for (let start = 0; start < count; start += PUBLISH_BATCH) {
    const acks: Promise<unknown>[] = [];
    for (let n = start; n < Math.min(count, start + PUBLISH_BATCH); n++) {
      acks.push(js.publish(subject, encoder.encode(JSON.stringify({ account: `${prefix}-${n % keys}`, i: Math.floor(n / keys) }))));
    }
    await Promise.all(acks);
  }
}

// ---------------------------------------------------------------------------------------
// Hosts

interface HostProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly base: string;
  readonly logFile: string;
}

function spawnHost(t: Target, server: NatsServer, n: number, port: number): HostProcess {
  const logFile = path.join(LOG_DIR, `${t.fn}-host${n}.log`);
  const logFd = openSync(logFile, "w");
  // The container's way: `node bin/jetfn.js start`, NODE_ENV=production, NATS_URL given.
  const child = spawn(process.execPath, [...NODE_ARGS, JETFN_BIN, "start"], {
    cwd: PROJECT,
    env: {
      PATH: process.env.PATH ?? "",
      NODE_ENV: "production",
      NATS_URL: server.url,
      JETFN_CONFIG: t.configFile,
      JETFN_HTTP_HOST: "127.0.0.1",
      JETFN_HTTP_PORT: String(port),
    },
    stdio: ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  if (child.pid === undefined) throw new Error(`${t.fn}: host ${n} did not spawn`);
  return { child, pid: child.pid, base: `http://127.0.0.1:${port}`, logFile };
}

async function stopHost(host: HostProcess): Promise<void> {
  const { child } = host;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const inTime = await Promise.race([exited.then(() => true), sleep(30_000, false)]);
  if (!inTime) {
    child.kill("SIGKILL");
    await exited;
  }
}

interface FunctionStatus {
  name: string;
  ordering?: { owned: number[] };
}

/** Partitions each host owns, or undefined while one is not ready. */
async function readiness(hosts: HostProcess[], t: Target): Promise<number[] | undefined> {
  const owned: number[] = [];
  for (const host of hosts) {
    if (host.child.exitCode !== null || host.child.signalCode !== null) {
      throw new Error(
        `${t.fn}: a host exited (${host.child.exitCode ?? host.child.signalCode})\nlog ${host.logFile}:\n${logTail(host.logFile)}`,
      );
    }
    if ((await get(`${host.base}/readyz`))?.status !== 200) return undefined;
    if (!t.scenario.ordered) {
      owned.push(0);
      continue;
    }
    const answer = await get(`${host.base}/functions`);
    if (answer?.status !== 200) return undefined;
    const status = (JSON.parse(answer.body) as FunctionStatus[]).find((f) => f.name === t.fn);
    owned.push(status?.ordering?.owned.length ?? 0);
  }
  return owned;
}

async function successes(hosts: HostProcess[], fn: string): Promise<{ perHost: number[]; other: number }> {
  const perHost: number[] = [];
  let other = 0;
  for (const host of hosts) {
    const metrics = await get(`${host.base}/metrics`);
    if (metrics?.status !== 200) throw new Error(`${fn}: no /metrics from ${host.base}`);
    const counts = invocations(metrics.body, fn);
    perHost.push(counts.get("success") ?? 0);
    for (const [outcome, count] of counts) if (outcome !== "success") other += count;
  }
  return { perHost, other };
}

// ---------------------------------------------------------------------------------------
// One run

interface Measurement {
  /** Spawn until every host answered /readyz 200. */
  readonly readySeconds: number;
  /** From then until the partitions were spread (0 for unordered). */
  readonly spreadSeconds: number;
  /** Partitions per host when the clock started. */
  readonly owned: number[];
  readonly seconds: number;
  /** CPU of all host processes over the window. */
  readonly hostCpu: number;
  readonly serverCpu: number;
  /** CPU of everything else on the machine over the window (not this benchmark's processes). */
  readonly otherCpu: number;
  /** Messages nats-server received from clients (pull requests, acks, ...) and sent to them, over the window. */
  readonly msgsIn: number;
  readonly msgsOut: number;
  /** Successful runs of the backlog per host (warm-up left out). */
  readonly perHost: number[];
  /** Runs with another outcome than success. */
  readonly other: number;
}

interface Env {
  readonly server: NatsServer;
  /** nats-server's monitoring endpoint (`-m`), for /varz. */
  readonly monitor: string;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
}

async function varz(env: Env): Promise<{ in_msgs: number; out_msgs: number }> {
  const answer = await get(`${env.monitor}/varz`);
  if (answer?.status !== 200) throw new Error(`no /varz from nats-server at ${env.monitor}`);
  return JSON.parse(answer.body) as { in_msgs: number; out_msgs: number };
}

/**
 * Every durable of the function has read and acked the stream up to `lastSeq`, and (with
 * forwarding) every forwarded copy was acked: its work queue is empty.
 */
async function drained(jsm: JetStreamManager, t: Target, lastSeq: number): Promise<boolean> {
  for (const { stream, durable } of durables(t)) {
    const info = await jsm.consumers.info(stream, durable).catch(() => undefined);
    if (info?.num_pending !== 0 || info.num_ack_pending !== 0) return false;
    // Before the backlog is sourced in there is nothing pending either: the ack floor says all were read.
    if (stream === t.stream && info.ack_floor.stream_seq < lastSeq) return false;
  }
  if (!t.scenario.ordered || PARTITIONS === 1) return true;
  const copies = await jsm.streams.info(orderedStream(t.fn)).catch(() => undefined);
  return copies?.state.messages === 0;
}

/**
 * The backlog goes into a staging stream first, published on the function's subject; the
 * staging stream then moves to another subject (its messages keep theirs), so that the
 * function's own stream can take the subject. That stream starts empty, and sources the
 * staging stream when the clock starts.
 */
async function stageBacklog(env: Env, t: Target): Promise<void> {
  await env.jsm.streams.add({ name: t.staging, subjects: [t.subject], storage: StorageType.Memory, num_replicas: 1 });
  await publishEvents(env.js, t.subject, EVENTS, KEYS, "acct");
  const staging = await env.jsm.streams.info(t.staging);
  if (staging.state.messages !== EVENTS) throw new Error(`${t.fn}: ${staging.state.messages} events staged, not ${EVENTS}`);
  await env.jsm.streams.update(t.staging, { ...staging.config, subjects: [`${t.subject}.staged`] });
  await env.jsm.streams.add({ name: t.stream, subjects: [t.subject], storage: StorageType.Memory, num_replicas: 1 });
}

/** Opens the gate: the function's stream sources the staged backlog (in order; about 0.1 s for 20,000 here). */
async function releaseBacklog(env: Env, t: Target): Promise<void> {
  const info = await env.jsm.streams.info(t.stream);
  await env.jsm.streams.update(t.stream, { ...info.config, sources: [{ name: t.staging }] });
}

async function runScenario(env: Env, t: Target, label: string): Promise<Measurement> {
  const { scenario: s } = t;
  const hosts: HostProcess[] = [];
  try {
    await stageBacklog(env, t);
    const ports = await Promise.all(Array.from({ length: s.hosts }, () => freePort()));
    const spawned = performance.now();
    for (let n = 0; n < s.hosts; n++) hosts.push(spawnHost(t, env.server, n + 1, ports[n]!));

    // 1. Ready, and the partitions spread (over an empty stream).
    let readyAt = 0;
    let owned: number[];
    for (;;) {
      const answer = await readiness(hosts, t);
      if (answer && readyAt === 0) readyAt = performance.now();
      if (answer && (!s.ordered || (answer.reduce((a, b) => a + b, 0) === PARTITIONS && Math.max(...answer) - Math.min(...answer) <= 1))) {
        owned = answer;
        break;
      }
      if (performance.now() - spawned > READY_TIMEOUT_MS) {
        throw new Error(`${label}: not ready and spread after ${READY_TIMEOUT_MS / 1000} s (owned: ${JSON.stringify(answer)})`);
      }
      await sleep(READY_POLL_MS);
    }
    const spreadAt = performance.now();

    // 2. Warm-up, not timed: handler threads started, some JIT. One event per key `warm-<n>`.
    if (WARMUP > 0) {
      await publishEvents(env.js, t.subject, WARMUP, WARMUP, "warm");
      const deadline = performance.now() + DRAIN_TIMEOUT_MS;
      while (!(await drained(env.jsm, t, WARMUP))) {
        if (performance.now() > deadline) throw new Error(`${label}: warm-up not drained after ${DRAIN_TIMEOUT_MS / 1000} s`);
        await sleep(DRAIN_POLL_MS);
      }
    }
    const warm = await successes(hosts, t.fn);
    if (sum(warm.perHost) !== WARMUP) throw new Error(`${label}: ${sum(warm.perHost)} runs before the backlog was released, not ${WARMUP}`);

    // 3. The clock runs from releasing the backlog until every durable has read and acked all of it.
    const hostCpu0 = hosts.map((h) => cpuOf(h.pid));
    const serverCpu0 = cpuOf(env.server.pid);
    const machine0 = machineBusySeconds();
    const self0 = processCpuSeconds();
    const varz0 = await varz(env);
    const t0 = performance.now();
    await releaseBacklog(env, t);
    while (!(await drained(env.jsm, t, WARMUP + EVENTS))) {
      if (performance.now() - t0 > DRAIN_TIMEOUT_MS) throw new Error(`${label}: not drained after ${DRAIN_TIMEOUT_MS / 1000} s`);
      await sleep(DRAIN_POLL_MS);
    }
    const t1 = performance.now();
    const hostCpu = hosts.reduce((sum, h, i) => sum + cpuOf(h.pid) - hostCpu0[i]!, 0);
    const serverCpu = cpuOf(env.server.pid) - serverCpu0;
    const varz1 = await varz(env);
    const otherCpu = machineBusySeconds() - machine0 - hostCpu - serverCpu - (processCpuSeconds() - self0);

    // 4. Every event ran (loosely: the hosts counted at least N successes).
    const end = await successes(hosts, t.fn);
    const perHost = end.perHost.map((n, i) => n - warm.perHost[i]!);
    if (sum(perHost) < EVENTS) throw new Error(`${label}: drained, but the hosts counted ${sum(perHost)} successful runs of ${EVENTS}`);
    return {
      readySeconds: (readyAt - spawned) / 1000,
      spreadSeconds: (spreadAt - readyAt) / 1000,
      owned,
      seconds: (t1 - t0) / 1000,
      hostCpu,
      serverCpu,
      otherCpu,
      msgsIn: varz1.in_msgs - varz0.in_msgs,
      msgsOut: varz1.out_msgs - varz0.out_msgs,
      perHost,
      other: end.other,
    };
  } finally {
    await Promise.all(hosts.map(stopHost));
    await env.jsm.streams.delete(t.stream).catch(() => {});
    await env.jsm.streams.delete(t.staging).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------
// Report

const rate = (m: Measurement): number => EVENTS / m.seconds;
const hostCpuPerEvent = (m: Measurement): number => (m.hostCpu / EVENTS) * 1e6;
const serverCpuPerEvent = (m: Measurement): number => (m.serverCpu / EVENTS) * 1e6;
/** Cores busy with other work than this benchmark's during the window. */
const otherCores = (m: Measurement): number => Math.max(0, m.otherCpu) / m.seconds;

function table(results: Map<string, Measurement[]>): string {
  const rows = [
    "| scenario | handler | ordering | hosts | events | seconds | events/s | vs unordered, 1 host | host CPU µs/event | nats-server CPU µs/event | server msgs in / out per event | other load (cores) | notes |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const s of SCENARIOS) {
    const runs = results.get(s.name) ?? [];
    if (runs.length === 0) continue;
    // Each round's ratio against the same round's unordered 1-host row of the same handler.
    const reference = results.get(scenario(s.handler, false, 1).name) ?? [];
    const ratios = runs.flatMap((m, i) => (reference[i] ? [rate(m) / rate(reference[i]!)] : []));
    const notes: string[] = [];
    if (s.handler === "sleep5") {
      const ideal = (CONCURRENCY * s.hosts * 1000) / SLEEP_MS;
      notes.push(
        `${fmt((median(runs.map(rate)) / ideal) * 100, 0)}% of ${fmt(ideal, 0)}/s (${CONCURRENCY} slots × ${s.hosts} / ${SLEEP_MS} ms)`,
      );
    }
    if (s.ordered) {
      notes.push(`partitions per host ${runs[runs.length - 1]!.owned.join("/")}`);
      notes.push(`ready → spread ${fmt(median(runs.map((m) => m.spreadSeconds)), 1)} s`);
    }
    if (s.hosts > 1) notes.push(`runs per host ${runs[runs.length - 1]!.perHost.map((n) => fmt(n, 0)).join("/")}`);
    const extra = runs.map((m) => m.perHost.reduce((a, b) => a + b, 0) - EVENTS);
    if (extra.some((n) => n > 0)) notes.push(`successful runs beyond ${fmt(EVENTS, 0)}: ${extra.map((n) => fmt(n, 0)).join(", ")}`);
    const other = runs.reduce((sum, m) => sum + m.other, 0);
    if (other > 0) notes.push(`${fmt(other, 0)} runs not successful`);
    if (runs.length > 1) {
      const rates = runs.map(rate);
      notes.push(`events/s range ${fmt(Math.min(...rates), 0)}–${fmt(Math.max(...rates), 0)}`);
    }
    rows.push(
      `| ${s.name} | ${s.handler === "noop" ? "no-op" : `${SLEEP_MS} ms`} | ${s.ordered ? `${PARTITIONS} partitions` : "–"} | ${s.hosts} | ` +
        `${fmt(EVENTS, 0)} | ${fmt(median(runs.map((m) => m.seconds)), 2)} | ${fmt(median(runs.map(rate)), 0)} | ` +
        `${ratios.length > 0 ? fmt(median(ratios), 2) : "–"} | ${fmt(median(runs.map(hostCpuPerEvent)), 0)} | ` +
        `${fmt(median(runs.map(serverCpuPerEvent)), 0)} | ` +
        `${fmt(median(runs.map((m) => m.msgsIn / EVENTS)), 1)} / ${fmt(median(runs.map((m) => m.msgsOut / EVENTS)), 1)} | ${fmt(median(runs.map(otherCores)), 2)} | ${notes.join("; ")} |`,
    );
  }
  return rows.join("\n");
}

// ---------------------------------------------------------------------------------------
// Main

function writeProject(targets: Target[]): void {
  rmSync(PROJECT, { recursive: true, force: true });
  mkdirSync(path.join(PROJECT, "fns"), { recursive: true });
  mkdirSync(LOG_DIR, { recursive: true });
  for (const [name, source] of Object.entries(HANDLERS)) writeFileSync(path.join(PROJECT, "fns", `${name}.ts`), source);
  for (const t of targets) writeFileSync(t.configFile, ["functions:", ...functionEntry(t), ""].join("\n"));
  // Every function in one file, for the bundling below.
  writeFileSync(path.join(PROJECT, "all.yaml"), ["functions:", ...targets.flatMap(functionEntry), ""].join("\n"));
}

/**
 * `jetfn build` of every function up front: the hosts then reuse the bundles (a host
 * started from scratch would bundle, and three at once would write the same files), and a
 * stale runtime bundle is rebuilt before any host starts.
 */
function buildBundles(): void {
  const result = spawnSync(process.execPath, [JETFN_BIN, "build"], {
    cwd: PROJECT,
    env: { PATH: process.env.PATH ?? "", JETFN_CONFIG: path.join(PROJECT, "all.yaml") },
    encoding: "utf8",
  });
  if (result.status !== 0) throw new Error(`node bin/jetfn.js build exited with ${result.status}:\n${result.stdout}${result.stderr}`);
}

async function main(): Promise<void> {
  const began = Date.now();
  const loadBefore = loadavg();
  const targets: Target[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    SCENARIOS.forEach((s, i) => {
      targets.push(targetOf(s, round, i));
    });
  }
  writeProject(targets);
  buildBundles();
  const monitorPort = await freePort();
  const server = await startNatsServer({ args: ["-m", String(monitorPort)] });
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: server.url });
    const env: Env = { server, monitor: `http://127.0.0.1:${monitorPort}`, js: jetstream(nc), jsm: await jetstreamManager(nc) };
    const results = new Map<string, Measurement[]>();
    for (const t of targets) {
      const label = `round ${t.round}/${ROUNDS} ${t.scenario.name}`;
      const m = await runScenario(env, t, label);
      const list = results.get(t.scenario.name) ?? [];
      list.push(m);
      results.set(t.scenario.name, list);
      process.stderr.write(
        `${label}: ${fmt(EVENTS, 0)} events in ${m.seconds.toFixed(2)} s, ${fmt(rate(m), 0)} events/s, ` +
          `host CPU ${hostCpuPerEvent(m).toFixed(0)} µs/event, nats-server ${serverCpuPerEvent(m).toFixed(0)} µs/event, other load ${otherCores(m).toFixed(2)} cores, ` +
          `server msgs in/out per event ${(m.msgsIn / EVENTS).toFixed(1)}/${(m.msgsOut / EVENTS).toFixed(1)} ` +
          `(ready ${m.readySeconds.toFixed(1)} s, spread +${m.spreadSeconds.toFixed(1)} s, ` +
          `runs per host ${m.perHost.join("/")}, load ${loadavg()})\n`,
      );
    }

    console.log(`## jetfn ordered functions: ${fmt(KEYS, 0)} keys\n`);
    for (const line of machineLines(nc.info?.version)) console.log(line);
    console.log(
      `- a backlog of ${fmt(EVENTS, 0)} events over ${fmt(KEYS, 0)} keys (${fmt(EVENTS / KEYS, 1)} per key, interleaved), memory stream; ` +
        `\`node bin/jetfn.js start\` processes (NODE_ENV=production); concurrency ${CONCURRENCY} per host, isolation ${ISOLATION}; ` +
        `ordered: partitions ${PARTITIONS}, leaseTtl ${LEASE_TTL}; warm-up ${fmt(WARMUP, 0)} events per run; ${ROUNDS} round(s)${ROUNDS > 1 ? " (medians)" : ""}, total ${((Date.now() - began) / 1000).toFixed(0)} s`,
    );
    console.log(`- load average (1/5/15 min) before: ${loadBefore}; after: ${loadavg()}`);
    console.log("");
    console.log(table(results));
  } finally {
    await nc?.close().catch(() => {});
    await server.stop();
  }
}

await runBenchmark(main);

/**
 * The first events after ready: how fast a freshly started worker process runs its first
 * events, next to how fast it runs them a few seconds later. jetfn runs as users run it
 * (`node bin/jetfn.js start`, its own process, NODE_ENV=production), next to bench/process.ts's
 * hand-written nats.js worker (bench/workers/handwritten.ts, echo mode, its own process),
 * against one private nats-server. Prints a markdown table on stdout, progress on stderr.
 *
 *   node --import tsx bench/first-events.ts          (npm run bench:first)
 *
 * Per run (one implementation): fresh input and output streams; the worker process starts;
 * the benchmark polls its readiness every BENCH_FIRST_POLL_MS (jetfn: `GET /readyz`; the
 * hand-written worker: its `ready` line, printed once `consume()` runs on its durable) and
 * the moment it is ready starts publishing at BENCH_FIRST_RATE events/s (core publish into
 * the stream, each event stamped with `performance.now()` just before it goes). Both
 * handlers echo the event: jetfn's `echo.ts` returns it and jetfn publishes it to `output:`
 * with `Nats-Msg-Id`, awaiting the PubAck, then acks. A subscription here reads the stamp
 * back from each output: latency = output seen − published, one clock. Two windows of the
 * same run are reported: the first BENCH_FIRST_SECONDS after ready, and, after
 * BENCH_FIRST_GAP_SECONDS more, BENCH_FIRST_STEADY_SECONDS at steady state.
 *
 * Settings (environment):
 *   BENCH_FIRST_ROUNDS          rounds; each runs every implementation once (default 3); medians
 *   BENCH_FIRST_RATE            events/s (default 1000)
 *   BENCH_FIRST_SECONDS         the first window, s (default 2)
 *   BENCH_FIRST_GAP_SECONDS     published between the windows, not counted (default 3)
 *   BENCH_FIRST_STEADY_SECONDS  the steady window, s (default 2)
 *   BENCH_FIRST_POLL_MS         readiness poll interval, ms (default 2)
 *   BENCH_FIRST_ISOLATION       jetfn's isolation modes (default none,worker)
 *   BENCH_FIRST_CONCURRENCY     jetfn's `concurrency:` and the hand-written worker's bound (default 64)
 *   BENCH_FIRST_COMPARE         another checkout of jetfn (a folder with bin/jetfn.js and
 *                               node_modules): its rows run beside this checkout's, e.g. the
 *                               code before a change, in the same run
 *   BENCH_FIRST_JETFN_NODE_ARGS Node options for every jetfn process, e.g.
 *                               "--cpu-prof --cpu-prof-dir=/tmp/prof" (one profile per thread)
 *   BENCH_FIRST_COMPARE_NODE_ARGS  Node options for the compare rows instead (with no
 *                               BENCH_FIRST_COMPARE, they run this checkout): two settings in one run
 */
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent, get } from "node:http";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { AckPolicy, DeliverPolicy, type JetStreamManager, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect, type NatsConnection, nanos } from "@nats-io/transport-node";
import { type SpawnedChild, spawnChild } from "../runtime/child-process.ts";
import { freePort } from "../test/support/free-port.ts";
import { startNatsServer } from "../test/support/nats-server.ts";
import { bundleWorkers, CLK_TCK, cpuOf, fmt, intEnv, listOf, machineLines, median, recordLatencies, runBenchmark } from "./env.ts";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const ROUNDS = intEnv("BENCH_FIRST_ROUNDS", 3);
const RATE = intEnv("BENCH_FIRST_RATE", 1000);
const FIRST_SECONDS = intEnv("BENCH_FIRST_SECONDS", 2);
const GAP_SECONDS = intEnv("BENCH_FIRST_GAP_SECONDS", 3, 0);
const STEADY_SECONDS = intEnv("BENCH_FIRST_STEADY_SECONDS", 2);
const POLL_MS = intEnv("BENCH_FIRST_POLL_MS", 2);
const CONCURRENCY = intEnv("BENCH_FIRST_CONCURRENCY", 64);
const ISOLATIONS = listOf("BENCH_FIRST_ISOLATION").length ? listOf("BENCH_FIRST_ISOLATION") : ["none", "worker"];
for (const isolation of ISOLATIONS) {
  if (isolation !== "none" && isolation !== "worker") {
    console.error(`BENCH_FIRST_ISOLATION: unknown value ${JSON.stringify(isolation)}; known: none, worker`);
    process.exit(2);
  }
}
const COMPARE = process.env.BENCH_FIRST_COMPARE ? path.resolve(process.env.BENCH_FIRST_COMPARE) : undefined;
const NODE_ARGS = process.env.BENCH_FIRST_JETFN_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
const COMPARE_NODE_ARGS = process.env.BENCH_FIRST_COMPARE_NODE_ARGS?.split(/\s+/).filter(Boolean);
const READY_TIMEOUT_MS = 120_000;
/** After the last publish, how long the outputs may take. */
const DRAIN_TIMEOUT_MS = 60_000;
/** Width of the first window's timeline buckets (stderr), ms. */
const BUCKET_MS = 100;

/** Where a jetfn checkout keeps the generated project (git-ignored `.jetfn/`, so `jetfn` and zod resolve). */
const projectOf = (checkout: string): string => path.join(checkout, ".jetfn", "bench-first");
const PROJECT = projectOf(REPO_ROOT);
const LOG_DIR = path.join(PROJECT, "logs");

type Impl =
  | { readonly kind: "hand" }
  | { readonly kind: "jetfn"; readonly isolation: string; readonly checkout: string; readonly nodeArgs: readonly string[] };

function implLabel(impl: Impl): string {
  if (impl.kind === "hand") return "hand-written echo";
  const where = [
    ...(impl.checkout === REPO_ROOT ? [] : [describeCheckout(impl.checkout)]),
    ...(impl.nodeArgs === NODE_ARGS || impl.nodeArgs.length === 0 ? [] : [impl.nodeArgs.join(" ")]),
  ];
  return `jetfn, isolation: ${impl.isolation}${where.length ? ` (${where.join(", ")})` : ""}`;
}

const described = new Map<string, string>();

function describeCheckout(checkout: string): string {
  const known = described.get(checkout);
  if (known) return known;
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: checkout, encoding: "utf8" }).stdout?.trim() || "unknown";
  const dirty = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: checkout, encoding: "utf8" }).stdout?.trim();
  const description = `commit ${head}${dirty ? " with uncommitted changes" : ""}`;
  described.set(checkout, description);
  return description;
}

function implementations(): Impl[] {
  const impls: Impl[] = [{ kind: "hand" }];
  for (const isolation of ISOLATIONS) {
    if (COMPARE || COMPARE_NODE_ARGS) {
      impls.push({ kind: "jetfn", isolation, checkout: COMPARE ?? REPO_ROOT, nodeArgs: COMPARE_NODE_ARGS ?? NODE_ARGS });
    }
    impls.push({ kind: "jetfn", isolation, checkout: REPO_ROOT, nodeArgs: NODE_ARGS });
  }
  return impls;
}

interface Window {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** Outputs never seen. */
  readonly missing: number;
}

interface RunResult {
  readonly impl: Impl;
  readonly round: number;
  /** Process spawned → ready, ms. */
  readonly readyMs: number;
  /** Ready → first output seen, ms. */
  readonly firstOutputMs: number;
  readonly first: Window;
  readonly steady: Window;
  /** The first window's worst latency per BUCKET_MS of publishing. */
  readonly timeline: number[];
  /** CPU of the worker process (all threads) per event while each window's events were published, µs. */
  readonly cpuFirstUs: number;
  readonly cpuSteadyUs: number;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function windowOf(latencies: Float64Array, from: number, to: number): Window {
  const seen = Array.from(latencies.subarray(from, to)).filter((v) => !Number.isNaN(v));
  const sorted = Float64Array.from(seen).sort();
  return {
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
    missing: to - from - sorted.length,
  };
}

/** Polls `GET <url>` until it answers 200; resolves with the time it did. */
async function pollReady(url: string, child: SpawnedChild): Promise<number> {
  // One kept-alive connection: each poll is a request, not a TCP handshake.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const status = (): Promise<number> =>
    new Promise((resolve) => {
      const request = get(url, { agent, timeout: 2000 }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on("error", () => resolve(0));
      request.on("timeout", () => request.destroy());
    });
  const deadline = performance.now() + READY_TIMEOUT_MS;
  try {
    for (;;) {
      if (!child.running) throw new Error(`jetfn exited before it was ready (see ${LOG_DIR})`);
      if ((await status()) === 200) return performance.now();
      if (performance.now() > deadline) throw new Error(`jetfn not ready after ${READY_TIMEOUT_MS / 1000} s`);
      await sleep(POLL_MS);
    }
  } finally {
    agent.destroy();
  }
}

/** CPU seconds of each thread of a process (by thread id; `main` is the process's first), from /proc/<pid>/task. */
function threadsCpu(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const name = tid === String(pid) ? "main" : tid;
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      byName.set(name, (byName.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / CLK_TCK);
    } catch {
      // the thread ended meanwhile
    }
  }
  return byName;
}

function threadsBetween(a: Map<string, number>, b: Map<string, number>): string {
  return [...b]
    .map(([name, cpu]) => [name, cpu - (a.get(name) ?? 0)] as const)
    .filter(([, cpu]) => cpu > 0)
    .sort((x, y) => y[1] - x[1])
    .map(([name, cpu]) => `${name}: ${fmt(cpu * 1000, 0)}`)
    .join(", ");
}

let runCounter = 0;

async function runOnce(nc: NatsConnection, jsm: JetStreamManager, serverUrl: string, impl: Impl, round: number): Promise<RunResult> {
  const id = ++runCounter;
  const stream = `FIRST_${id}`;
  const subject = `first.${id}.in`;
  const outStream = `FIRST_OUT_${id}`;
  const outSubject = `first.${id}.out`;
  const durable = `first_${id}`;
  const label = `round ${round}/${ROUNDS} ${implLabel(impl)}`;
  const logName = `${id}-${impl.kind === "hand" ? "hand" : `jetfn-${impl.isolation}`}.log`;
  const firstCount = RATE * FIRST_SECONDS;
  const steadyFrom = RATE * (FIRST_SECONDS + GAP_SECONDS);
  const total = steadyFrom + RATE * STEADY_SECONDS;
  for (const [name, subj] of [
    [stream, subject],
    [outStream, outSubject],
  ] as const) {
    await jsm.streams.add({ name, subjects: [subj], storage: StorageType.Memory, num_replicas: 1 });
  }
  const recorded = recordLatencies(nc, outSubject, total);
  const { values: latencies, sub } = recorded;
  let child: SpawnedChild | undefined;
  try {
    await nc.flush();
    const spawnedAt = performance.now();
    let readyAt: number;
    if (impl.kind === "hand") {
      await jsm.consumers.add(stream, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: nanos(35_000),
        max_ack_pending: Math.max(1000, CONCURRENCY),
        max_deliver: -1,
        filter_subject: subject,
      });
      const worker = spawnChild(process.execPath, [path.join(PROJECT, "bin", "handwritten.mjs")], {
        cwd: PROJECT,
        env: {
          PATH: process.env.PATH ?? "",
          NODE_ENV: "production",
          NATS_URL: serverUrl,
          BENCH_MODE: "echo",
          BENCH_STREAM: stream,
          BENCH_DURABLE: durable,
          BENCH_OUTPUT: outSubject,
          BENCH_INFLIGHT: String(CONCURRENCY),
        },
        stdio: ["ignore", "pipe", "inherit"],
      });
      child = worker;
      readyAt = await new Promise<number>((resolve, reject) => {
        let out = "";
        worker.process.stdout!.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes("ready\n")) resolve(performance.now());
        });
        void worker.exited.then(() => reject(new Error("the hand-written worker exited before it was ready")));
      });
    } else {
      const project = projectOf(impl.checkout);
      writeFileSync(
        path.join(project, "functions.yaml"),
        [
          "functions:",
          `  - name: first-${id}`,
          "    handler: fns/echo.ts",
          `    stream: ${stream}`,
          `    subjects: ["${subject}"]`,
          `    durable: ${durable}`,
          `    concurrency: ${CONCURRENCY}`,
          `    isolation: ${impl.isolation}`,
          `    output: ${outSubject}`,
          "",
        ].join("\n"),
      );
      const port = await freePort();
      child = spawnChild(process.execPath, [...impl.nodeArgs, path.join(impl.checkout, "bin", "jetfn.js"), "start"], {
        cwd: project,
        env: {
          PATH: process.env.PATH ?? "",
          NODE_ENV: "production",
          NATS_URL: serverUrl,
          JETFN_HTTP_HOST: "127.0.0.1",
          JETFN_HTTP_PORT: String(port),
          JETFN_SHUTDOWN_TIMEOUT: "5s",
        },
        logFile: path.join(LOG_DIR, logName),
      });
      readyAt = await pollReady(`http://127.0.0.1:${port}/readyz`, child);
    }

    // Publish at RATE from the moment it is ready: each 1 ms tick sends the events due by then.
    const make = (k: number, t: number): Uint8Array => new TextEncoder().encode(`{"t":${t},"k":${k},"pad":"${PAD}"}`);
    const bucketsOf: number[] = [];
    const pid = child.pid!;
    // CPU read as each window's publishing starts and ends (clock ticks: 10 ms).
    const cpuAt: number[] = [cpuOf(pid)];
    const threadsAt: Map<string, number>[] = [threadsCpu(pid)];
    const t0 = performance.now();
    let k = 0;
    while (k < total) {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * RATE) + 1);
      while (k < due) {
        // The first window's end, then the steady window's start (the same reading with no gap).
        for (const edge of [firstCount, steadyFrom]) {
          if (k !== edge) continue;
          cpuAt.push(cpuOf(pid));
          threadsAt.push(threadsCpu(pid));
        }
        const at = performance.now();
        if (k < firstCount) bucketsOf[k] = Math.floor((at - t0) / BUCKET_MS);
        nc.publish(subject, make(k, at));
        k++;
      }
      if (!child.running) throw new Error(`${label}: the worker exited (see ${LOG_DIR})`);
      await sleep(1);
    }
    cpuAt.push(cpuOf(pid));
    threadsAt.push(threadsCpu(pid));
    const deadline = performance.now() + DRAIN_TIMEOUT_MS;
    while (recorded.seen < total && performance.now() < deadline) await sleep(10);

    const timeline: number[] = [];
    for (let i = 0; i < firstCount; i++) {
      const bucket = bucketsOf[i]!;
      const latency = latencies[i]!;
      if (!Number.isNaN(latency)) timeline[bucket] = Math.max(timeline[bucket] ?? 0, latency);
    }
    const result: RunResult = {
      impl,
      round,
      readyMs: readyAt - spawnedAt,
      firstOutputMs: recorded.firstSeenAt ? recorded.firstSeenAt - t0 : Number.NaN,
      first: windowOf(latencies, 0, firstCount),
      steady: windowOf(latencies, steadyFrom, total),
      timeline: Array.from(timeline, (v) => v ?? 0),
      cpuFirstUs: ((cpuAt[1]! - cpuAt[0]!) * 1e6) / firstCount,
      cpuSteadyUs: ((cpuAt[3]! - cpuAt[2]!) * 1e6) / (total - steadyFrom),
    };
    process.stderr.write(
      `${label}: ready in ${fmt(result.readyMs, 0)} ms, first output ${fmt(result.firstOutputMs, 1)} ms after; ` +
        `first ${FIRST_SECONDS} s p50 ${fmt(result.first.p50, 2)} p99 ${fmt(result.first.p99, 2)} max ${fmt(result.first.max, 2)} ms; ` +
        `steady p50 ${fmt(result.steady.p50, 2)} p99 ${fmt(result.steady.p99, 2)} max ${fmt(result.steady.max, 2)} ms; ` +
        `CPU µs/event first ${fmt(result.cpuFirstUs, 0)}, steady ${fmt(result.cpuSteadyUs, 0)}` +
        `${result.first.missing + result.steady.missing ? `; ${result.first.missing + result.steady.missing} outputs missing` : ""}\n` +
        `  worst per ${BUCKET_MS} ms of the first window: ${result.timeline.map((v) => fmt(v, 1)).join(" ")}\n` +
        `  CPU ms by thread, first window: ${threadsBetween(threadsAt[0]!, threadsAt[1]!)}; steady: ${threadsBetween(threadsAt[2]!, threadsAt[3]!)}\n`,
    );
    return result;
  } finally {
    sub.unsubscribe();
    await child?.stop(20_000);
    for (const name of [stream, outStream]) await jsm.streams.delete(name).catch(() => {});
  }
}

/** About 1 KB events, as bench/process.ts sends: `{"t":…,"k":…,"pad":"xx…"}`. */
const PAD = "x".repeat(1024 - 48);

/** The project (in each checkout compared), the hand-written worker bundled, each runtime bundle current. */
async function prepare(): Promise<void> {
  for (const checkout of COMPARE ? [REPO_ROOT, COMPARE] : [REPO_ROOT]) {
    const project = projectOf(checkout);
    rmSync(project, { recursive: true, force: true });
    mkdirSync(path.join(project, "logs"), { recursive: true });
    cpSync(path.join(REPO_ROOT, "bench", "fixtures", "process", "echo.ts"), path.join(project, "fns", "echo.ts"));
    // Bundles that checkout's runtime if it changed, so no measured start does it.
    const help = spawnSync(process.execPath, [path.join(checkout, "bin", "jetfn.js"), "help"], { cwd: project, stdio: "ignore" });
    if (help.status !== 0) throw new Error(`node ${checkout}/bin/jetfn.js help exited with ${help.status}`);
  }
  await bundleWorkers({ handwritten: path.join(REPO_ROOT, "bench", "workers", "handwritten.ts") }, path.join(PROJECT, "bin"));
}

function table(results: RunResult[]): string {
  const rows = [
    `| implementation | ready (ms) | ready → 1st output (ms) | first ${FIRST_SECONDS} s p50 | p99 | max | p99 added vs hand-written | steady p50 | p99 | max | first p99 ÷ steady p99 | CPU µs/event, first | steady |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const impl of implementations()) {
    const runs = results.filter((r) => implLabel(r.impl) === implLabel(impl));
    if (runs.length === 0) continue;
    const m = (pick: (r: RunResult) => number): number => median(runs.map(pick));
    const added = runs.flatMap((r) => {
      const hand = results.find((h) => h.impl.kind === "hand" && h.round === r.round);
      return hand ? [r.first.p99 - hand.first.p99] : [];
    });
    const ms = (v: number): string => fmt(v, 2);
    const missing = runs.reduce((sum, r) => sum + r.first.missing + r.steady.missing, 0);
    rows.push(
      `| ${implLabel(impl)} | ${fmt(
        m((r) => r.readyMs),
        0,
      )} | ${fmt(
        m((r) => r.firstOutputMs),
        1,
      )} | ${ms(m((r) => r.first.p50))} | ${ms(m((r) => r.first.p99))} | ${ms(Math.max(...runs.map((r) => r.first.max)))} | ${
        impl.kind === "hand" ? "–" : `${median(added) >= 0 ? "+" : ""}${ms(median(added))}`
      } | ${ms(m((r) => r.steady.p50))} | ${ms(m((r) => r.steady.p99))} | ${ms(Math.max(...runs.map((r) => r.steady.max)))}${
        missing ? ` (${fmt(missing, 0)} outputs never seen)` : ""
      } | ${fmt(
        m((r) => r.first.p99 / r.steady.p99),
        1,
      )} | ${fmt(
        m((r) => r.cpuFirstUs),
        0,
      )} | ${fmt(
        m((r) => r.cpuSteadyUs),
        0,
      )} |`,
    );
  }
  return rows.join("\n");
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg();
  await prepare();
  const server = await startNatsServer();
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    const results: RunResult[] = [];
    const impls = implementations();
    for (let round = 1; round <= ROUNDS; round++) {
      // The hand-written worker first, then jetfn's rows, each round in a rotated order.
      const jetfn = impls.slice(1);
      const rotated = [...jetfn.slice((round - 1) % jetfn.length), ...jetfn.slice(0, (round - 1) % jetfn.length)];
      for (const impl of [impls[0]!, ...rotated]) results.push(await runOnce(nc, jsm, server.url, impl, round));
    }
    const load = (l: number[]): string => l.map((v) => v.toFixed(2)).join(" / ");
    console.log("## The first events after ready (bench/first-events.ts)\n");
    for (const line of machineLines(nc.info?.version)) console.log(line);
    console.log(`- ${describeCheckout(REPO_ROOT)}; load average (1/5/15 min) ${load(loadBefore)} before, ${load(os.loadavg())} after`);
    console.log(
      `- ${ROUNDS} round(s), medians (max: the worst of any round); ${fmt(RATE, 0)} events/s of 1 KB, echo with output; ` +
        `first window: the ${FIRST_SECONDS} s from ready; steady: ${STEADY_SECONDS} s after ${GAP_SECONDS} s more; concurrency ${CONCURRENCY}; ` +
        `readiness polled every ${POLL_MS} ms; latency = output seen − published, ms\n`,
    );
    console.log(table(results));
  } finally {
    await nc?.close().catch(() => {});
    await server.stop();
  }
}

await runBenchmark(main);

/**
 * Throughput benchmark: jetfn's per-message overhead next to hand-written nats.js loops,
 * all in one run against one private nats-server, so the ratios share the same (noisy)
 * machine conditions. Prints a markdown table.
 *
 *   npm run bench
 *   BENCH_MESSAGES=50000 BENCH_ROUNDS=3 npm run bench
 *
 * Environment:
 *   BENCH_MESSAGES  messages per scenario (default 20000)
 *   BENCH_ROUNDS    how many times the whole scenario list runs; the table shows the median
 *                   (default 3)
 *   BENCH_STORAGE   memory | file, the benchmark streams' storage (default memory)
 *   BENCH_ONLY      comma list of scenario names to run (baseline always runs)
 *   BENCH_TRACING   1: hosts export every span over OTLP/HTTP to a discarding receiver in
 *                   another process (the exporting work stays in this process and is
 *                   measured); compare with a run without it
 *   BENCH_CPU_PROF  a folder: write a V8 CPU profile of each measured scenario there
 *                   (<round>-<scenario>.cpuprofile; consumption only, publishing excluded;
 *                   profiling slows everything down, so do not quote those numbers)
 *
 * Method, per scenario: a fresh stream and durable consumer; N messages `{"id":k}` are
 * published beforehand (parallel batches of 500, each awaiting its PubAcks; not timed). The
 * clock starts when the first message reaches a handler, and stops when the handlers have
 * seen all N and the server reports the consumer with num_pending 0 and num_ack_pending 0
 * (polled every 5 ms once the local count is reached). Start-up (connecting, bundling,
 * provisioning) is not timed. CPU is the benchmark process's user+system time over the same
 * window (the server is a separate process and not included).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { build } from "esbuild";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { connect, nanos, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import type * as HostModule from "../runtime/host.ts";
import type * as EnvModule from "../runtime/config/env.ts";
import { startNatsServer, type NatsServer } from "../test/support/nats-server.ts";
import { makeProject } from "../test/support/project.ts";

// ---------------------------------------------------------------------------------------
// Settings

function intEnv(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    console.error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}

/**
 * The runtime as production runs it: bundled by esbuild (as bin/jetfn.js does), not compiled
 * file by file by tsx, whose keepNames adds work to every closure on the hot path.
 */
const runtimeBundle = path.resolve(".jetfn", "bench", "runtime.mjs");
await build({
  stdin: {
    contents: 'export { Host } from "./runtime/host.ts"; export { loadEnv } from "./runtime/config/env.ts";',
    resolveDir: process.cwd(),
    loader: "ts",
  },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  outfile: runtimeBundle,
  logLevel: "error",
});
const { Host } = (await import(runtimeBundle)) as typeof HostModule;
const { loadEnv } = (await import(runtimeBundle)) as typeof EnvModule;

const MESSAGES = intEnv("BENCH_MESSAGES", 20_000);
const ROUNDS = intEnv("BENCH_ROUNDS", 3);
const STORAGE = (process.env.BENCH_STORAGE ?? "memory").toLowerCase();
if (STORAGE !== "memory" && STORAGE !== "file") {
  console.error(`BENCH_STORAGE must be memory or file, got ${JSON.stringify(process.env.BENCH_STORAGE)}`);
  process.exit(2);
}
const ONLY = (process.env.BENCH_ONLY ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);
const TRACING = process.env.BENCH_TRACING === "1";
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : undefined;
const PUBLISH_BATCH = 500;
const WARMUP_MESSAGES = Math.min(2_000, MESSAGES);
/** A scenario that has not finished by then is a failure, not a result. */
const SCENARIO_TIMEOUT_MS = 120_000;
const SLEEP_MS = 5;

// ---------------------------------------------------------------------------------------
// The counter every handler (baseline or jetfn bundle) reports to, through globalThis:
// jetfn handlers are separate esbuild bundles loaded into this same process.

interface BenchCounter {
  target: number;
  count: number;
  /** performance.now() when the first message reached a handler; 0 before. */
  t0: number;
  cpu0: NodeJS.CpuUsage;
  /** Sum of the time the I/O-bound handlers actually slept (timers run late), in ms. */
  sleptMs: number;
  done: () => void;
}

declare global {
  // eslint-disable-next-line no-var
  var __jetfnBench: BenchCounter;
}

function newCounter(target: number): { counter: BenchCounter; reached: Promise<void> } {
  let done!: () => void;
  const reached = new Promise<void>((resolve) => (done = resolve));
  const counter: BenchCounter = { target, count: 0, t0: 0, cpu0: { user: 0, system: 0 }, sleptMs: 0, done };
  globalThis.__jetfnBench = counter;
  return { counter, reached };
}

/** Inlined at the top of every handler. */
function begin(b: BenchCounter): void {
  if (b.t0 === 0) {
    b.t0 = performance.now();
    b.cpu0 = process.cpuUsage();
  }
}

/** Inlined at the end of every handler. */
function end(b: BenchCounter): void {
  if (++b.count === b.target) b.done();
}

// ---------------------------------------------------------------------------------------
// jetfn handler files (written into a throwaway project under .jetfn/)

const HANDLER_PRELUDE = `
const begin = (b) => { if (b.t0 === 0) { b.t0 = performance.now(); b.cpu0 = process.cpuUsage(); } };
const end = (b) => { if (++b.count === b.target) b.done(); };
`;

const HANDLER_FILES: Record<string, string> = {
  "fns/noop.ts": `import { defineFunction } from "jetfn";
${HANDLER_PRELUDE}
export default defineFunction({
  async handler(_event: unknown) {
    const b = (globalThis as any).__jetfnBench;
    begin(b);
    end(b);
  },
});
`,
  "fns/zod.ts": `import { defineFunction } from "jetfn";
import { z } from "zod";
${HANDLER_PRELUDE}
export default defineFunction({
  schema: z.object({ id: z.number() }),
  async handler(event) {
    const b = (globalThis as any).__jetfnBench;
    begin(b);
    if (typeof event.id !== "number") throw new Error("unreachable");
    end(b);
  },
});
`,
  "fns/sleep.ts": `import { defineFunction } from "jetfn";
import { setTimeout as sleep } from "node:timers/promises";
${HANDLER_PRELUDE}
export default defineFunction({
  async handler(_event: unknown) {
    const b = (globalThis as any).__jetfnBench;
    begin(b);
    const started = performance.now();
    await sleep(${SLEEP_MS});
    b.sleptMs += performance.now() - started;
    end(b);
  },
});
`,
};

// ---------------------------------------------------------------------------------------
// Scenarios

type Scenario =
  | { readonly name: string; readonly kind: "consume"; readonly concurrency: number; readonly what: string }
  | { readonly name: string; readonly kind: "fetch"; readonly concurrency: number; readonly what: string }
  | {
      readonly name: string;
      readonly kind: "jetfn";
      readonly concurrency: number;
      readonly handler: "noop" | "zod" | "sleep";
      readonly what: string;
    };

const ALL_SCENARIOS: Scenario[] = [
  { name: "baseline", kind: "consume", concurrency: 64, what: "nats.js consume({max_messages: 64}), JSON.parse + ack" },
  { name: "baseline-fetch", kind: "fetch", concurrency: 16, what: "nats.js slot-gated fetch loop (16 slots), JSON.parse + ack" },
  { name: "jetfn-noop-c16", kind: "jetfn", concurrency: 16, handler: "noop", what: "jetfn, no-op defineFunction handler" },
  { name: "jetfn-noop-c64", kind: "jetfn", concurrency: 64, handler: "noop", what: "jetfn, no-op handler" },
  { name: "jetfn-zod-c16", kind: "jetfn", concurrency: 16, handler: "zod", what: "jetfn, z.object({id: z.number()}) schema" },
  { name: "jetfn-io5ms-c16", kind: "jetfn", concurrency: 16, handler: "sleep", what: `jetfn, handler awaits ${SLEEP_MS} ms` },
  { name: "jetfn-io5ms-c64", kind: "jetfn", concurrency: 64, handler: "sleep", what: `jetfn, handler awaits ${SLEEP_MS} ms` },
];

const SCENARIOS = ALL_SCENARIOS.filter((s) => s.name === "baseline" || ONLY.length === 0 || ONLY.includes(s.name));
for (const name of ONLY) {
  if (!ALL_SCENARIOS.some((s) => s.name === name)) {
    console.error(`BENCH_ONLY: unknown scenario ${name}; known: ${ALL_SCENARIOS.map((s) => s.name).join(", ")}`);
    process.exit(2);
  }
}

interface Measurement {
  readonly seconds: number;
  /** Mean time one I/O-bound handler really slept, in ms (0 for the others). */
  readonly meanSleepMs: number;
  readonly cpuSeconds: number;
  readonly redelivered: number;
}

// ---------------------------------------------------------------------------------------
// Helpers

const textDecoder = new TextDecoder();

interface Target {
  readonly stream: string;
  readonly subject: string;
  readonly durable: string;
}

let streamCounter = 0;
function nextTarget(): Target {
  const id = ++streamCounter;
  return { stream: `BENCH_${id}`, subject: `bench.${id}.evt`, durable: `bench_${id}` };
}

async function createStream(jsm: JetStreamManager, target: Target): Promise<void> {
  await jsm.streams.add({
    name: target.stream,
    subjects: [`bench.${target.stream.slice("BENCH_".length)}.>`],
    storage: STORAGE === "memory" ? StorageType.Memory : StorageType.File,
    num_replicas: 1,
  });
}

async function prePublish(js: JetStreamClient, subject: string, count: number): Promise<void> {
  const encoder = new TextEncoder();
  for (let start = 0; start < count; start += PUBLISH_BATCH) {
    const acks: Promise<unknown>[] = [];
    for (let k = start; k < Math.min(count, start + PUBLISH_BATCH); k++) {
      acks.push(js.publish(subject, encoder.encode(JSON.stringify({ id: k }))));
    }
    await Promise.all(acks);
  }
}

/** A durable like the one jetfn provisions (explicit acks, max_ack_pending 1000). */
async function createBaselineConsumer(jsm: JetStreamManager, target: Target): Promise<void> {
  await jsm.consumers.add(target.stream, {
    durable_name: target.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(35_000),
    max_ack_pending: 1000,
    max_deliver: -1,
    filter_subject: target.subject,
  });
}

async function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  const timer = sleep(SCENARIO_TIMEOUT_MS, undefined, { ref: false }).then(() => {
    throw new Error(`${what}: not finished after ${SCENARIO_TIMEOUT_MS / 1000}s`);
  });
  return Promise.race([promise, timer]);
}

/**
 * Waits until the handlers saw every message, then until the server has nothing pending
 * or ack-pending for the consumer; returns the timed window.
 */
async function finish(
  counter: BenchCounter,
  reached: Promise<void>,
  jsm: JetStreamManager,
  target: Target,
  label: string,
): Promise<Measurement> {
  await withTimeout(reached, `${label}: handlers`);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const info = await jsm.consumers.info(target.stream, target.durable);
    if (info.num_pending === 0 && info.num_ack_pending === 0) {
      const seconds = (performance.now() - counter.t0) / 1000;
      const cpu = process.cpuUsage(counter.cpu0);
      if (info.ack_floor.stream_seq < counter.target) {
        throw new Error(`${label}: ack floor ${info.ack_floor.stream_seq} < ${counter.target}`);
      }
      return {
        seconds,
        meanSleepMs: counter.sleptMs / counter.target,
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        redelivered: info.num_redelivered,
      };
    }
    if (Date.now() > deadline) {
      throw new Error(`${label}: consumer still has ${info.num_pending} pending / ${info.num_ack_pending} ack pending`);
    }
    await sleep(5);
  }
}

// ---------------------------------------------------------------------------------------
// Runners

interface Env {
  readonly server: NatsServer;
  /** The OTLP receiver's URL when BENCH_TRACING=1. */
  readonly otlpEndpoint?: string;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly projectDir: string;
}

/** 1. The fastest reasonable hand-written loop: consume() with a 64-message buffer. */
async function runConsume(env: Env, target: Target, n: number, label: string): Promise<Measurement> {
  await createBaselineConsumer(env.jsm, target);
  const nc = await connect({ servers: env.server.url });
  try {
    const consumer = await jetstream(nc).consumers.get(target.stream, target.durable);
    const { counter, reached } = newCounter(n);
    const messages = await consumer.consume({ max_messages: 64 });
    const loop = (async () => {
      for await (const m of messages) {
        const b = globalThis.__jetfnBench;
        begin(b);
        JSON.parse(textDecoder.decode(m.data));
        m.ack();
        end(b);
      }
    })();
    const result = await finish(counter, reached, env.jsm, target, label);
    messages.stop();
    await loop;
    return result;
  } finally {
    await nc.close();
  }
}

/** Slots like jetfn's pull loop, written out so the baseline shares no code with it. */
class Slots {
  #free: number;
  #waiters: (() => void)[] = [];
  constructor(size: number) {
    this.#free = size;
  }
  get free(): number {
    return this.#free;
  }
  whenFree(): Promise<void> {
    return this.#free > 0 ? Promise.resolve() : new Promise((resolve) => this.#waiters.push(resolve));
  }
  take(): void {
    this.#free--;
  }
  release(): void {
    this.#free++;
    this.#waiters.shift()?.();
  }
  wakeAll(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

async function handleFetched(m: JsMsg): Promise<void> {
  const b = globalThis.__jetfnBench;
  begin(b);
  JSON.parse(textDecoder.decode(m.data));
  m.ack();
  end(b);
}

/** 2. jetfn's pull strategy without jetfn: fetch(free slots), dispatch async, repeat. */
async function runFetch(env: Env, target: Target, n: number, concurrency: number, label: string): Promise<Measurement> {
  await createBaselineConsumer(env.jsm, target);
  const nc = await connect({ servers: env.server.url });
  try {
    const consumer = await jetstream(nc).consumers.get(target.stream, target.durable);
    const { counter, reached } = newCounter(n);
    const slots = new Slots(concurrency);
    const stop = new AbortController();
    let batch: Awaited<ReturnType<typeof consumer.fetch>> | undefined;
    const loop = (async () => {
      while (!stop.signal.aborted) {
        await slots.whenFree();
        if (stop.signal.aborted) break;
        batch = await consumer.fetch({ max_messages: slots.free, expires: 5000 });
        for await (const m of batch) {
          slots.take();
          void handleFetched(m).finally(() => slots.release());
        }
      }
    })();
    const result = await finish(counter, reached, env.jsm, target, label);
    stop.abort();
    batch?.stop();
    slots.wakeAll();
    await loop;
    return result;
  } finally {
    await nc.close();
  }
}

const discard = { write(): void {} };

/** 3-6. An in-process jetfn host, as test/support/project.ts starts one, but quiet. */
async function runJetfn(
  env: Env,
  target: Target,
  n: number,
  scenario: Extract<Scenario, { kind: "jetfn" }>,
  label: string,
): Promise<Measurement> {
  const name = `bench-${target.durable.slice("bench_".length)}`;
  const configFile = path.join(env.projectDir, `${name}.yaml`);
  writeFileSync(
    configFile,
    [
      "functions:",
      `  - name: ${name}`,
      `    handler: fns/${scenario.handler}.ts`,
      `    stream: ${target.stream}`,
      `    subjects: ["${target.subject}"]`,
      `    durable: ${target.durable}`,
      `    concurrency: ${scenario.concurrency}`,
      "",
    ].join("\n"),
  );
  const host = await Host.create({
    env: loadEnv({
      NATS_URL: env.server.url,
      JETFN_CONFIG: configFile,
      JETFN_HTTP_HOST: "127.0.0.1",
      JETFN_HTTP_PORT: "0",
      JETFN_SHUTDOWN_TIMEOUT: "5s",
      LOG_LEVEL: "warn",
      ...(env.otlpEndpoint ? { OTEL_EXPORTER_OTLP_ENDPOINT: env.otlpEndpoint } : {}),
    }),
    logger: pino({ level: "warn" }, discard),
  });
  const { counter, reached } = newCounter(n);
  try {
    await host.start();
    return await finish(counter, reached, env.jsm, target, label);
  } finally {
    await host.shutdown();
  }
}

async function runScenario(
  env: Env,
  scenario: Scenario,
  n: number,
  label: string,
  profileFile?: string,
): Promise<Measurement> {
  const target = nextTarget();
  await createStream(env.jsm, target);
  let session: Session | undefined;
  try {
    await prePublish(env.js, target.subject, n);
    if (profileFile) {
      session = new Session();
      session.connect();
      await session.post("Profiler.enable");
      await session.post("Profiler.start");
    }
    switch (scenario.kind) {
      case "consume":
        return await runConsume(env, target, n, label);
      case "fetch":
        return await runFetch(env, target, n, scenario.concurrency, label);
      case "jetfn":
        return await runJetfn(env, target, n, scenario, label);
      default:
        throw new Error(`unknown scenario ${JSON.stringify(scenario satisfies never)}`);
    }
  } finally {
    if (session && profileFile) {
      const { profile } = await session.post("Profiler.stop");
      writeFileSync(profileFile, JSON.stringify(profile));
      session.disconnect();
    }
    await env.jsm.streams.delete(target.stream).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------
// Report

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(value: number, digits: number): string {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function table(results: Map<string, Measurement[]>, baselineByRound: Measurement[]): string {
  const rows = [
    "| scenario | concurrency | messages | seconds | msgs/s | µs/msg (wall) | CPU µs/msg | vs baseline (msgs/s) | notes |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const scenario of SCENARIOS) {
    const runs = results.get(scenario.name) ?? [];
    if (runs.length === 0) continue;
    const seconds = median(runs.map((r) => r.seconds));
    const rate = median(runs.map((r) => MESSAGES / r.seconds));
    const cpu = median(runs.map((r) => (r.cpuSeconds / MESSAGES) * 1e6));
    // Each round's ratio uses the same round's baseline: rounds see different noise.
    const ratio = median(runs.map((r, i) => baselineByRound[i]!.seconds / r.seconds));
    const notes: string[] = [];
    if (scenario.kind === "jetfn" && scenario.handler === "sleep") {
      // The ideal is concurrency / sleep; timers fire late, so also show it for the
      // sleep the handlers really got.
      const bound = (scenario.concurrency * 1000) / SLEEP_MS;
      const slept = median(runs.map((r) => r.meanSleepMs));
      const real = (scenario.concurrency * 1000) / slept;
      notes.push(
        `${fmt((rate / bound) * 100, 0)}% of ${fmt(bound, 0)}/s (conc/${SLEEP_MS} ms); ` +
          `sleeps took ${fmt(slept, 2)} ms: ${fmt((rate / real) * 100, 0)}% of ${fmt(real, 0)}/s`,
      );
    }
    const redelivered = runs.reduce((sum, r) => sum + r.redelivered, 0);
    if (redelivered > 0) notes.push(`${redelivered} redelivered`);
    if (runs.length > 1) {
      const rates = runs.map((r) => MESSAGES / r.seconds);
      notes.push(`msgs/s range ${fmt(Math.min(...rates), 0)}–${fmt(Math.max(...rates), 0)}`);
    }
    rows.push(
      `| ${scenario.name} | ${scenario.kind === "consume" ? `buffer ${scenario.concurrency}` : scenario.concurrency} | ${fmt(MESSAGES, 0)} | ${fmt(seconds, 2)} | ${fmt(rate, 0)} | ` +
        `${fmt((seconds / MESSAGES) * 1e6, 1)} | ${fmt(cpu, 1)} | ${fmt(ratio, 2)} | ${notes.join("; ")} |`,
    );
  }
  return rows.join("\n");
}

// ---------------------------------------------------------------------------------------
// Main

/** An OTLP/HTTP endpoint in its own process that reads and discards every request. */
async function startDiscardingReceiver(): Promise<{ url: string; child: ChildProcess; received: () => number }> {
  // Reads and discards each request, and reports the bytes received so far on stdout.
  const child = spawn(
    process.execPath,
    [
      "-e",
      'let n=0;const s=require("http").createServer((q,r)=>{q.on("data",(c)=>{n+=c.length});' +
        'q.on("end",()=>{console.log(n);r.end("{}")})});' +
        's.listen(0,"127.0.0.1",()=>console.log(s.address().port))',
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const port = await new Promise<string>((resolve) => child.stdout!.once("data", (d: Buffer) => resolve(d.toString().trim())));
  let bytes = 0;
  child.stdout!.on("data", (d: Buffer) => {
    const last = d.toString().trim().split("\n").pop();
    if (last) bytes = Number(last);
  });
  return { url: `http://127.0.0.1:${port}`, child, received: () => bytes };
}

async function main(): Promise<void> {
  const started = Date.now();
  const server = await startNatsServer();
  let nc: NatsConnection | undefined;
  let projectDir: string | undefined;
  const receiver = TRACING ? await startDiscardingReceiver() : undefined;
  try {
    nc = await connect({ servers: server.url });
    const env: Env = {
      server,
      ...(receiver ? { otlpEndpoint: receiver.url } : {}),
      js: jetstream(nc),
      jsm: await jetstreamManager(nc),
      projectDir: (projectDir = makeProject(HANDLER_FILES)),
    };
    const serverVersion = nc.info?.version ?? "unknown";
    if (CPU_PROF_DIR) mkdirSync(CPU_PROF_DIR, { recursive: true });

    // Warm-up: JIT for nats.js and for the host's code paths; not reported.
    process.stderr.write(`warm-up (${WARMUP_MESSAGES} messages each)...\n`);
    await runScenario(env, ALL_SCENARIOS[0]!, WARMUP_MESSAGES, "warm-up baseline");
    await runScenario(env, ALL_SCENARIOS[2]!, WARMUP_MESSAGES, "warm-up jetfn");

    const results = new Map<string, Measurement[]>();
    const baselineByRound: Measurement[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const scenario of SCENARIOS) {
        const label = `round ${round}/${ROUNDS} ${scenario.name}`;
        const profileFile = CPU_PROF_DIR ? path.join(CPU_PROF_DIR, `${round}-${scenario.name}.cpuprofile`) : undefined;
        const m = await runScenario(env, scenario, MESSAGES, label, profileFile);
        if (scenario.name === "baseline") baselineByRound.push(m);
        const list = results.get(scenario.name) ?? [];
        list.push(m);
        results.set(scenario.name, list);
        process.stderr.write(
          `${label}: ${m.seconds.toFixed(2)} s, ${fmt(MESSAGES / m.seconds, 0)} msgs/s, ` +
            `CPU ${((m.cpuSeconds / MESSAGES) * 1e6).toFixed(1)} µs/msg\n`,
        );
      }
    }

    const cpus = os.cpus();
    console.log(`## jetfn throughput benchmark\n`);
    console.log(`- date: ${new Date().toISOString()}`);
    console.log(`- node ${process.version}, nats-server ${serverVersion}, ${os.platform()} ${os.arch()}`);
    console.log(`- CPU: ${cpus[0]?.model ?? "unknown"} (${cpus.length} logical cores)`);
    console.log(
      `- ${fmt(MESSAGES, 0)} messages per scenario, ${STORAGE} storage, ${ROUNDS} round(s)` +
        `${ROUNDS > 1 ? " (medians)" : ""}, benchmark and host in one process, total ${((Date.now() - started) / 1000).toFixed(0)} s` +
        `${CPU_PROF_DIR ? ", CPU PROFILER ON (numbers not comparable)" : ""}` +
        `${receiver ? `, TRACING ON (every span exported over OTLP/HTTP: ${fmt(receiver.received() / 1e6, 1)} MB received)` : ""}`,
    );
    console.log("");
    console.log(table(results, baselineByRound));
  } finally {
    receiver?.child.kill();
    await nc?.close().catch(() => {});
    await server.stop();
    if (projectDir) rmSync(projectDir, { recursive: true, force: true });
  }
}

try {
  await main();
  process.exit(0);
} catch (error) {
  console.error(error);
  process.exit(1);
}

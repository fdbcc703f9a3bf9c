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
 * (polled every 5 ms once the handlers reported the N-th call). Start-up (connecting,
 * bundling, provisioning, a worker thread's start) is not timed. CPU is the benchmark
 * process's user+system time over the same window, every thread included (the server is a
 * separate process and not included).
 *
 * jetfn handlers (bench/fixtures/fns/) run in this process either in the host's thread
 * (`isolation: none`) or in a worker thread of their function (`isolation: worker`). They
 * count their calls in their own module and report only the first call (time and
 * process.cpuUsage()) and the N-th over a node:worker_threads BroadcastChannel; see
 * bench/fixtures/tally.ts.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { BroadcastChannel } from "node:worker_threads";
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  StorageType,
} from "@nats-io/jetstream";
import { connect, type NatsConnection, nanos } from "@nats-io/transport-node";
import { build } from "esbuild";
import { pino } from "pino";
import { ensureRuntime } from "../bin/build-runtime.js";
import type * as EnvModule from "../runtime/config/env.ts";
import type * as HostModule from "../runtime/host.ts";
import { type NatsServer, startNatsServer } from "../test/support/nats-server.ts";
import { choiceEnv, fmt, intEnv, listOf, machineLines, median, NODE_BUNDLE, runBenchmark } from "./env.ts";
import { type BenchConfig, type BenchReport, CHANNEL, now, SLEEP_MS } from "./fixtures/tally.ts";

// ---------------------------------------------------------------------------------------
// Settings

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const FIXTURES_DIR = fileURLToPath(new URL("fixtures", import.meta.url));

/**
 * The runtime as production runs it: bundled by esbuild (as bin/jetfn.js does), not compiled
 * file by file by tsx, whose keepNames adds work to every closure on the hot path. It sits
 * beside the CLI's bundles (bin/build-runtime.js), so it finds their worker.mjs, the entry
 * of handler threads, as the CLI does.
 */
const runtimeBundle = path.join(await ensureRuntime(), "bench.mjs");
await build({
  ...NODE_BUNDLE,
  stdin: {
    contents: 'export { Host } from "./runtime/host.ts"; export { loadEnv } from "./runtime/config/env.ts";',
    resolveDir: REPO_ROOT,
    loader: "ts",
  },
  outfile: runtimeBundle,
});
const { Host } = (await import(runtimeBundle)) as typeof HostModule;
const { loadEnv } = (await import(runtimeBundle)) as typeof EnvModule;

const MESSAGES = intEnv("BENCH_MESSAGES", 20_000);
const ROUNDS = intEnv("BENCH_ROUNDS", 3);
const STORAGE = choiceEnv("BENCH_STORAGE", ["memory", "file"], "memory");
const ONLY = listOf("BENCH_ONLY");
const TRACING = process.env.BENCH_TRACING === "1";
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : undefined;
const PUBLISH_BATCH = 500;
const WARMUP_MESSAGES = Math.min(2_000, MESSAGES);
/** A scenario that has not finished by then is a failure, not a result. */
const SCENARIO_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------------------------------
// The timed window of one run. The baselines' loops (in this thread) fill it in directly;
// jetfn handlers, in this thread or in a worker thread, report over a BroadcastChannel.

class Window {
  /** `now()` when the first message reached a handler; 0 before. */
  t0 = 0;
  cpu0: NodeJS.CpuUsage = { user: 0, system: 0 };
  /** Sum of the time the I/O-bound handlers actually slept (timers run late), in ms. */
  sleptMs = 0;
  /** Resolves when the handlers have seen `target` messages. */
  readonly reached: Promise<void>;
  readonly #reach: () => void;

  constructor(
    readonly run: string,
    readonly target: number,
  ) {
    let reach!: () => void;
    this.reached = new Promise<void>((resolve) => (reach = resolve));
    this.#reach = reach;
    windows.set(run, this);
  }

  started(at: number, cpu: NodeJS.CpuUsage): void {
    if (this.t0 !== 0) return;
    this.t0 = at;
    this.cpu0 = cpu;
  }

  done(sleptMs: number): void {
    this.sleptMs = sleptMs;
    this.#reach();
  }
}

/** Open windows by run id. */
const windows = new Map<string, Window>();
const reports = new BroadcastChannel(CHANNEL);
reports.onmessage = (event: MessageEvent) => {
  const report = event.data as BenchReport;
  const window = windows.get(report.run);
  if (!window) return;
  if (report.kind === "first") window.started(report.at, report.cpu);
  else window.done(report.sleptMs);
};

/** A baseline loop's own count, in this thread. */
class LocalCount {
  #count = 0;
  constructor(readonly window: Window) {}

  /** At the top of the loop's per-message code. */
  begin(): void {
    if (this.window.t0 === 0) this.window.started(now(), process.cpuUsage());
  }

  /** At its end. */
  end(): void {
    if (++this.#count === this.window.target) this.window.done(0);
  }
}

// ---------------------------------------------------------------------------------------
// Scenarios

type Scenario =
  | { readonly name: string; readonly kind: "consume"; readonly concurrency: number; readonly what: string }
  | { readonly name: string; readonly kind: "fetch"; readonly concurrency: number; readonly what: string }
  | {
      readonly name: string;
      readonly kind: "jetfn";
      readonly concurrency: number;
      /** A file of bench/fixtures/fns/. */
      readonly handler: "noop" | "zod" | "sleep";
      /** `isolation:` in the function's entry. */
      readonly isolation: "none" | "worker";
      readonly what: string;
    };

/** Each worker row follows its `isolation: none` twin, so a pair runs close together. */
const ALL_SCENARIOS: Scenario[] = [
  { name: "baseline", kind: "consume", concurrency: 64, what: "nats.js consume({max_messages: 64}), JSON.parse + ack" },
  { name: "baseline-fetch", kind: "fetch", concurrency: 16, what: "nats.js slot-gated fetch loop (16 slots), JSON.parse + ack" },
  {
    name: "jetfn-noop-c16",
    kind: "jetfn",
    concurrency: 16,
    handler: "noop",
    isolation: "none",
    what: "jetfn, no-op defineFunction handler",
  },
  {
    name: "jetfn-noop-c16-worker",
    kind: "jetfn",
    concurrency: 16,
    handler: "noop",
    isolation: "worker",
    what: "the same in a worker thread",
  },
  { name: "jetfn-noop-c64", kind: "jetfn", concurrency: 64, handler: "noop", isolation: "none", what: "jetfn, no-op handler" },
  {
    name: "jetfn-noop-c64-worker",
    kind: "jetfn",
    concurrency: 64,
    handler: "noop",
    isolation: "worker",
    what: "the same in a worker thread",
  },
  {
    name: "jetfn-zod-c16",
    kind: "jetfn",
    concurrency: 16,
    handler: "zod",
    isolation: "none",
    what: "jetfn, z.object({id: z.number()}) schema",
  },
  {
    name: "jetfn-io5ms-c16",
    kind: "jetfn",
    concurrency: 16,
    handler: "sleep",
    isolation: "none",
    what: `jetfn, handler awaits ${SLEEP_MS} ms`,
  },
  {
    name: "jetfn-io5ms-c64",
    kind: "jetfn",
    concurrency: 64,
    handler: "sleep",
    isolation: "none",
    what: `jetfn, handler awaits ${SLEEP_MS} ms`,
  },
  {
    name: "jetfn-io5ms-c64-worker",
    kind: "jetfn",
    concurrency: 64,
    handler: "sleep",
    isolation: "worker",
    what: "the same in a worker thread",
  },
];

/** Worker rows and the `isolation: none` rows they are compared with. */
const WORKER_PAIRS: readonly (readonly [none: string, worker: string])[] = [
  ["jetfn-noop-c16", "jetfn-noop-c16-worker"],
  ["jetfn-noop-c64", "jetfn-noop-c64-worker"],
  ["jetfn-io5ms-c64", "jetfn-io5ms-c64-worker"],
];

function scenarioNamed(name: string): Scenario {
  const scenario = ALL_SCENARIOS.find((s) => s.name === name);
  if (!scenario) throw new Error(`no scenario ${name}`);
  return scenario;
}

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
  /** The system (kernel) part of cpuSeconds. */
  readonly systemSeconds: number;
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
async function finish(window: Window, jsm: JetStreamManager, target: Target, label: string): Promise<Measurement> {
  try {
    await withTimeout(window.reached, `${label}: handlers`);
  } finally {
    windows.delete(window.run);
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    const info = await jsm.consumers.info(target.stream, target.durable);
    if (info.num_pending === 0 && info.num_ack_pending === 0) {
      const seconds = (now() - window.t0) / 1000;
      const cpu = process.cpuUsage(window.cpu0);
      if (window.t0 === 0) throw new Error(`${label}: the handlers did not report their first call`);
      if (info.ack_floor.stream_seq < window.target) {
        throw new Error(`${label}: ack floor ${info.ack_floor.stream_seq} < ${window.target}`);
      }
      return {
        seconds,
        meanSleepMs: window.sleptMs / window.target,
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        systemSeconds: cpu.system / 1e6,
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
    const window = new Window(target.durable, n);
    const count = new LocalCount(window);
    const messages = await consumer.consume({ max_messages: 64 });
    const loop = (async () => {
      for await (const m of messages) {
        count.begin();
        JSON.parse(textDecoder.decode(m.data));
        m.ack();
        count.end();
      }
    })();
    const result = await finish(window, env.jsm, target, label);
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

async function handleFetched(m: JsMsg, count: LocalCount): Promise<void> {
  count.begin();
  JSON.parse(textDecoder.decode(m.data));
  m.ack();
  count.end();
}

/** 2. jetfn's pull strategy without jetfn: fetch(free slots), dispatch async, repeat. */
async function runFetch(env: Env, target: Target, n: number, concurrency: number, label: string): Promise<Measurement> {
  await createBaselineConsumer(env.jsm, target);
  const nc = await connect({ servers: env.server.url });
  try {
    const consumer = await jetstream(nc).consumers.get(target.stream, target.durable);
    const window = new Window(target.durable, n);
    const count = new LocalCount(window);
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
          void handleFetched(m, count).finally(() => slots.release());
        }
      }
    })();
    const result = await finish(window, env.jsm, target, label);
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

/**
 * 3-. An in-process jetfn host, as test/support/project.ts starts one, but quiet. With
 * `isolation: worker` the handler runs in a worker thread of this process.
 */
async function runJetfn(
  env: Env,
  target: Target,
  n: number,
  scenario: Extract<Scenario, { kind: "jetfn" }>,
  label: string,
): Promise<Measurement> {
  const name = `bench-${target.durable.slice("bench_".length)}`;
  const configFile = path.join(env.projectDir, `${name}.yaml`);
  const config: BenchConfig = { run: target.durable, target: n };
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
      `    isolation: ${scenario.isolation}`,
      `    config: ${JSON.stringify(config)}`,
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
  const window = new Window(config.run, n);
  try {
    await host.start();
    return await finish(window, env.jsm, target, label);
  } finally {
    windows.delete(config.run);
    await host.shutdown();
  }
}

async function runScenario(env: Env, scenario: Scenario, n: number, label: string, profileFile?: string): Promise<Measurement> {
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

/**
 * Worker rows next to their `isolation: none` twins: the CPU each message costs more, and
 * the throughput ratio. Each round pairs the two runs of that round; medians over rounds.
 */
function workerTable(results: Map<string, Measurement[]>): string | undefined {
  const rows = [
    "| isolation: worker vs none | CPU µs/msg none | CPU µs/msg worker | worker − none (CPU µs/msg) | msgs/s none | msgs/s worker | worker / none (msgs/s) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const perMessage = (m: Measurement): number => (m.cpuSeconds / MESSAGES) * 1e6;
  for (const [noneName, workerName] of WORKER_PAIRS) {
    const none = results.get(noneName) ?? [];
    const worker = results.get(workerName) ?? [];
    const rounds = Math.min(none.length, worker.length);
    if (rounds === 0) continue;
    const pairs = Array.from({ length: rounds }, (_, i) => [none[i]!, worker[i]!] as const);
    const diffs = pairs.map(([n, w]) => perMessage(w) - perMessage(n));
    const ratios = pairs.map(([n, w]) => n.seconds / w.seconds);
    const range = (values: number[], digits: number): string =>
      rounds > 1 ? ` (${fmt(Math.min(...values), digits)} to ${fmt(Math.max(...values), digits)})` : "";
    rows.push(
      `| ${workerName} | ${fmt(median(none.map(perMessage)), 1)} | ${fmt(median(worker.map(perMessage)), 1)} | ` +
        `${fmt(median(diffs), 1)}${range(diffs, 1)} | ${fmt(median(none.map((r) => MESSAGES / r.seconds)), 0)} | ` +
        `${fmt(median(worker.map((r) => MESSAGES / r.seconds)), 0)} | ${fmt(median(ratios), 3)}${range(ratios, 3)} |`,
    );
  }
  return rows.length > 2 ? rows.join("\n") : undefined;
}

// ---------------------------------------------------------------------------------------
// Main

/**
 * A throwaway project under the repo's git-ignored `.jetfn/` (so handlers resolve `zod`
 * from the repo's node_modules) holding bench/fixtures/; each run writes its own yaml.
 */
function makeProject(): string {
  const base = path.join(REPO_ROOT, ".jetfn", "bench");
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(path.join(base, "project-"));
  cpSync(FIXTURES_DIR, dir, { recursive: true });
  return dir;
}

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
      projectDir: (projectDir = makeProject()),
    };
    const serverVersion = nc.info?.version ?? "unknown";
    if (CPU_PROF_DIR) mkdirSync(CPU_PROF_DIR, { recursive: true });

    // Warm-up: JIT for nats.js and for the host's code paths in either mode; not reported.
    // (Every worker row's handler thread is new, and starts with cold code of its own.)
    process.stderr.write(`warm-up (${WARMUP_MESSAGES} messages each)...\n`);
    await runScenario(env, scenarioNamed("baseline"), WARMUP_MESSAGES, "warm-up baseline");
    await runScenario(env, scenarioNamed("jetfn-noop-c16"), WARMUP_MESSAGES, "warm-up jetfn");
    await runScenario(env, scenarioNamed("jetfn-noop-c16-worker"), WARMUP_MESSAGES, "warm-up jetfn worker");

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
            `CPU ${((m.cpuSeconds / MESSAGES) * 1e6).toFixed(1)} µs/msg (system ${((m.systemSeconds / MESSAGES) * 1e6).toFixed(1)})\n`,
        );
      }
    }

    console.log(`## jetfn throughput benchmark\n`);
    for (const line of machineLines(serverVersion, "")) console.log(line);
    console.log(
      `- ${fmt(MESSAGES, 0)} messages per scenario, ${STORAGE} storage, ${ROUNDS} round(s)` +
        `${ROUNDS > 1 ? " (medians)" : ""}, benchmark and host in one process, total ${((Date.now() - started) / 1000).toFixed(0)} s` +
        `${CPU_PROF_DIR ? ", CPU PROFILER ON (numbers not comparable)" : ""}` +
        `${receiver ? `, TRACING ON (every span exported over OTLP/HTTP: ${fmt(receiver.received() / 1e6, 1)} MB received)` : ""}`,
    );
    console.log("");
    console.log(table(results, baselineByRound));
    const pairs = workerTable(results);
    if (pairs) {
      console.log("");
      console.log(pairs);
    }
  } finally {
    reports.close();
    receiver?.child.kill();
    await nc?.close().catch(() => {});
    await server.stop();
    if (projectDir) rmSync(projectDir, { recursive: true, force: true });
  }
}

await runBenchmark(main);

/**
 * Start-up time and memory of one jetfn host running 50 functions, each importing zod,
 * with `isolation: worker` and `isolation: none`, bundles cached and from scratch. jetfn
 * runs as its own process, the way the container runs it (`node bin/jetfn.js start`,
 * NODE_ENV=production), against a private nats-server this script starts. Prints a
 * markdown table on stdout; progress goes to stderr.
 *
 *   node --import tsx bench/startup.ts
 *
 * Environment:
 *   STARTUP_FUNCTIONS  how many functions (default 50)
 *   STARTUP_ROUNDS     how many times each of the four starts runs; the table shows medians
 *                      (default 1)
 *   STARTUP_IDLE_MS    how long the host is left idle before its memory is read (default 5000)
 *
 * Per start: every stream on the server is deleted (so each start provisions the same
 * things); for "scratch" the project's `.jetfn/build` is deleted first, for "cached" it
 * holds the bundles of the start before. Timed: from spawning the process to the first 200
 * from `/readyz` (polled every 10 ms). Then, after STARTUP_IDLE_MS idle, the process's
 * VmRSS and VmHWM (peak) from /proc/<pid>/status. Then one event is published to each
 * function, the script waits until `/metrics` counts a successful invocation for every one
 * (timed from the first publish), waits STARTUP_IDLE_MS again (less than the 30 s after
 * which an idle handler thread is closed; `/functions` confirms they are alive) and reads
 * the memory again. Then SIGTERM.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type NatsServer, startNatsServer } from "../test/support/nats-server.ts";
import { fmt, intEnv, machineLines, median, runBenchmark } from "./env.ts";

const FUNCTIONS = intEnv("STARTUP_FUNCTIONS", 50);
const ROUNDS = intEnv("STARTUP_ROUNDS", 1);
const IDLE_MS = intEnv("STARTUP_IDLE_MS", 5000, 0);
const READY_TIMEOUT_MS = 300_000;
const RAN_TIMEOUT_MS = 120_000;
const READY_POLL_MS = 10;

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const JETFN_BIN = path.join(REPO_ROOT, "bin", "jetfn.js");
/** The throwaway project, under the repo's git-ignored `.jetfn/` so `zod` resolves. */
const PROJECT = path.join(REPO_ROOT, ".jetfn", "bench-startup");
const BUILD_DIR = path.join(PROJECT, ".jetfn", "build");
const STREAM = "STARTUP";

type Isolation = "worker" | "none";
type Bundles = "scratch" | "cached";

const names = Array.from({ length: FUNCTIONS }, (_, i) => `fn${String(i + 1).padStart(2, "0")}`);

// ---------------------------------------------------------------------------------------
// The project

function handlerSource(name: string): string {
  return `import { defineFunction } from "jetfn";
import { z } from "zod";

const Event = z.object({
  id: z.number().int().nonnegative(),
  fn: z.literal(${JSON.stringify(name)}).optional(),
  note: z.string().max(200).optional(),
  tags: z.array(z.string()).default([]),
});

export default defineFunction({
  schema: Event,
  async handler(event) {
    if (event.tags.length > 100) throw new Error("too many tags");
  },
});
`;
}

function writeProject(isolation: Isolation): void {
  mkdirSync(path.join(PROJECT, "fns"), { recursive: true });
  for (const name of names) writeFileSync(path.join(PROJECT, "fns", `${name}.ts`), handlerSource(name));
  const yaml = [
    "defaults:",
    `  isolation: ${isolation}`,
    "streams:",
    `  - name: ${STREAM}`,
    `    subjects: ["startup.>"]`,
    "    storage: memory",
    "functions:",
    ...names.flatMap((name) => [
      `  - name: ${name}`,
      `    handler: fns/${name}.ts`,
      `    stream: ${STREAM}`,
      `    subjects: ["startup.${name}"]`,
    ]),
    "",
  ].join("\n");
  writeFileSync(path.join(PROJECT, "functions.yaml"), yaml);
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

interface Memory {
  /** VmRSS, MiB. */
  readonly rssMb: number;
  /** VmHWM (the peak RSS so far), MiB. */
  readonly peakMb: number;
}

function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string): number => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(match[1]);
  };
  return { rssMb: kb("VmRSS") / 1024, peakMb: kb("VmHWM") / 1024 };
}

async function get(url: string): Promise<{ status: number; body: string } | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
    return { status: response.status, body: await response.text() };
  } catch {
    return undefined; // not listening yet
  }
}

function logTail(file: string): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-30).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Successful invocations per function, from `/metrics`. */
function successes(metrics: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of metrics.split("\n")) {
    if (!line.startsWith("jetfn_invocations_total{")) continue;
    const fn = /function="([^"]+)"/.exec(line)?.[1];
    if (!fn || !line.includes('outcome="success"')) continue;
    counts.set(fn, Number(line.split(" ").pop()));
  }
  return counts;
}

/** `node bin/jetfn.js help`: rebuilds the runtime's bundle if runtime/ changed, so no start times that. */
function primeRuntimeBundle(): void {
  const result = spawnSync(process.execPath, [JETFN_BIN, "help"], { cwd: PROJECT, stdio: "ignore" });
  if (result.status !== 0) throw new Error(`node bin/jetfn.js help exited with ${result.status}`);
}

async function deleteStreams(jsm: JetStreamManager): Promise<void> {
  const streams: string[] = [];
  for await (const info of jsm.streams.list()) streams.push(info.config.name);
  for (const name of streams) await jsm.streams.delete(name);
}

// ---------------------------------------------------------------------------------------
// One start

interface StartResult {
  readonly isolation: Isolation;
  readonly bundles: Bundles;
  /** Spawn to the first 200 from /readyz. */
  readonly readySeconds: number;
  readonly idle: Memory;
  /** From the first publish until every function counted a success. */
  readonly allRanSeconds: number;
  readonly afterEvents: Memory;
  /** Handler threads `/functions` reported running after the events (worker mode). */
  readonly threadsAlive: number;
}

interface Env {
  readonly server: NatsServer;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly logDir: string;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const inTime = await Promise.race([exited.then(() => true), sleep(30_000, false)]);
  if (!inTime) {
    child.kill("SIGKILL");
    await exited;
  }
}

async function measureStart(env: Env, isolation: Isolation, bundles: Bundles, label: string): Promise<StartResult> {
  writeProject(isolation);
  if (bundles === "scratch") rmSync(BUILD_DIR, { recursive: true, force: true });
  await deleteStreams(env.jsm);
  primeRuntimeBundle();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const logFile = path.join(env.logDir, `${label.replace(/[^a-z0-9]+/gi, "-")}.log`);
  const logFd = openSync(logFile, "w");
  const started = performance.now();
  // The container's way: `node bin/jetfn.js start`, NODE_ENV=production, NATS_URL given.
  const child = spawn(process.execPath, [JETFN_BIN, "start"], {
    cwd: PROJECT,
    env: {
      PATH: process.env.PATH ?? "",
      NODE_ENV: "production",
      NATS_URL: env.server.url,
      JETFN_HTTP_HOST: "127.0.0.1",
      JETFN_HTTP_PORT: String(port),
    },
    stdio: ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  const fail = (why: string): Error => new Error(`${label}: ${why}\nlog ${logFile}:\n${logTail(logFile)}`);
  try {
    // 1. Spawn to ready.
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw fail(`jetfn exited (${child.exitCode ?? child.signalCode}) before it was ready`);
      const answer = await get(`${base}/readyz`);
      if (answer?.status === 200) break;
      if (performance.now() - started > READY_TIMEOUT_MS) throw fail(`not ready after ${READY_TIMEOUT_MS / 1000} s`);
      await sleep(READY_POLL_MS);
    }
    const readySeconds = (performance.now() - started) / 1000;
    process.stderr.write(`${label}: ready in ${readySeconds.toFixed(2)} s\n`);

    // 2. Idle memory.
    await sleep(IDLE_MS);
    const idle = memoryOf(child.pid!);

    // 3. One event per function; wait until each ran.
    const published = performance.now();
    await Promise.all(names.map((name, i) => env.js.publish(`startup.${name}`, JSON.stringify({ id: i, fn: name }))));
    for (;;) {
      const metrics = await get(`${base}/metrics`);
      const counts = successes(metrics?.body ?? "");
      if (names.every((name) => (counts.get(name) ?? 0) >= 1)) break;
      if (performance.now() - published > RAN_TIMEOUT_MS) {
        throw fail(`after ${RAN_TIMEOUT_MS / 1000} s only ${names.filter((n) => (counts.get(n) ?? 0) >= 1).length} functions ran`);
      }
      await sleep(50);
    }
    const allRanSeconds = (performance.now() - published) / 1000;

    // 4. Memory with every handler loaded (in worker mode: every thread alive).
    await sleep(IDLE_MS);
    const afterEvents = memoryOf(child.pid!);
    const functions = JSON.parse((await get(`${base}/functions`))?.body ?? "[]") as { thread?: { state?: string } }[];
    const threadsAlive = functions.filter((f) => f.thread?.state === "running").length;
    process.stderr.write(
      `${label}: idle RSS ${idle.rssMb.toFixed(0)} MiB (peak ${idle.peakMb.toFixed(0)}); all ${FUNCTIONS} ran in ` +
        `${allRanSeconds.toFixed(2)} s; then RSS ${afterEvents.rssMb.toFixed(0)} MiB (peak ${afterEvents.peakMb.toFixed(0)}), ` +
        `${threadsAlive} handler threads running\n`,
    );
    return { isolation, bundles, readySeconds, idle, allRanSeconds, afterEvents, threadsAlive };
  } finally {
    await stop(child);
  }
}

// ---------------------------------------------------------------------------------------
// Report

function table(results: StartResult[]): string {
  const rows = [
    `| isolation | bundles | spawn → /readyz 200 (s) | RSS idle (MiB) | peak RSS by then (MiB) | 1 event to each of ${FUNCTIONS}: all ran in (s) | RSS after (MiB) | peak RSS by then (MiB) | handler threads running |`,
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const isolation of ["worker", "none"] as const) {
    for (const bundles of ["scratch", "cached"] as const) {
      const runs = results.filter((r) => r.isolation === isolation && r.bundles === bundles);
      if (runs.length === 0) continue;
      const m = (pick: (r: StartResult) => number, digits: number): string => fmt(median(runs.map(pick)), digits);
      const range =
        runs.length > 1
          ? ` (${fmt(Math.min(...runs.map((r) => r.readySeconds)), 2)} to ${fmt(Math.max(...runs.map((r) => r.readySeconds)), 2)})`
          : "";
      rows.push(
        `| ${isolation} | ${bundles === "scratch" ? "from scratch (.jetfn/build deleted)" : "cached (second start)"} | ` +
          `${m((r) => r.readySeconds, 2)}${range} | ${m((r) => r.idle.rssMb, 0)} | ${m((r) => r.idle.peakMb, 0)} | ` +
          `${m((r) => r.allRanSeconds, 2)} | ${m((r) => r.afterEvents.rssMb, 0)} | ${m((r) => r.afterEvents.peakMb, 0)} | ` +
          `${isolation === "worker" ? m((r) => r.threadsAlive, 0) : "–"} |`,
      );
    }
  }
  return rows.join("\n");
}

// ---------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const began = Date.now();
  const server = await startNatsServer();
  let nc: NatsConnection | undefined;
  const logDir = path.join(PROJECT, "logs");
  try {
    rmSync(PROJECT, { recursive: true, force: true });
    mkdirSync(logDir, { recursive: true });
    nc = await connect({ servers: server.url });
    const env: Env = { server, nc, js: jetstream(nc), jsm: await jetstreamManager(nc), logDir };
    const results: StartResult[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const isolation of ["worker", "none"] as const) {
        for (const bundles of ["scratch", "cached"] as const) {
          const label = `round ${round}/${ROUNDS} ${isolation} ${bundles}`;
          results.push(await measureStart(env, isolation, bundles, label));
        }
      }
    }
    console.log(`## jetfn start-up: ${FUNCTIONS} functions, each importing zod\n`);
    for (const line of machineLines(nc.info?.version)) console.log(line);
    console.log(
      `- \`node bin/jetfn.js start\` as its own process (NODE_ENV=production), one stream (memory), ` +
        `${ROUNDS} round(s)${ROUNDS > 1 ? " (medians; range of the start time)" : ""}, idle ${IDLE_MS / 1000} s before each memory reading, ` +
        `total ${((Date.now() - began) / 1000).toFixed(0)} s`,
    );
    console.log("");
    console.log(table(results));
  } finally {
    await nc?.close().catch(() => {});
    await server.stop();
  }
}

await runBenchmark(main);

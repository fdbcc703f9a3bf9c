/**
 * What durable steps, completion records and `idempotency:` cost (issue 19): jetfn as users
 * run it, `node bin/jetfn.js start` in its own process (NODE_ENV=production), next to the
 * hand-written `@nats-io/jetstream` worker of bench/process.ts (noop mode), each draining a
 * backlog. Prints a markdown table on stdout; progress on stderr.
 *
 *   node --import tsx bench/steps.ts        (npm run bench:steps)
 *
 * Rows (one function, `concurrency` as below, the isolation BENCH_STEPS_ISOLATION):
 *   hand-written   the baseline: JSON.parse, ack
 *   noop           a handler that does nothing
 *   noop + idempotency (new keys)   `idempotency: { key: k }`, every event its own key
 *   noop + idempotency (duplicates) the same keys again: every event a duplicate, unrun
 *   1 step         `ctx.step("a", () => undefined)`: its claim and record, and the run's
 *                  completion record
 *   2 steps        two such steps, one completion record
 * So a step costs (2 steps − 1 step), and a completion record (1 step − noop − a step).
 *
 * Environment:
 *   BENCH_STEPS_EVENTS        timed events per row at concurrency > 1 (default 10000)
 *   BENCH_STEPS_EVENTS_C1     timed events per row at concurrency 1 (default 2000)
 *   BENCH_STEPS_WARMUP        events before the clock starts (default 1000)
 *   BENCH_STEPS_CONCURRENCY   comma list (default 1,64): each row at each
 *   BENCH_STEPS_ISOLATION     none | worker (default none)
 *   BENCH_STEPS_ROUNDS        rounds; the table shows medians (default 1)
 *
 * Method, per row: a fresh stream (memory storage; JETFN_STEPS is file storage, R1, as a
 * host creates it), warm-up + N events `{"k":<n>}` published beforehand, the worker started;
 * the clock starts once the warm-up is acked and stops when the consumer has nothing
 * pending or ack-pending. Besides time: CPU of the worker's process and of nats-server
 * (/proc/<pid>/stat), messages the server received (`in_msgs` of its `/varz`: every request
 * a client makes is one, so the difference between two rows is their difference in round
 * trips), and writes to the step bucket (its stream's last sequence), per event.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, cpSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";
import { freePort } from "../test/support/free-port.ts";
import { startNatsServer } from "../test/support/nats-server.ts";
import { bundleWorkers, choiceEnv, cpuOf, fmt, intEnv, machineLines, median, runBenchmark } from "./env.ts";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const JETFN_BIN = path.join(REPO_ROOT, "bin", "jetfn.js");
const PROJECT = path.join(REPO_ROOT, ".jetfn", "bench-steps");
const LOG_DIR = path.join(PROJECT, "logs");
const EVENTS = intEnv("BENCH_STEPS_EVENTS", 10_000);
const EVENTS_C1 = intEnv("BENCH_STEPS_EVENTS_C1", 2_000);
const WARMUP = intEnv("BENCH_STEPS_WARMUP", 1_000, 0);
const ROUNDS = intEnv("BENCH_STEPS_ROUNDS", 1);
const ISOLATION = choiceEnv("BENCH_STEPS_ISOLATION", ["none", "worker"] as const, "none");
const CONCURRENCIES = (process.env.BENCH_STEPS_CONCURRENCY ?? "1,64").split(",").map((c) => {
  const value = Number(c.trim());
  if (!Number.isInteger(value) || value < 1) throw new Error(`BENCH_STEPS_CONCURRENCY: not a concurrency: ${c}`);
  return value;
});
const STALL_MS = 60_000;

type Row = "hand-written" | "noop" | "noop + idempotency (new keys)" | "noop + idempotency (duplicates)" | "1 step" | "2 steps";
const ROWS: readonly Row[] = [
  "hand-written",
  "noop",
  "noop + idempotency (new keys)",
  "noop + idempotency (duplicates)",
  "1 step",
  "2 steps",
];

interface Result {
  readonly row: Row;
  readonly concurrency: number;
  readonly events: number;
  readonly seconds: number;
  readonly workerCpuUs: number;
  readonly serverCpuUs: number;
  readonly inMsgs: number;
  readonly kvWrites: number;
}

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

function spawnLogged(name: string, args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; log: string } {
  const log = path.join(LOG_DIR, `${name.replace(/[^a-z0-9]+/gi, "-")}.log`);
  const fd = openSync(log, "w");
  try {
    const child = spawn(process.execPath, args, { cwd: PROJECT, env, stdio: ["ignore", fd, fd] });
    children.add(child);
    child.once("exit", () => children.delete(child));
    return { child, log };
  } finally {
    closeSync(fd);
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  if (!(await Promise.race([exited.then(() => true), sleep(20_000, false)]))) {
    child.kill("SIGKILL");
    await exited;
  }
}

function yamlOf(row: Row, fn: string, stream: string, subject: string, concurrency: number): string {
  const handler = row === "1 step" ? "step1" : row === "2 steps" ? "step2" : "noop";
  return [
    "functions:",
    `  - name: ${fn}`,
    `    handler: fns/${handler}.ts`,
    `    stream: ${stream}`,
    `    subjects: ["${subject}"]`,
    `    durable: ${fn.replaceAll("-", "_")}`,
    `    concurrency: ${concurrency}`,
    `    isolation: ${ISOLATION}`,
    ...(row.startsWith("noop + idempotency") ? ["    idempotency: { key: k }"] : []),
    "",
  ].join("\n");
}

async function publish(js: JetStreamClient, subject: string, count: number): Promise<void> {
  for (let start = 0; start < count; start += 500) {
    const acks: Promise<unknown>[] = [];
    for (let k = start; k < Math.min(count, start + 500); k++) acks.push(js.publish(subject, `{"k":${k}}`));
    await Promise.all(acks);
  }
}

async function kvWrites(jsm: JetStreamManager): Promise<number> {
  return (await jsm.streams.info("KV_JETFN_STEPS").catch(() => undefined))?.state.last_seq ?? 0;
}

async function inMsgs(monitor: string): Promise<number> {
  return ((await (await fetch(`${monitor}/varz`)).json()) as { in_msgs: number }).in_msgs;
}

let serial = 0;

async function runRow(
  env: { js: JetStreamClient; jsm: JetStreamManager; url: string; monitor: string; serverPid: number },
  row: Row,
  concurrency: number,
  round: number,
): Promise<Result> {
  const events = concurrency === 1 ? EVENTS_C1 : EVENTS;
  const total = WARMUP + events;
  const n = ++serial;
  const stream = `BS${n}`;
  const subject = `bs${n}.events`;
  // The duplicates row reuses the new-keys row's function name: its keys are all recorded already.
  const fn = row.startsWith("noop + idempotency") ? `idem-c${concurrency}-r${round}` : `bs${n}`;
  await env.jsm.streams.add({ name: stream, subjects: [`bs${n}.>`], storage: StorageType.Memory });
  await publish(env.js, subject, total);
  const label = `round ${round} c${concurrency} ${row}`;
  progress(label);
  let child: ChildProcess;
  let log: string;
  if (row === "hand-written") {
    await env.jsm.consumers.add(stream, {
      durable_name: fn,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(35_000),
      max_ack_pending: Math.max(1000, concurrency),
      filter_subject: subject,
    });
    ({ child, log } = spawnLogged(label, [path.join(PROJECT, "bin", "handwritten.mjs")], {
      PATH: process.env.PATH ?? "",
      NODE_ENV: "production",
      NATS_URL: env.url,
      BENCH_MODE: "noop",
      BENCH_STREAM: stream,
      BENCH_DURABLE: fn,
      BENCH_INFLIGHT: String(concurrency),
    }));
  } else {
    writeFileSync(path.join(PROJECT, "functions.yaml"), yamlOf(row, fn, stream, subject, concurrency));
    ({ child, log } = spawnLogged(label, [JETFN_BIN, "start"], {
      PATH: process.env.PATH ?? "",
      NODE_ENV: "production",
      NATS_URL: env.url,
      JETFN_HTTP_HOST: "127.0.0.1",
      JETFN_HTTP_PORT: String(await freePort()),
      JETFN_SHUTDOWN_TIMEOUT: "5s",
      LOG_LEVEL: "warn",
    }));
  }
  const durable = row === "hand-written" ? fn : fn.replaceAll("-", "_");
  // This script's own requests in the timed window are taken out of the server's count.
  let polls = 0;
  const info = () => {
    polls++;
    return env.jsm.consumers.info(stream, durable).catch(() => undefined);
  };
  const failed = (why: string) => new Error(`${label}: ${why}\n${readFileSync(log, "utf8").split("\n").slice(-20).join("\n")}`);
  try {
    // The clock starts once the warm-up is acked: start-up, provisioning and binding are not timed.
    for (let waited = performance.now(); ; await sleep(5)) {
      if (child.exitCode !== null) throw failed("exited");
      const seen = await info();
      if (seen && (WARMUP === 0 ? seen.delivered.stream_seq > 0 : seen.ack_floor.stream_seq >= WARMUP)) break;
      if (performance.now() - waited > 120_000) throw failed("the warm-up was not acked in 120 s");
    }
    const t0 = performance.now();
    const [cpu0, server0, msgs0, writes0] = [
      cpuOf(child.pid!) * 1e6,
      cpuOf(env.serverPid) * 1e6,
      await inMsgs(env.monitor),
      await kvWrites(env.jsm),
    ];
    polls = 0;
    let lastFloor = 0;
    let lastMove = performance.now();
    for (;;) {
      const seen = await info();
      if (seen && seen.num_pending === 0 && seen.num_ack_pending === 0 && seen.ack_floor.stream_seq >= total) break;
      if (seen && seen.ack_floor.stream_seq !== lastFloor) {
        lastFloor = seen.ack_floor.stream_seq;
        lastMove = performance.now();
      }
      if (child.exitCode !== null) throw failed("exited");
      if (performance.now() - lastMove > STALL_MS)
        throw failed(`no progress for ${STALL_MS / 1000} s (ack floor ${lastFloor} of ${total})`);
      await sleep(5);
    }
    const seconds = (performance.now() - t0) / 1000;
    const own = polls + 1; // the consumer infos, and the step bucket's info above
    const [cpu1, server1, msgs1, writes1] = [
      cpuOf(child.pid!) * 1e6,
      cpuOf(env.serverPid) * 1e6,
      await inMsgs(env.monitor),
      await kvWrites(env.jsm),
    ];
    return {
      row,
      concurrency,
      events,
      seconds,
      workerCpuUs: (cpu1 - cpu0) / events,
      serverCpuUs: (server1 - server0) / events,
      inMsgs: (msgs1 - msgs0 - own) / events,
      kvWrites: (writes1 - writes0) / events,
    };
  } finally {
    await stop(child);
    await env.jsm.streams.delete(stream);
  }
}

function table(results: Result[]): string[] {
  const lines = [
    "| concurrency | row | events/s | µs/event (wall) | vs hand-written | jetfn CPU µs/event | nats-server CPU µs/event | messages to the server / event | step-bucket writes / event |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const derived: string[] = [];
  for (const concurrency of CONCURRENCIES) {
    const of = (row: Row) => {
      const rows = results.filter((r) => r.row === row && r.concurrency === concurrency);
      const pick = (f: (r: Result) => number) => median(rows.map(f));
      return {
        rate: pick((r) => r.events / r.seconds),
        wallUs: pick((r) => (r.seconds * 1e6) / r.events),
        cpu: pick((r) => r.workerCpuUs),
        server: pick((r) => r.serverCpuUs),
        msgs: pick((r) => r.inMsgs),
        writes: pick((r) => r.kvWrites),
      };
    };
    const base = of("hand-written");
    for (const row of ROWS) {
      const r = of(row);
      lines.push(
        `| ${concurrency} | ${row} | ${fmt(r.rate, 0)} | ${fmt(r.wallUs, 1)} | ${fmt(r.rate / base.rate, 2)} | ${fmt(r.cpu, 1)} | ${fmt(r.server, 1)} | ${fmt(r.msgs, 2)} | ${fmt(r.writes, 2)} |`,
      );
    }
    const [noop, idem, dup, one, two] = [
      of("noop"),
      of("noop + idempotency (new keys)"),
      of("noop + idempotency (duplicates)"),
      of("1 step"),
      of("2 steps"),
    ];
    const step = { wall: two.wallUs - one.wallUs, cpu: two.cpu - one.cpu, server: two.server - one.server, msgs: two.msgs - one.msgs };
    const completion = {
      wall: one.wallUs - noop.wallUs - step.wall,
      cpu: one.cpu - noop.cpu - step.cpu,
      server: one.server - noop.server - step.server,
      msgs: one.msgs - noop.msgs - step.msgs,
    };
    const line = (what: string, d: { wall: number; cpu: number; server: number; msgs: number }) =>
      `| ${concurrency} | ${what} | ${fmt(d.wall, 1)} | ${fmt(d.cpu, 1)} | ${fmt(d.server, 1)} | ${fmt(d.msgs, 2)} |`;
    derived.push(
      line("a step (2 steps − 1 step)", step),
      line("a completion record (1 step − noop − a step)", completion),
      line("idempotency, a new key (its row − noop)", {
        wall: idem.wallUs - noop.wallUs,
        cpu: idem.cpu - noop.cpu,
        server: idem.server - noop.server,
        msgs: idem.msgs - noop.msgs,
      }),
      line("idempotency, a duplicate (its row − noop)", {
        wall: dup.wallUs - noop.wallUs,
        cpu: dup.cpu - noop.cpu,
        server: dup.server - noop.server,
        msgs: dup.msgs - noop.msgs,
      }),
    );
  }
  return [
    ...lines,
    "",
    "| concurrency | cost per event | µs (wall) | jetfn CPU µs | nats-server CPU µs | messages to the server (round trips) |",
    "| ---: | --- | ---: | ---: | ---: | ---: |",
    ...derived,
  ];
}

async function prepare(): Promise<void> {
  rmSync(PROJECT, { recursive: true, force: true });
  mkdirSync(LOG_DIR, { recursive: true });
  cpSync(fileURLToPath(new URL("fixtures/steps", import.meta.url)), path.join(PROJECT, "fns"), { recursive: true });
  await bundleWorkers({ handwritten: fileURLToPath(new URL("workers/handwritten.ts", import.meta.url)) }, path.join(PROJECT, "bin"));
  // Rebuilds the runtime's bundle if runtime/ changed, so no row's start-up does it.
  const help = spawnSync(process.execPath, [JETFN_BIN, "help"], { cwd: PROJECT, stdio: "ignore" });
  if (help.status !== 0) throw new Error(`node bin/jetfn.js help exited with ${help.status}`);
}

await runBenchmark(async () => {
  await prepare();
  const monitorPort = await freePort();
  const server = await startNatsServer({ args: ["-m", String(monitorPort)] });
  try {
    const nc = await connect({ servers: server.url });
    const env = {
      js: jetstream(nc),
      jsm: await jetstreamManager(nc),
      url: server.url,
      monitor: `http://127.0.0.1:${monitorPort}`,
      serverPid: server.pid,
    };
    const results: Result[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const concurrency of CONCURRENCIES) for (const row of ROWS) results.push(await runRow(env, row, concurrency, round));
    }
    const lines = [
      "## Steps, completion records and idempotency: `bench/steps.ts` (issue 19)",
      "",
      ...machineLines(nc.info?.version),
      `- jetfn as \`node bin/jetfn.js start\` (NODE_ENV=production), \`isolation: ${ISOLATION}\`; the hand-written worker as \`node handwritten.mjs\` (noop); ${fmt(EVENTS, 0)} timed events a row (${fmt(EVENTS_C1, 0)} at concurrency 1) after ${fmt(WARMUP, 0)} of warm-up, ${ROUNDS} round(s) (medians)`,
      "",
      ...table(results),
    ];
    await nc.close();
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    await server.stop();
  }
});

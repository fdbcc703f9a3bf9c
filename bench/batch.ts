/**
 * Batches (issue 20): a 2 ms "insert" run once per event against once per batch of 100, in
 * jetfn and in a hand-written nats.js worker, each in its own process: jetfn as users run
 * it, `node bin/jetfn.js start` (NODE_ENV=production), the worker bundled by esbuild and
 * started with plain `node`. Prints markdown on stdout; progress on stderr.
 *
 *   node --import tsx bench/batch.ts          (npm run bench:batch)
 *
 * Environment:
 *   BENCH_BATCH_EVENTS       events drained per run (default 20000)
 *   BENCH_BATCH_ROUNDS       rounds; each runs every row, in an order that alternates (default 2)
 *   BENCH_BATCH_ISOLATION    worker | none: jetfn's isolation (default worker)
 *   BENCH_BATCH_CONCURRENCY  inserts at once: events (one at a time) or batches (default 16)
 *   BENCH_BATCH_INSERT_MS    the insert's duration (default 2)
 *
 * Method: per run, a fresh stream gets the events (about 100 bytes of JSON each) before the
 * consumer's process starts. The clock starts when the consumer first delivered and stops
 * when it reports nothing pending and nothing un-acked. CPU is the consumer process's
 * (utime + stime, /proc, every thread) over that time, per event. The insert is a timer:
 * a bulk insert of 100 rows is taken to cost what one row's does, which is the case
 * batches are for (a round trip dominates). Batches: maxSize 100, maxWait 100 ms.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";
import { freePort } from "../test/support/free-port.ts";
import { startNatsServer } from "../test/support/nats-server.ts";
import { bundleWorkers, choiceEnv, fmt, intEnv, machineLines, median, runBenchmark, timeDrain } from "./env.ts";

const EVENTS = intEnv("BENCH_BATCH_EVENTS", 20_000);
const ROUNDS = intEnv("BENCH_BATCH_ROUNDS", 2);
const ISOLATION = choiceEnv("BENCH_BATCH_ISOLATION", ["worker", "none"] as const, "worker");
const CONCURRENCY = intEnv("BENCH_BATCH_CONCURRENCY", 16);
const INSERT_MS = intEnv("BENCH_BATCH_INSERT_MS", 2, 0);
const SIZE = 100;
const WAIT_MS = 100;
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const PROJECT = path.join(REPO_ROOT, ".jetfn", "bench-batch");
const BIN_DIR = path.join(PROJECT, "bin");
const ROWS = ["jetfn-single", "jetfn-batch", "hand-single", "hand-batch"] as const;
type Row = (typeof ROWS)[number];

function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** The jetfn project of a run: one function on `stream`, one event or one batch per insert. */
function project(row: Row, stream: string): string {
  const dir = path.join(PROJECT, `${row}-${stream}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  cpSync(path.join(REPO_ROOT, "bench", "fixtures", "batch"), path.join(dir, "functions"), { recursive: true });
  const handler = row === "jetfn-batch" ? "insert-batch.ts" : "insert.ts";
  const batch = row === "jetfn-batch" ? `\n    batch: { maxSize: ${SIZE}, maxWait: ${WAIT_MS}ms }` : "";
  writeFileSync(
    path.join(dir, "functions.yaml"),
    `functions:
  - name: insert
    handler: functions/${handler}
    stream: ${stream}
    subjects: ["${stream.toLowerCase()}.in"]
    concurrency: ${CONCURRENCY}
    isolation: ${ISOLATION}
    config: { insertMs: ${INSERT_MS} }${batch}
`,
  );
  return dir;
}

interface Run {
  readonly row: Row;
  readonly perSecond: number;
  readonly cpuUsPerEvent: number;
}

async function main(): Promise<void> {
  mkdirSync(BIN_DIR, { recursive: true });
  await bundleWorkers({ "batch-worker": path.join(REPO_ROOT, "bench", "workers", "batch-worker.ts") }, BIN_DIR);
  // Rebuilds the runtime's bundle if runtime/ changed, so no run's start-up does it.
  const help = spawnSync(process.execPath, [path.join(REPO_ROOT, "bin", "jetfn.js"), "help"], { stdio: "ignore" });
  if (help.status !== 0) throw new Error(`node bin/jetfn.js help exited with ${help.status}`);

  const server = await startNatsServer();
  const nc = await connect({ servers: server.url });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const runs: Run[] = [];
  let n = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? ROWS : [...ROWS].reverse();
    for (const row of order) {
      const stream = `BATCH${n++}`;
      const subject = `${stream.toLowerCase()}.in`;
      await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File });
      for (let i = 0; i < EVENTS; i += 1000) {
        await Promise.all(
          Array.from({ length: Math.min(1000, EVENTS - i) }, (_, k) =>
            js.publish(subject, JSON.stringify({ id: i + k, customer: `c-${(i + k) % 97}`, amount: 42.5 })),
          ),
        );
      }
      const durable = "jetfn_insert";
      let child: ChildProcess;
      if (row.startsWith("jetfn")) {
        const port = await freePort();
        child = spawn(process.execPath, [path.join(REPO_ROOT, "bin", "jetfn.js"), "start"], {
          cwd: project(row, stream),
          env: { ...process.env, NODE_ENV: "production", NATS_URL: server.url, JETFN_HTTP_PORT: String(port), LOG_LEVEL: "warn" },
          stdio: ["ignore", "ignore", "inherit"],
        });
      } else {
        await jsm.consumers.add(stream, {
          durable_name: durable,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ack_wait: nanos(35_000),
          max_ack_pending: Math.max(1000, (CONCURRENCY + 1) * SIZE),
          filter_subject: subject,
        });
        child = spawn(process.execPath, [path.join(BIN_DIR, "batch-worker.mjs")], {
          env: {
            PATH: process.env.PATH ?? "",
            NODE_ENV: "production",
            NATS_URL: server.url,
            BENCH_MODE: row === "hand-batch" ? "batch" : "single",
            BENCH_STREAM: stream,
            BENCH_DURABLE: durable,
            BENCH_CONCURRENCY: String(CONCURRENCY),
            BENCH_INSERT_MS: String(INSERT_MS),
            BENCH_BATCH_SIZE: String(SIZE),
            BENCH_BATCH_WAIT_MS: String(WAIT_MS),
          },
          stdio: ["ignore", "ignore", "inherit"],
        });
      }
      try {
        const { perSecond, cpuUsPerEvent, redelivered } = await timeDrain(jsm, stream, durable, child.pid!, EVENTS, 5);
        if (redelivered > 0) progress(`  ${row}: ${redelivered} redelivered`);
        const run = { row, perSecond, cpuUsPerEvent };
        runs.push(run);
        progress(`round ${round + 1} ${row}: ${fmt(run.perSecond, 0)} events/s, ${fmt(run.cpuUsPerEvent, 1)} µs CPU/event`);
      } finally {
        child.kill("SIGTERM");
        await new Promise((resolve) => child.once("exit", resolve));
      }
      await jsm.streams.delete(stream);
    }
  }
  const version = nc.info?.version;
  await nc.close();
  await server.stop();

  const of = (row: Row) => runs.filter((run) => run.row === row);
  const rate = (row: Row) => median(of(row).map((run) => run.perSecond));
  const cpu = (row: Row) => median(of(row).map((run) => run.cpuUsPerEvent));
  console.log("## Batches: `bench/batch.ts`\n");
  for (const line of machineLines(version)) console.log(line);
  console.log(
    `- ${fmt(EVENTS, 0)} events per run, a ${INSERT_MS} ms insert per event or per batch of ${SIZE} (maxWait ${WAIT_MS} ms), ` +
      `concurrency ${CONCURRENCY}, jetfn isolation: ${ISOLATION}, ${ROUNDS} rounds\n`,
  );
  console.log("| row | events/s (each round) | median | CPU µs/event (median) |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const row of ROWS) {
    const each = of(row)
      .map((run) => fmt(run.perSecond, 0))
      .join(", ");
    console.log(`| ${row} | ${each} | ${fmt(rate(row), 0)} | ${fmt(cpu(row), 1)} |`);
  }
  console.log(
    `\njetfn batch ÷ jetfn one at a time: ${fmt(rate("jetfn-batch") / rate("jetfn-single"), 1)}× (events/s); ` +
      `jetfn ÷ hand-written: ${fmt(rate("jetfn-batch") / rate("hand-batch"), 2)} (batches), ${fmt(rate("jetfn-single") / rate("hand-single"), 2)} (one at a time)`,
  );
}

await runBenchmark(main);

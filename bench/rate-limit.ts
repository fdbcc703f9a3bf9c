/**
 * Rate limits (issue 20): what a fleet-wide `rateLimit:` costs a function running below its
 * limit, against the same function without one. jetfn as users run it: `node bin/jetfn.js
 * start` in its own process (NODE_ENV=production), against a private nats-server this
 * script starts. Prints markdown on stdout; progress on stderr.
 *
 *   node --import tsx bench/rate-limit.ts          (npm run bench:rate-limit)
 *
 * Environment:
 *   BENCH_RL_EVENTS   events drained per run (default 50000)
 *   BENCH_RL_ROUNDS   rounds; each runs both functions, alternating which goes first (default 2)
 *   BENCH_RL_ISOLATION  none | worker (default none)
 *
 * Method: per run, a fresh stream gets BENCH_RL_EVENTS events (1 KB JSON) before a jetfn
 * process starts with one no-op function (concurrency 64) bound to it: `plain` without a
 * rate limit, `limited` with `rateLimit: { limit: 1000000, period: 1s, burst: 1000 }`, far
 * above what the process can run (so it never waits: what is measured is the permits'
 * cost, a compare-and-set on `JETFN_RATE_LIMITS` per pull, and pulling one batch at a time).
 * The clock starts when the consumer first delivered and stops when it reports nothing
 * pending and nothing un-acked. CPU is the jetfn process's (utime + stime, /proc) over that
 * time, per event.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { freePort } from "../test/support/free-port.ts";
import { startNatsServer } from "../test/support/nats-server.ts";
import { choiceEnv, fmt, intEnv, machineLines, median, runBenchmark, timeDrain } from "./env.ts";

const EVENTS = intEnv("BENCH_RL_EVENTS", 50_000);
const ROUNDS = intEnv("BENCH_RL_ROUNDS", 2);
const ISOLATION = choiceEnv("BENCH_RL_ISOLATION", ["none", "worker"] as const, "none");
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const PROJECT = path.join(REPO_ROOT, ".jetfn", "bench-rate-limit");
const VARIANTS = ["plain", "limited"] as const;
type Variant = (typeof VARIANTS)[number];

function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

function project(variant: Variant, stream: string): string {
  const dir = path.join(PROJECT, `${variant}-${stream}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(path.join(dir, "functions"), { recursive: true });
  writeFileSync(
    path.join(dir, "functions", "noop.ts"),
    'import { defineFunction } from "jetfn";\nexport default defineFunction({ async handler() {} });\n',
  );
  const limit = variant === "limited" ? "\n    rateLimit: { limit: 1000000, period: 1s, burst: 1000 }" : "";
  writeFileSync(
    path.join(dir, "functions.yaml"),
    `functions:
  - name: noop
    handler: functions/noop.ts
    stream: ${stream}
    subjects: ["${stream.toLowerCase()}.in"]
    concurrency: 64
    isolation: ${ISOLATION}${limit}
`,
  );
  return dir;
}

interface Run {
  readonly variant: Variant;
  readonly perSecond: number;
  readonly cpuUsPerEvent: number;
}

async function main(): Promise<void> {
  const server = await startNatsServer();
  const nc = await connect({ servers: server.url });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const body = JSON.stringify({ pad: "x".repeat(1000) });
  const runs: Run[] = [];
  let n = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
    for (const variant of order) {
      const stream = `RL${n++}`;
      await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.in`], storage: StorageType.File });
      for (let i = 0; i < EVENTS; i += 1000) {
        await Promise.all(Array.from({ length: Math.min(1000, EVENTS - i) }, () => js.publish(`${stream.toLowerCase()}.in`, body)));
      }
      const dir = project(variant, stream);
      const port = await freePort();
      const child: ChildProcess = spawn(process.execPath, [path.join(REPO_ROOT, "bin", "jetfn.js"), "start"], {
        cwd: dir,
        env: { ...process.env, NODE_ENV: "production", NATS_URL: server.url, JETFN_HTTP_PORT: String(port), LOG_LEVEL: "warn" },
        stdio: ["ignore", "ignore", "inherit"],
      });
      try {
        const durable = "jetfn_noop";
        const { perSecond, cpuUsPerEvent } = await timeDrain(jsm, stream, durable, child.pid!, EVENTS);
        const run = { variant, perSecond, cpuUsPerEvent };
        runs.push(run);
        progress(`round ${round + 1} ${variant}: ${fmt(run.perSecond, 0)} events/s, ${fmt(run.cpuUsPerEvent, 1)} µs CPU/event`);
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

  const of = (variant: Variant) => runs.filter((run) => run.variant === variant);
  const rate = (variant: Variant) => median(of(variant).map((run) => run.perSecond));
  const cpu = (variant: Variant) => median(of(variant).map((run) => run.cpuUsPerEvent));
  console.log(`## Rate limit below its limit: \`bench/rate-limit.ts\`\n`);
  for (const line of machineLines(version)) console.log(line);
  console.log(`- ${fmt(EVENTS, 0)} no-op events of 1 KB per run, isolation: ${ISOLATION}, concurrency 64, ${ROUNDS} rounds\n`);
  console.log("| function | events/s (each round) | median | CPU µs/event (median) |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const variant of VARIANTS) {
    const each = of(variant)
      .map((run) => fmt(run.perSecond, 0))
      .join(", ");
    console.log(`| ${variant} | ${each} | ${fmt(rate(variant), 0)} | ${fmt(cpu(variant), 1)} |`);
  }
  console.log(
    `\nlimited ÷ plain: ${fmt(rate("limited") / rate("plain"), 2)} (throughput), ${fmt(cpu("limited") / cpu("plain"), 2)} (CPU per event)`,
  );
}

await runBenchmark(main);

/** Helpers the benchmark scripts share: their settings, the CPU they read, and their report's numbers. */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { type BuildOptions, build } from "esbuild";

/** An integer environment variable of a benchmark, at least `min`; a bad value exits 2. */
export function intEnv(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    console.error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** `value` with thousands separators and `digits` decimals. */
export function fmt(value: number, digits: number): string {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** One of `choices` from an environment variable (case-insensitive); a bad value exits 2. */
export function choiceEnv<T extends string>(name: string, choices: readonly T[], fallback: T): T {
  const value = (process.env[name] ?? fallback).toLowerCase();
  if (!(choices as readonly string[]).includes(value)) {
    console.error(`${name} must be ${choices.join(" or ")}, got ${JSON.stringify(process.env[name])}`);
    process.exit(2);
  }
  return value as T;
}

/** A comma list from an environment variable, trimmed, empty entries dropped. */
export function listOf(name: string): string[] {
  return (process.env[name] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Runs a benchmark's main and exits: 0 when it finished, 1 (with the error) when it threw. */
export async function runBenchmark(main: () => Promise<void>): Promise<never> {
  try {
    await main();
    process.exit(0);
  } catch (error) {
    console.error(error);
    process.exit(1);
  }
}

/** A report's first lines: when, with which Node and nats-server, on what machine. */
export function machineLines(serverVersion: string | undefined, where = " (same host)"): string[] {
  const cpus = os.cpus();
  return [
    `- date: ${new Date().toISOString()}`,
    `- node ${process.version}, nats-server ${serverVersion ?? "unknown"}${where}, ${os.platform()} ${os.arch()}`,
    `- CPU: ${cpus[0]?.model ?? "unknown"} (${cpus.length} logical cores), ${fmt(os.totalmem() / 2 ** 30, 1)} GiB RAM`,
  ];
}

/** Clock ticks a second, as /proc counts CPU time. */
export const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;

/** utime + stime of a process (every thread), in seconds, from /proc/<pid>/stat. */
export function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** What {@link timeDrain} measured of one drained stream. */
export interface Drained {
  readonly perSecond: number;
  readonly cpuUsPerEvent: number;
  readonly redelivered: number;
}

/**
 * Times a consumer draining `events` already in its stream: from its first delivery until
 * it reports nothing pending and nothing un-acked, with the CPU of the process `pid` meanwhile.
 */
export async function timeDrain(
  jsm: JetStreamManager,
  stream: string,
  durable: string,
  pid: number,
  events: number,
  pollMs = 20,
): Promise<Drained> {
  let started = 0;
  let cpuAtStart = 0;
  for (;;) {
    const info = await jsm.consumers.info(stream, durable).catch(() => undefined);
    if (info && started === 0 && info.delivered.stream_seq > 0) {
      started = performance.now();
      cpuAtStart = cpuOf(pid);
    }
    if (info && started > 0 && info.num_pending === 0 && info.num_ack_pending === 0) {
      const seconds = (performance.now() - started) / 1000;
      return { perSecond: events / seconds, cpuUsPerEvent: ((cpuOf(pid) - cpuAtStart) * 1e6) / events, redelivered: info.num_redelivered };
    }
    await sleep(pollMs);
  }
}

/** esbuild's options for code the benchmarks run with plain `node`: one ESM file, packages left to node_modules. */
export const NODE_BUNDLE = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  logLevel: "error",
} as const satisfies BuildOptions;

/** Bundles the benchmark's own workers (`name` to entry file) into `outdir/<name>.mjs`, to run with plain `node`. */
export async function bundleWorkers(entryPoints: Record<string, string>, outdir: string): Promise<void> {
  await build({
    ...NODE_BUNDLE,
    entryPoints,
    outdir,
    outExtension: { ".js": ".mjs" },
  });
}

/** What {@link recordLatencies} has seen so far. */
export interface Latencies {
  /** Per event index: output seen − published, ms (one clock); NaN until seen. */
  readonly values: Float64Array;
  /** Events whose output was seen. */
  readonly seen: number;
  /** When the first output was seen (performance.now()), 0 before. */
  readonly firstSeenAt: number;
  readonly sub: Subscription;
}

/**
 * Subscribes to `subject`, where echo handlers publish `{"t":<publish ms>,"k":<index>,...`,
 * and records each of the `total` events' latency once, reading only the payload's head.
 */
export function recordLatencies(nc: NatsConnection, subject: string, total: number): Latencies {
  const values = new Float64Array(total).fill(Number.NaN);
  const decoder = new TextDecoder();
  const state = { values, seen: 0, firstSeenAt: 0, sub: undefined as unknown as Subscription };
  state.sub = nc.subscribe(subject, {
    callback: (error, msg) => {
      if (error) return;
      const at = performance.now();
      const head = /^\{"t":([0-9.e+-]+),"k":(\d+)/.exec(decoder.decode(msg.data.subarray(0, 64)));
      if (!head) return;
      const k = Number(head[2]);
      if (k < total && Number.isNaN(values[k]!)) {
        values[k] = at - Number(head[1]);
        if (state.seen++ === 0) state.firstSeenAt = at;
      }
    },
  });
  return state;
}

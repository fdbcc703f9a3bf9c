/**
 * Delayed events (issue 18): how fast they are scheduled, how fast a mover delivers a burst
 * that falls due at once, and how late they arrive at a steady rate. Against a private
 * nats-server this script starts (file storage); the mover runs in this process on a
 * connection of its own, as a host runs it. Prints markdown on stdout; progress on stderr.
 *
 *   node --import tsx bench/delayed.ts
 *
 * Environment:
 *   BENCH_DELAYED_EVENTS   events scheduled, then falling due at once (default 100000)
 *   BENCH_DELAYED_RATE     events due per second in the lateness run (default 1000)
 *   BENCH_DELAYED_SECONDS  how long the lateness run schedules them (default 30)
 *   BENCH_DELAYED_DELAY    the delay of each event in the lateness run, ms (default 3000)
 *   BENCH_DELAYED_NO_ASYNC_TRACES=1  the mover's connection made with `noAsyncTraces` (the
 *                          client then captures no stack per request: less CPU per event)
 *
 * Method:
 * 1. **Publish**: BENCH_DELAYED_EVENTS events (100-byte body, a `traceparent`) scheduled with
 *    `publishDelayed`, 1,000 in flight at a time, all due at one moment T far enough ahead
 *    that scheduling ends before it (no mover runs meanwhile). Rate = events / wall time.
 * 2. **Burst**: a mover starts before T. From T, the clock runs until the target stream
 *    (file) holds every event (stream info polled every 20 ms). Rate = events / that time;
 *    JETFN_DELAYED must be empty afterwards, and the target hold each event once.
 * 3. **Lateness**: a producer schedules BENCH_DELAYED_RATE events a second, each due
 *    BENCH_DELAYED_DELAY ms after it is sent, for BENCH_DELAYED_SECONDS; so the mover reads
 *    seconds being written to while it delivers. Lateness of each event = the time the target
 *    stream stored it less its due time (both this machine's clock); p50, p99, max.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { DelayedMover } from "../runtime/nats/delayed-mover.ts";
import { ensureDelayedStream, publishDelayed } from "../runtime/nats/delayed-stream.ts";
import { readStream } from "../test/support/delayed.ts";
import { startNatsServer } from "../test/support/nats-server.ts";
import { fmt, intEnv, machineLines, runBenchmark } from "./env.ts";

const EVENTS = intEnv("BENCH_DELAYED_EVENTS", 100_000);
const RATE = intEnv("BENCH_DELAYED_RATE", 1000);
const SECONDS = intEnv("BENCH_DELAYED_SECONDS", 30);
const DELAY_MS = intEnv("BENCH_DELAYED_DELAY", 3000);
const NO_ASYNC_TRACES = process.env.BENCH_DELAYED_NO_ASYNC_TRACES === "1";
const IN_FLIGHT = 1000;
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

await runBenchmark(async () => {
  const server = await startNatsServer();
  try {
    const nc = await connect({ servers: server.url });
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    await ensureDelayedStream(jsm);
    await jsm.streams.add({ name: "BURST", subjects: ["burst.>"], storage: StorageType.File });
    await jsm.streams.add({ name: "STEADY", subjects: ["steady.>"], storage: StorageType.File });
    const body = new Uint8Array(100).fill(120);
    const lines = [
      "## Delayed events: `bench/delayed.ts` (issue 18)",
      "",
      ...machineLines(nc.info?.version),
      `- the mover's connection: ${NO_ASYNC_TRACES ? "noAsyncTraces" : "default options (a stack captured per request)"}`,
      "",
    ];

    // 1. Publish.
    progress(`scheduling ${EVENTS} events`);
    const dueAt = Date.now() + 10_000 + EVENTS / 5; // after scheduling ends, at about 5,000 a second at worst
    let t = performance.now();
    let cpu = process.cpuUsage();
    for (let i = 0; i < EVENTS; i += IN_FLIGHT) {
      await Promise.all(
        Array.from({ length: Math.min(IN_FLIGHT, EVENTS - i) }, () =>
          publishDelayed(js, { target: "burst.x", data: body, headers: { traceparent: TRACEPARENT }, deliverAt: dueAt }),
        ),
      );
    }
    const publishMs = performance.now() - t;
    const publishCpu = cpuMs(cpu);
    if (Date.now() >= dueAt) throw new Error("scheduling took longer than planned: the burst began before it ended");

    // 2. Burst.
    const moverNc = await connect({ servers: server.url, noAsyncTraces: NO_ASYNC_TRACES });
    let lateness: number[] = [];
    const mover = new DelayedMover({
      nc: moverNc,
      js: jetstream(moverNc),
      jsm: await jetstreamManager(moverNc),
      hostId: "bench",
      log: pino({ level: "warn" }),
      observer: { delivered: (ms) => lateness.push(ms) },
    });
    await mover.start();
    progress(`waiting for the burst at ${new Date(dueAt).toISOString()}`);
    while (Date.now() < dueAt) await sleep(5);
    t = performance.now();
    cpu = process.cpuUsage();
    while ((await jsm.streams.info("BURST")).state.messages < EVENTS) await sleep(20);
    const burstMs = performance.now() - t;
    const burstCpu = cpuMs(cpu);
    progress(`burst delivered in ${fmt(burstMs, 0)} ms`);
    await sleep(500);
    const left = (await jsm.streams.info("JETFN_DELAYED")).state.messages;
    const arrived = await readStream(js, "BURST");
    if (arrived.length !== EVENTS || left !== 0) throw new Error(`burst: ${arrived.length} arrived, ${left} left in JETFN_DELAYED`);
    const burstLateness = lateness.sort((a, b) => a - b);
    lateness = [];

    // 3. Lateness at a steady rate.
    const total = RATE * SECONDS;
    progress(`scheduling ${RATE}/s for ${SECONDS} s, each due ${DELAY_MS} ms later`);
    const start = Date.now();
    const sends: Promise<string>[] = [];
    for (let i = 0; i < total; i++) {
      const at = start + Math.floor((i * 1000) / RATE);
      if (at > Date.now()) await sleep(at - Date.now());
      const due = Date.now() + DELAY_MS;
      sends.push(publishDelayed(js, { target: "steady.x", data: new TextEncoder().encode(String(due)), deliverAt: due }));
      if (sends.length >= IN_FLIGHT) await Promise.all(sends.splice(0));
    }
    await Promise.all(sends);
    while ((await jsm.streams.info("STEADY")).state.messages < total) await sleep(100);
    const steady = (await readStream(js, "STEADY")).map((a) => a.at - Number(a.data)).sort((a, b) => a - b);
    const stats = mover.stats();
    await mover.stop();
    await moverNc.close();
    await nc.close();

    lines.push(
      "| measure | figure |",
      "| --- | ---: |",
      `| scheduling (\`publishDelayed\`, ${IN_FLIGHT} in flight), ${fmt(EVENTS, 0)} events | ${fmt(EVENTS / (publishMs / 1000), 0)} events/s (${fmt(publishMs / 1000, 2)} s; ${fmt((publishCpu * 1000) / EVENTS, 1)} CPU µs/event in this process) |`,
      `| delivery of ${fmt(EVENTS, 0)} falling due at once, until the target holds all | ${fmt(EVENTS / (burstMs / 1000), 0)} events/s (${fmt(burstMs / 1000, 2)} s; ${fmt((burstCpu * 1000) / EVENTS, 1)} CPU µs/event in this process) |`,
      `| lateness in that burst (mover's PubAck), p50 / p99 / max | ${fmt(percentile(burstLateness, 50), 0)} / ${fmt(percentile(burstLateness, 99), 0)} / ${fmt(burstLateness[burstLateness.length - 1] ?? Number.NaN, 0)} ms |`,
      `| lateness at ${fmt(RATE, 0)} due per second for ${SECONDS} s (target stream's time less due time), p50 / p99 / max | ${fmt(percentile(steady, 50), 0)} / ${fmt(percentile(steady, 99), 0)} / ${fmt(steady[steady.length - 1] ?? Number.NaN, 0)} ms (${fmt(steady.length, 0)} events, earliest ${fmt(steady[0] ?? Number.NaN, 0)} ms) |`,
      "",
      `Mover: ${fmt(stats.delivered, 0)} delivered, ${stats.duplicates} duplicates, ${stats.failures} failures, ${stats.cancelled} cancelled.`,
    );
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    await server.stop();
  }
});

/**
 * Forwarded ordering (two partitions or more): the function's stream is read once, by the
 * host holding the forwarder's lease, and each event is forwarded to its partition's subject
 * in `JETFN_ORDERED_<function>`. Checked on a real nats-server: what the broker delivers per
 * event, what the handler sees of its original, and the order kept when the forwarder's copies
 * fail or its host dies.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DeliverPolicy, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { nanos, headers as natsHeaders } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { orderedStream, orderedSubject } from "../../runtime/contracts/ordered.ts";
import { killCliHosts, startCliHost } from "../support/cli.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
afterEach(killCliHosts);

/** Each test's own function (and so its own `JETFN_ORDERED_<function>`): nothing one leaves behind reaches another. */
const functionOf = (stream: string) => `fwd-${stream.toLowerCase()}`;
const durableOf = (stream: string) => `jetfn_fwd_${stream.toLowerCase()}`;

interface Run {
  key?: string;
  i: number;
  host: number;
  start: number;
  end: number;
  subject: string;
  seq: number;
  msgId?: string;
  trace?: string;
}

function project(stream: string, partitions: number): string {
  const lower = stream.toLowerCase();
  return makeProject({
    "functions.yaml": `
streams:
  - { name: ${stream}, subjects: ["${lower}.>"], storage: memory }
  - { name: REC_${stream}, subjects: ["rec.${lower}"], storage: memory }
functions:
  - name: ${functionOf(stream)}
    handler: fns/rec.ts
    stream: ${stream}
    subjects: ["${lower}.entries.*"]
    concurrency: 16
    ordering: { key: account, partitions: ${partitions}, leaseTtl: 2s }
    config: { record: rec.${lower} }
`,
    "fns/rec.ts": `
import { defineFunction } from "jetfn";
export default defineFunction({
  async handler(entry: { account?: string; i: number; ms?: number }, ctx) {
    const start = Date.now();
    await new Promise((resolve) => setTimeout(resolve, entry.ms ?? 1));
    await ctx.publish(String(ctx.config.record), {
      key: entry.account, i: entry.i, host: process.pid, start, end: Date.now(),
      subject: ctx.subject, seq: ctx.seq, msgId: ctx.headers["Nats-Msg-Id"], trace: ctx.headers["X-Trace"],
    });
  },
});
`,
  });
}

async function publishEntries(stream: string, keys: number, perKey: number, extra: object = {}): Promise<void> {
  const lower = stream.toLowerCase();
  for (let i = 0; i < perKey; i++) {
    await Promise.all(
      Array.from({ length: keys }, (_, k) =>
        nats.js.publish(`${lower}.entries.${k}`, JSON.stringify({ account: `acct-${k}`, i, ...extra }), {
          msgID: `entry-${k}-${i}`,
          headers: traceHeader(`t-${k}-${i}`),
        }),
      ),
    );
  }
}

function traceHeader(value: string) {
  const headers = natsHeaders();
  headers.set("X-Trace", value);
  return headers;
}

async function runs(stream: string): Promise<Run[]> {
  const info = await nats.jsm.streams.info(`REC_${stream}`);
  const found: Run[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const message = await nats.jsm.streams.getMessage(`REC_${stream}`, { seq });
    if (message) found.push(message.json<Run>());
  }
  return found;
}

/** Every entry ran, and each key's entries started in order, each after the one before ended (re-runs allowed). */
function expectKeyOrder(all: Run[], keys: number, perKey: number): void {
  for (let k = 0; k < keys; k++) {
    const list = all.filter((run) => run.key === `acct-${k}`).sort((a, b) => a.start - b.start);
    for (let i = 0; i < perKey; i++) {
      const first = list.find((run) => run.i === i);
      expect(first, `acct-${k}: entry ${i} never ran`).toBeDefined();
      const next = list.find((run) => run.i === i + 1);
      if (next) expect(next.start, `acct-${k}: entry ${i + 1} started before entry ${i} ended`).toBeGreaterThanOrEqual(first!.end);
    }
  }
}

/** `/functions`' view of this host's forwarder. */
async function forwarderStatus(base: string, fn: string): Promise<{ forwarding: boolean; forwarded: number; resyncs: number }> {
  const list = (await (await fetch(`${base}/functions`)).json()) as {
    name: string;
    ordering: { forwarder: { forwarding: boolean; forwarded: number; resyncs: number } };
  }[];
  return list.find((f) => f.name === fn)!.ordering.forwarder;
}

/** Waits until the function ran `count` times (re-runs count). */
async function ranTimes(stream: string, count: number): Promise<void> {
  await waitFor(async () => (await runs(stream)).length >= count, { timeout: 30_000, interval: 200, message: `${count} runs` });
}

async function delivered(stream: string, durable: string): Promise<number> {
  return (await nats.jsm.consumers.info(stream, durable)).delivered.consumer_seq;
}

describe("an ordered function with 8 partitions", () => {
  it("is delivered each event twice (once to the forwarder, once to its partition), and its handler sees the original", async () => {
    const { host } = await startHost(project("FA", 8), nats.server.url);
    try {
      await publishEntries("FA", 20, 20);
      await ranTimes("FA", 400);
      const all = await runs("FA");
      expect(all).toHaveLength(400);
      expectKeyOrder(all, 20, 20);
      // The handler sees the original's subject, sequence and headers (its Nats-Msg-Id too).
      const info = await nats.jsm.streams.info("FA");
      for (const run of all) {
        const k = run.key!.slice("acct-".length);
        expect(run.subject).toBe(`fa.entries.${k}`);
        expect(run.msgId).toBe(`entry-${k}-${run.i}`);
        expect(run.trace).toBe(`t-${k}-${run.i}`);
        expect(run.seq).toBeGreaterThanOrEqual(info.state.first_seq);
        expect(run.seq).toBeLessThanOrEqual(info.state.last_seq);
      }
      expect(new Set(all.map((run) => run.seq)).size).toBe(400);
      // The broker's deliveries: 400 to the forwarder, 400 over all partitions together.
      expect(await delivered("FA", durableOf("FA"))).toBe(400);
      const perPartition = await Promise.all(
        Array.from({ length: 8 }, (_, p) => delivered(orderedStream(functionOf("FA")), `${durableOf("FA")}_p${p}`)),
      );
      expect(perPartition.reduce((a, b) => a + b, 0)).toBe(400);
      expect(perPartition.filter((n) => n > 0).length).toBeGreaterThan(1);
      // Every copy was acked by its partition: the work queue is empty.
      await waitFor(async () => (await nats.jsm.streams.info(orderedStream(functionOf("FA")))).state.messages === 0, {
        message: "every copy acked",
      });
    } finally {
      await host.shutdown();
    }
  });

  it("resyncs when a copy lands out of its chain (another writer), and loses or reorders nothing", async () => {
    const { host, baseUrl } = await startHost(project("FB", 8), nats.server.url);
    try {
      const publishing = publishEntries("FB", 10, 60);
      // Writes of another publisher in the forwarded stream break the forwarder's chain of
      // expected sequences, as a forwarder that stalled and woke would.
      for (let n = 0; n < 5; n++) {
        await new Promise((resolve) => setTimeout(resolve, 60));
        await nats.js.publish(orderedSubject(functionOf("FB"), 0), JSON.stringify({ i: 1000 + n }));
      }
      await publishing;
      await waitFor(async () => (await runs("FB")).filter((run) => run.key !== undefined).length >= 600, {
        timeout: 30_000,
        interval: 200,
        message: "600 entries ran",
      });
      const all = (await runs("FB")).filter((run) => run.key !== undefined);
      expectKeyOrder(all, 10, 60);
      expect(new Set(all.map((run) => `${run.key}:${run.i}`)).size).toBe(600);
      expect((await forwarderStatus(baseUrl, functionOf("FB"))).resyncs).toBeGreaterThan(0);
      // Each event was copied once (a copy forwarded again is found a duplicate): 600 copies and the 5 other writes.
      expect((await nats.jsm.streams.info(orderedStream(functionOf("FB")))).state.last_seq).toBe(605);
    } finally {
      await host.shutdown();
    }
  });
});

describe("an event that comes to the forwarder again", () => {
  it("is acked, not forwarded again, when its copy landed, however long ago (a rewind to an old ack floor, a lost ack)", async () => {
    const fn = functionOf("FD");
    const copies = orderedStream(fn);
    // The copies' stream made beforehand with a duplicate window of 1 s (the forwarder keeps a
    // stream it finds): past it, the server no longer finds a copy forwarded again a duplicate.
    await nats.jsm.streams.add({
      name: copies,
      subjects: [`jetfn.ordered.${fn}.*`],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.Memory,
      duplicate_window: nanos(1000),
    });
    const { host } = await startHost(project("FD", 8), nats.server.url);
    try {
      await publishEntries("FD", 10, 5);
      await ranTimes("FD", 50);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      // The forwarder's durable made anew from the stream's start: all 50 originals come again.
      const durable = durableOf("FD");
      const { config } = await nats.jsm.consumers.info("FD", durable);
      await nats.jsm.consumers.delete("FD", durable);
      await nats.jsm.consumers.add("FD", { ...config, deliver_policy: DeliverPolicy.All });
      await waitFor(async () => (await nats.jsm.consumers.info("FD", durable)).delivered.stream_seq === 50, {
        message: "the 50 originals delivered again",
      });
      await waitFor(async () => (await nats.jsm.consumers.info("FD", durable)).num_ack_pending === 0, { message: "and acked" });
      expect((await nats.jsm.streams.info(copies)).state.last_seq).toBe(50);
      expect(await runs("FD")).toHaveLength(50);
    } finally {
      await host.shutdown();
    }
  });
});

describe("events the forwarder's durable counts as acked that were never forwarded", () => {
  it("are forwarded when a forwarder binds: it rewinds to where its copies landed, not to what the server says was acked", async () => {
    const dir = project("FG", 4);
    const first = await startHost(dir, nats.server.url);
    await publishEntries("FG", 5, 4);
    await ranTimes("FG", 20);
    // Long enough for the forwarder to record how far its copies landed (every second).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await first.host.shutdown();
    // 20 more, delivered to the durable and acked there without a forwarder: what a consumer
    // leader that lost its record of what is unacked (nats-server 2.9, a node killed) shows.
    for (let i = 4; i < 8; i++) {
      for (let k = 0; k < 5; k++) await nats.js.publish(`fg.entries.${k}`, JSON.stringify({ account: `acct-${k}`, i }));
    }
    const consumer = await nats.js.consumers.get("FG", durableOf("FG"));
    const taken = await consumer.fetch({ max_messages: 20, expires: 2000 });
    for await (const msg of taken) msg.ack();
    await waitFor(async () => (await nats.jsm.consumers.info("FG", durableOf("FG"))).ack_floor.stream_seq === 40, {
      message: "the durable counts all 40 acked",
    });
    const second = await startHost(dir, nats.server.url);
    try {
      await ranTimes("FG", 40);
      const all = await runs("FG");
      expect(new Set(all.map((run) => `${run.key}:${run.i}`)).size).toBe(40);
      expectKeyOrder(all, 5, 8);
    } finally {
      await second.host.shutdown();
    }
  });
});

describe("the function's stream deleted and added again", () => {
  it("is forwarded from its start: its sequences begin again, and the copies of the one before count for nothing", async () => {
    const { host } = await startHost(project("FE", 8), nats.server.url);
    try {
      await publishEntries("FE", 10, 3);
      await ranTimes("FE", 30);
      // Long enough for the forwarder to record how far its copies landed (every second).
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const { config } = await nats.jsm.streams.info("FE");
      await nats.jsm.streams.delete("FE");
      await nats.jsm.streams.add(config);
      // Sequences 1 to 20 again, well inside the copies' duplicate window.
      await publishEntries("FE", 10, 2, { again: true });
      await ranTimes("FE", 50);
      expect(await runs("FE")).toHaveLength(50);
    } finally {
      await host.shutdown();
    }
  });
});

describe("the forwarder's host", () => {
  it("SIGKILLed midway: another replica forwards from its ack floor; every key keeps its order, nothing is lost", async () => {
    const config = path.join(project("FC", 4), "functions.yaml");
    const hosts = [await startCliHost(config, nats.server.url), await startCliHost(config, nats.server.url)];
    const forwarding = async (base: string) => (await forwarderStatus(base, functionOf("FC"))).forwarding;
    const forwarder = await waitFor(
      async () => {
        for (const host of hosts) if (await forwarding(host.base)) return host;
        return undefined;
      },
      { timeout: 10_000, message: "one host forwards" },
    );
    const other = hosts.find((host) => host !== forwarder)!;
    const publishing = publishEntries("FC", 10, 40, { ms: 5 });
    await waitFor(async () => (await runs("FC")).length >= 80, { timeout: 20_000, interval: 50 });
    forwarder.cli.child.kill("SIGKILL");
    const killedAt = Date.now();
    await publishing;
    await waitFor(() => forwarding(other.base), { timeout: 10_000, message: "the other host forwards" });
    const waitFrom = Date.now();
    const keyed = () => runs("FC");
    await waitFor(async () => new Set((await keyed()).map((run) => `${run.key}:${run.i}`)).size === 400, {
      timeout: 30_000,
      interval: 250,
      message: "every entry ran",
    }).catch(async (error: unknown) => {
      // What to look at: both hosts' logs, the consumers' state, the entries that did not run.
      const dir = mkdtempSync(path.join(tmpdir(), "jetfn-forwarder-"));
      writeFileSync(path.join(dir, "forwarder.log"), forwarder.cli.output());
      writeFileSync(path.join(dir, "other.log"), other.cli.output());
      const ran = new Set((await keyed()).map((run) => `${run.key}:${run.i}`));
      const missing = Array.from({ length: 400 }, (_, n) => `acct-${n % 10}:${Math.floor(n / 10)}`).filter((e) => !ran.has(e));
      const consumers = await Promise.all([
        nats.jsm.consumers.info("FC", durableOf("FC")),
        ...[0, 1, 2, 3].map((p) => nats.jsm.consumers.info(orderedStream(functionOf("FC")), `${durableOf("FC")}_p${p}`)),
      ]);
      const copies = (await nats.jsm.streams.info(orderedStream(functionOf("FC")))).state;
      const all = [];
      for await (const c of nats.jsm.consumers.list(orderedStream(functionOf("FC"))))
        all.push([c.name, c.config.filter_subject, c.num_pending, c.num_ack_pending]);
      const left = [];
      for (let seq = copies.first_seq; seq <= copies.last_seq && left.length < 30; seq++) {
        const m = await nats.jsm.streams.getMessage(orderedStream(functionOf("FC")), { seq }).catch(() => undefined);
        if (m) left.push([seq, m.subject, m.header.get("Jetfn-Ordered-Stream"), m.header.get("Jetfn-Ordered-Seq"), m.string()]);
      }
      const ends = (await keyed()).map((run) => run.end);
      writeFileSync(
        path.join(dir, "state.json"),
        JSON.stringify({ missing, killedAt, waitFrom, lastEnd: Math.max(...ends), consumers, copies, all, left }, null, 2),
      );
      throw new Error(`${(error as Error).message}; logs and state in ${dir}`, { cause: error });
    });
    expectKeyOrder(await keyed(), 10, 40);
  });
});

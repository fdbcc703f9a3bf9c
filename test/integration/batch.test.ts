/**
 * Batch functions (`batch:`, `defineBatchFunction`) on a real nats-server: flushed by size
 * and by time; some messages retried and failed while the rest are acked; a throw retries
 * the batch, each message dead-lettered alone once its attempts run out; a handler longer
 * than the ack wait kept alive; a schema failure dead-lettered before the batch; 10,000
 * events with maxSize 100 each settled once. The thread crashing mid-batch is in
 * batch-crash.test.ts (it needs worker isolation).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { replayEvents } from "../../runtime/nats/replay-copies.ts";
import { createHost, makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host | undefined;
let baseUrl = "";

interface Row {
  n: number;
  deliveryCount: number;
  seq: number;
  subject: string;
}
interface BatchRecord {
  rows: Row[];
  at: number;
}

/** The batches function `name` recorded, in order. */
async function batches(name: string): Promise<BatchRecord[]> {
  const stream = "REC_BATCH";
  const info = await nats.jsm.streams.info(stream);
  const found: BatchRecord[] = [];
  const subject = `rec.${name}`;
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
    if (message?.subject === subject) found.push(message.json<BatchRecord>());
  }
  return found;
}

interface DeadLetter {
  n: number;
  reason: string;
  deliveries: string;
  tag: string | undefined;
  subject: string;
}

/** Dead letters of function `name`: each one's own event, reason and headers. */
async function deadLetters(name: string): Promise<DeadLetter[]> {
  const info = await nats.jsm.streams.info("JETFN_DLQ");
  const found: DeadLetter[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage("JETFN_DLQ", { seq }).catch(() => undefined);
    if (!message || message.header.get("Jetfn-Function") !== name) continue;
    found.push({
      n: message.json<{ n: number }>().n,
      reason: message.header.get("Jetfn-Reason"),
      deliveries: message.header.get("Jetfn-Deliveries"),
      tag: message.header.get("X-Tag") || undefined,
      subject: message.header.get("Jetfn-Subject"),
    });
  }
  return found.sort((a, b) => a.n - b.n);
}

async function publish(subject: string, event: Record<string, unknown>, tag?: string): Promise<void> {
  const { headers } = await import("@nats-io/transport-node");
  const h = headers();
  if (tag) h.set("X-Tag", tag);
  await nats.js.publish(subject, JSON.stringify(event), { headers: h });
}

function entry(name: string, extra: string): string {
  return `  - name: ${name}
    handler: fns/load.ts
    stream: JOBS_BATCH
    subjects: ["batch.${name}"]
    config: { record: rec.${name} }
${extra}`;
}

beforeAll(async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: JOBS_BATCH, subjects: ["batch.>"], storage: memory }
  - { name: REC_BATCH, subjects: ["rec.>"], storage: memory }
functions:
${entry("by-size", "    batch: { maxSize: 5, maxWait: 20s }\n    ackWait: 30s")}
${entry("by-time", "    batch: { maxSize: 100, maxWait: 400ms }")}
${entry("partial", "    batch: { maxSize: 6, maxWait: 300ms }\n    retry: { maxAttempts: 2, initialDelay: 100ms, jitter: false }")}
${entry("throws", "    batch: { maxSize: 4, maxWait: 300ms }\n    retry: { maxAttempts: 5, initialDelay: 100ms, jitter: false }")}
${entry("exhausts", "    batch: { maxSize: 4, maxWait: 300ms }\n    retry: { maxAttempts: 2, initialDelay: 100ms, jitter: false }")}
${entry("slow", "    batch: { maxSize: 3, maxWait: 200ms }\n    ackWait: 1s\n    timeout: 10s")}
${entry("strict", "    batch: { maxSize: 4, maxWait: 300ms }")}
${entry("bulk", "    batch: { maxSize: 100, maxWait: 100ms }")}
`,
    },
    { fixtures: "batch" },
  );
  const started = await startHost(dir, nats.server.url);
  host = started.host;
  baseUrl = started.baseUrl;
});

afterAll(async () => {
  await host?.shutdown();
});

describe("batch functions", () => {
  it("hands a batch over once it holds maxSize events", async () => {
    const from = Date.now();
    for (let n = 0; n < 10; n++) await publish("batch.by-size", { n });
    await waitFor(async () => (await batches("by-size")).length >= 2, { timeout: 10_000, message: "two batches" });
    const found = await batches("by-size");
    expect(found.map((batch) => batch.rows.map((row) => row.n))).toEqual([
      [0, 1, 2, 3, 4],
      [5, 6, 7, 8, 9],
    ]);
    // Long before maxWait (20 s): by size.
    expect(found[1]!.at - from).toBeLessThan(5000);
    expect(await scrape(baseUrl, `jetfn_batch_size_count{function="by-size"}`)).toBe(2);
    expect(await scrape(baseUrl, `jetfn_batch_size_sum{function="by-size"}`)).toBe(10);
    await waitFor(async () => (await scrape(baseUrl, `jetfn_invocations_total{function="by-size",outcome="success"}`)) === 10);
  });

  it("hands a batch over once maxWait has passed since its first event", async () => {
    const from = Date.now();
    for (let n = 0; n < 3; n++) await publish("batch.by-time", { n });
    await waitFor(async () => (await batches("by-time")).length >= 1, { timeout: 10_000, message: "a batch" });
    const [batch] = await batches("by-time");
    expect(batch!.rows.map((row) => row.n)).toEqual([0, 1, 2]);
    expect(batch!.at - from).toBeGreaterThanOrEqual(350);
    expect(batch!.at - from).toBeLessThan(3000);

    // Replayed (`jetfn replay`): the copies run in a batch of their own.
    const fn = host!.config.functions.find((f) => f.name === "by-time")!;
    const counts = await replayEvents(nats, fn, { from: { seq: batch!.rows[0]!.seq } }, host!.log);
    expect(counts).toMatchObject({ published: 3 });
    await waitFor(async () => (await batches("by-time")).length >= 2, { timeout: 10_000, message: "the replays' batch" });
    const replayed = (await batches("by-time"))[1]!;
    // Each copy shows its original's subject, as a replay does.
    expect(replayed.rows.map((row) => [row.n, row.subject])).toEqual([
      [0, "batch.by-time"],
      [1, "batch.by-time"],
      [2, "batch.by-time"],
    ]);
  });

  it("settles each message as the handler says: retried, failed for good, failed and retried until exhausted, the rest acked", async () => {
    await publish("batch.partial", { n: 1 });
    await publish("batch.partial", { n: 2, retryMs: 300 });
    await publish("batch.partial", { n: 3, fail: "non" }, "three");
    await publish("batch.partial", { n: 4, fail: "plain" }, "four");
    await publish("batch.partial", { n: 5 });
    await waitFor(async () => (await deadLetters("partial")).length >= 2, { timeout: 15_000, message: "two dead letters" });
    await waitFor(async () => (await batches("partial")).flatMap((b) => b.rows).some((row) => row.n === 2 && row.deliveryCount === 2), {
      timeout: 10_000,
      message: "the retried message again",
    });
    const rows = (await batches("partial")).flatMap((batch) => batch.rows);
    const times = (n: number) => rows.filter((row) => row.n === n).map((row) => row.deliveryCount);
    // Acked at once: never delivered again.
    expect(times(1)).toEqual([1]);
    expect(times(5)).toEqual([1]);
    // retry({ delay }): once more, then acked.
    expect(times(2)).toEqual([1, 2]);
    // fail(NonRetryableError): dead-lettered at once, its ack() after it ignored.
    expect(times(3)).toEqual([1]);
    // fail(Error): retried with backoff until its 2 attempts were used.
    expect(times(4)).toEqual([1, 2]);
    const dead = await deadLetters("partial");
    expect(dead).toEqual([
      { n: 3, reason: "non-retryable", deliveries: "1", tag: "three", subject: "batch.partial" },
      { n: 4, reason: "attempts-exhausted", deliveries: "2", tag: "four", subject: "batch.partial" },
    ]);
    const info = await nats.jsm.consumers.info("JOBS_BATCH", "jetfn_partial");
    await waitFor(async () => (await nats.jsm.consumers.info("JOBS_BATCH", "jetfn_partial")).num_ack_pending === 0);
    expect(info.num_pending).toBe(0);
  });

  it("retries every unsettled message when the handler throws, and dead-letters each alone once its attempts run out", async () => {
    for (let n = 0; n < 4; n++) await publish("batch.throws", { n, throwUntil: 3 });
    await waitFor(async () => (await batches("throws")).flatMap((b) => b.rows).filter((row) => row.deliveryCount === 3).length === 4, {
      timeout: 15_000,
      message: "the third delivery of each",
    });
    await waitFor(async () => (await nats.jsm.consumers.info("JOBS_BATCH", "jetfn_throws")).num_ack_pending === 0);
    expect(await deadLetters("throws")).toEqual([]);
    // Two failed attempts each (more if a redelivery met another's earlier attempt in one batch).
    expect(await scrape(baseUrl, `jetfn_invocations_total{function="throws",outcome="error"}`)).toBeGreaterThanOrEqual(8);
    expect(await scrape(baseUrl, `jetfn_invocations_total{function="throws",outcome="success"}`)).toBe(4);

    for (let n = 0; n < 4; n++) await publish("batch.exhausts", { n, throwUntil: 99 }, `tag-${n}`);
    await waitFor(async () => (await deadLetters("exhausts")).length === 4, { timeout: 15_000, message: "four dead letters" });
    expect(await deadLetters("exhausts")).toEqual(
      [0, 1, 2, 3].map((n) => ({ n, reason: "attempts-exhausted", deliveries: "2", tag: `tag-${n}`, subject: "batch.exhausts" })),
    );
  });

  it("keeps a batch whose handler runs longer than the ack wait alive", async () => {
    for (let n = 0; n < 3; n++) await publish("batch.slow", { n, sleepMs: 2500 });
    await waitFor(async () => (await scrape(baseUrl, `jetfn_acks_total{function="slow",action="ack"}`)) >= 3, {
      timeout: 15_000,
      message: "all three acked",
    });
    const rows = (await batches("slow")).flatMap((batch) => batch.rows);
    expect(rows.map((row) => [row.n, row.deliveryCount])).toEqual([
      [0, 1],
      [1, 1],
      [2, 1],
    ]);
    const info = await nats.jsm.consumers.info("JOBS_BATCH", "jetfn_slow");
    expect(info.num_redelivered).toBe(0);
    expect(await scrape(baseUrl, `jetfn_acks_total{function="slow",action="working"}`)).toBeGreaterThan(0);
  });

  it("dead-letters a message that fails the schema before the batch, never handing it over", async () => {
    await publish("batch.strict", { n: 1 });
    await publish("batch.strict", { n: "two" }, "bad");
    await publish("batch.strict", { n: 3 });
    await waitFor(async () => (await batches("strict")).length >= 1, { timeout: 10_000 });
    await waitFor(async () => (await nats.jsm.consumers.info("JOBS_BATCH", "jetfn_strict")).num_ack_pending === 0);
    expect((await batches("strict")).map((batch) => batch.rows.map((row) => row.n))).toEqual([[1, 3]]);
    const info = await nats.jsm.streams.info("JETFN_DLQ");
    let invalid = 0;
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const message = await nats.jsm.streams.getMessage("JETFN_DLQ", { seq }).catch(() => undefined);
      if (message?.header.get("Jetfn-Function") !== "strict") continue;
      invalid++;
      expect(message.header.get("Jetfn-Reason")).toBe("invalid");
      expect(message.header.get("X-Tag")).toBe("bad");
      expect(message.string()).toBe(JSON.stringify({ n: "two" }));
    }
    expect(invalid).toBe(1);
    expect(await scrape(baseUrl, `jetfn_invocations_total{function="strict",outcome="invalid"}`)).toBe(1);
  });

  it("settles each of 10,000 events once with maxSize 100 and a 5 ms insert", async () => {
    const total = 10_000;
    const body = (n: number) => new TextEncoder().encode(JSON.stringify({ n, sleepMs: 5 }));
    for (let n = 0; n < total; n++) nats.nc.publish("batch.bulk", body(n));
    await nats.nc.flush();
    await waitFor(async () => (await scrape(baseUrl, `jetfn_acks_total{function="bulk",action="ack"}`)) >= total, {
      timeout: 30_000,
      interval: 200,
      message: "every event acked",
    });
    // The host counts an ack when it queues it; the server sees it a moment later.
    const info = await waitFor(
      async () => {
        const found = await nats.jsm.consumers.info("JOBS_BATCH", "jetfn_bulk");
        return found.num_pending === 0 && found.num_ack_pending === 0 ? found : undefined;
      },
      { timeout: 10_000, interval: 100, message: "the server has every ack" },
    );
    expect(info.num_pending).toBe(0);
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_redelivered).toBe(0);
    const seen = new Map<number, number>();
    for (const batch of await batches("bulk")) for (const row of batch.rows) seen.set(row.n, (seen.get(row.n) ?? 0) + 1);
    expect(seen.size).toBe(total);
    expect([...seen.values()].every((count) => count === 1)).toBe(true);
    expect(await scrape(baseUrl, `jetfn_invocations_total{function="bulk",outcome="success"}`)).toBe(total);
    expect(await scrape(baseUrl, `jetfn_acks_total{function="bulk",action="ack"}`)).toBe(total);
    // Batches of 100, but for ones flushed by time while the stream was being filled.
    const count = await scrape(baseUrl, `jetfn_batch_size_count{function="bulk"}`);
    expect(count).toBeGreaterThanOrEqual(100);
    expect(count).toBeLessThan(200);
  }, 60_000);
});

describe("batch functions at shutdown", () => {
  it("runs a filling batch as soon as the host stops pulling, not after its maxWait", async () => {
    const dir = makeProject(
      {
        "functions.yaml": `
streams:
  - { name: JOBS_SD, subjects: ["sd.>"], storage: memory }
  - { name: REC_BATCH, subjects: ["rec.>"], storage: memory }
functions:
  - name: stopping
    handler: fns/load.ts
    stream: JOBS_SD
    subjects: ["sd.jobs"]
    batch: { maxSize: 100, maxWait: 25s }
    ackWait: 30s
    config: { record: rec.stopping }
`,
      },
      { fixtures: "batch" },
    );
    const started = await startHost(dir, nats.server.url);
    for (let n = 0; n < 2; n++) await publish("sd.jobs", { n });
    await waitFor(async () => (await nats.jsm.consumers.info("JOBS_SD", "jetfn_stopping")).num_ack_pending === 2, {
      message: "both held by the filling batch",
    });
    const from = Date.now();
    await started.host.shutdown();
    expect(Date.now() - from).toBeLessThan(5000);
    expect((await batches("stopping")).map((batch) => batch.rows.map((row) => row.n))).toEqual([[0, 1]]);
    const info = await nats.jsm.consumers.info("JOBS_SD", "jetfn_stopping");
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });
});

describe("batch: and defineBatchFunction go together", () => {
  /** Why `Host.create` refused a project with one function, `entry` (bundled and checked in the test's isolation mode). */
  async function refusal(entry: string): Promise<Error | undefined> {
    const dir = makeProject(
      {
        "functions.yaml": `
streams:
  - { name: JOBS_SHAPE, subjects: ["shape.>"], storage: memory }
functions:
${entry}`,
        "fns/plain.ts": 'import { defineFunction } from "jetfn";\nexport default defineFunction({ async handler() {} });\n',
      },
      { fixtures: "batch" },
    );
    return createHost(dir, nats.server.url).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
  }

  it("fails the start when a batch: function's handler is not a batch function", async () => {
    const failure = await refusal(
      "  - { name: not-batch, handler: fns/plain.ts, stream: JOBS_SHAPE, subjects: [shape.a], batch: { maxSize: 10 } }\n",
    );
    expect(failure?.name).toBe("BundleError");
    expect(failure?.message).toContain(
      'fns/plain.ts: function not-batch has batch: in functions.yaml; its export "default" must be `defineBatchFunction({ handler(messages, ctx) })`',
    );
  });

  it("fails the start when a batch function has no batch:", async () => {
    const failure = await refusal("  - { name: batch-without, handler: fns/load.ts, stream: JOBS_SHAPE, subjects: [shape.b] }\n");
    expect(failure?.name).toBe("BundleError");
    expect(failure?.message).toContain(
      'fns/load.ts: export "default" is a batch function (defineBatchFunction), and function batch-without has no batch: in functions.yaml',
    );
  });
});

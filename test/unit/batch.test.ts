/**
 * The pure parts of batch functions, fast: how a batch is gathered (size, bytes, time), how
 * a batch handler's run settles its messages, and the check that `batch:` and
 * `defineBatchFunction` go together.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { loadHandler } from "../../runtime/bundle/module.ts";
import type { CompiledFunction } from "../../runtime/config/types.ts";
import type { BatchItem, BatchSettle } from "../../runtime/contracts/batch.ts";
import type { Delivery } from "../../runtime/contracts/delivery.ts";
import { BatchCollector } from "../../runtime/function/batch-collector.ts";
import { Admission } from "../../runtime/invoke/admission.ts";
import { BatchInvoker } from "../../runtime/invoke/batch-invoker.ts";
import { runBatchHandler } from "../../runtime/invoke/batch-runner.ts";
import { Heartbeats } from "../../runtime/invoke/heartbeats.ts";
import { HostContext } from "../../runtime/invoke/host-context.ts";
import { BreakerRegistry } from "../../runtime/resilience/breaker-registry.ts";
import { defineBatchFunction, defineFunction, type FunctionContext, NonRetryableError } from "../../runtime/sdk/index.ts";
import { createLogger } from "../../runtime/telemetry/logger.ts";
import { Metrics } from "../../runtime/telemetry/metrics.ts";
import { CapturingPublisher } from "../../runtime/testing/capture.ts";
import { invoke, invokeBatch } from "../../runtime/testing/index.ts";

afterEach(() => {
  vi.useRealTimers();
});

function delivery(seq: number, bytes = 10): Delivery {
  return { seq, data: new Uint8Array(bytes), working: vi.fn() } as unknown as Delivery;
}

function collector(batch: { maxSize: number; maxWaitMs: number; maxBytes?: number }) {
  const ran: number[][] = [];
  const heartbeats = new Heartbeats(100);
  const beat = vi.fn();
  const gather = new BatchCollector({
    batch,
    run: async (deliveries) => {
      ran.push(deliveries.map((d) => d.seq));
    },
    heartbeats,
    beat,
  });
  return { gather, ran, beat, heartbeats };
}

describe("BatchCollector", () => {
  it("hands a batch over at maxSize, and resolves each event's take once its batch ran", async () => {
    const { gather, ran } = collector({ maxSize: 3, maxWaitMs: 60_000 });
    const takes = [1, 2, 3, 4].map((seq) => gather.take(delivery(seq)));
    expect(ran).toEqual([[1, 2, 3]]);
    await Promise.all(takes.slice(0, 3));
    let fourth = false;
    void takes[3]!.then(() => (fourth = true));
    await Promise.resolve();
    expect(fourth).toBe(false);
    gather.flush();
    await takes[3];
    expect(ran).toEqual([[1, 2, 3], [4]]);
  });

  it("hands a batch over before an event would take it past maxBytes; a larger event goes alone", () => {
    const { gather, ran } = collector({ maxSize: 100, maxWaitMs: 60_000, maxBytes: 25 });
    void gather.take(delivery(1, 10));
    void gather.take(delivery(2, 10));
    void gather.take(delivery(3, 10)); // 30 > 25: 1 and 2 go first
    void gather.take(delivery(4, 40)); // larger than maxBytes: 3 goes, then 4 alone
    void gather.take(delivery(5, 25)); // exactly maxBytes: at once
    expect(ran).toEqual([[1, 2], [3], [4], [5]]);
  });

  it("hands a batch over maxWait after its first event, heartbeating its events meanwhile", () => {
    vi.useFakeTimers();
    const { gather, ran, beat, heartbeats } = collector({ maxSize: 100, maxWaitMs: 1000 });
    void gather.take(delivery(1));
    vi.advanceTimersByTime(600);
    void gather.take(delivery(2));
    expect(ran).toEqual([]);
    expect(beat).toHaveBeenCalledTimes(6);
    vi.advanceTimersByTime(400);
    expect(ran).toEqual([[1, 2]]);
    // Handed over: its events are no longer the collector's to beat.
    expect(heartbeats.size).toBe(0);
  });
});

function item(n: unknown, seq = 1): BatchItem {
  return { data: new TextEncoder().encode(JSON.stringify({ n })), subject: "s", seq, deliveryCount: 1, headers: {}, timestamp: 0 };
}

const ctx = {
  function: "f",
  config: {},
  signal: new AbortController().signal,
  log: {},
  span: {},
  publish: vi.fn(),
  breaker: vi.fn(),
  working: vi.fn(),
} as unknown as FunctionContext;

describe("runBatchHandler", () => {
  it("settles undecodable and invalid events before the batch, hands over the rest, and lets the first settle win", async () => {
    const settled: [number, BatchSettle["kind"], number?][] = [];
    const seen: number[] = [];
    const loaded = defineBatchFunction({
      schema: z.object({ n: z.number() }),
      handler(messages) {
        for (const m of messages) seen.push(m.data.n);
        messages[0]!.retry({ delay: "5s" });
        messages[0]!.ack();
        messages[1]!.fail(new NonRetryableError("no"));
        messages[1]!.retry();
      },
    });
    const bad = { ...item(0, 2), data: new TextEncoder().encode("{") };
    const outcome = await runBatchHandler(
      { handler: loaded.handler as never, schema: loaded.schema as never, batch: true },
      [item(1, 1), bad, item("x", 3), item(4, 4)],
      "json",
      (index, how) => settled.push([index, how.kind, how.kind === "retry" ? how.delayMs : undefined]),
      () => ctx,
    );
    expect(outcome).toEqual({ kind: "success", value: undefined });
    expect(seen).toEqual([1, 4]);
    expect(settled).toEqual([
      [1, "undecodable", undefined],
      [2, "invalid", undefined],
      [0, "retry", 5000],
      [3, "fail", undefined],
    ]);
  });

  it("does not call the handler when no event is left, and reports a throw as the batch's error", async () => {
    const handler = vi.fn(() => {
      throw new Error("insert failed");
    });
    const schema = z.object({ n: z.number() });
    const none = await runBatchHandler(
      { handler: handler as never, schema: schema as never, batch: true },
      [item("x")],
      "json",
      () => {},
      () => ctx,
    );
    expect(none.kind).toBe("success");
    expect(handler).not.toHaveBeenCalled();
    const thrown = await runBatchHandler(
      { handler: handler as never, batch: true },
      [item(1)],
      "json",
      () => {},
      () => ctx,
    );
    expect(thrown.kind).toBe("error");
    expect((thrown as { error: Error }).error.message).toBe("insert failed");
  });

  it("shows the handler a batch ctx without one event's facts", async () => {
    let keys: string[] = [];
    await runBatchHandler(
      {
        handler: ((_messages: unknown, batchCtx: object) => {
          keys = Object.keys(batchCtx).sort();
        }) as never,
        batch: true,
      },
      [item(1)],
      "json",
      () => {},
      () => ctx,
    );
    expect(keys).toEqual(["breaker", "config", "function", "log", "publish", "signal", "span", "working"]);
  });
});

describe("loadHandler: batch: and defineBatchFunction go together", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "jetfn-batch-"));
  const batchFile = path.join(dir, "batch.mjs");
  writeFileSync(batchFile, 'export default { [Symbol.for("jetfn.batch-function")]: true, handler: async () => {} };\n');
  const plainFile = path.join(dir, "plain.mjs");
  writeFileSync(plainFile, "export default async () => {};\n");
  const fn = (batch: boolean) =>
    ({
      name: "load",
      exportName: "default",
      handlerPath: path.join(dir, "load.ts"),
      ...(batch ? { batch: { maxSize: 10 } } : {}),
    }) as CompiledFunction;

  it("loads a batch function for an entry with batch:", async () => {
    expect((await loadHandler(fn(true), batchFile, dir)).batch).toBe(true);
  });

  it("refuses a batch function without batch:, and a plain handler with it", async () => {
    await expect(loadHandler(fn(false), batchFile, dir)).rejects.toThrow(
      'load.ts: export "default" is a batch function (defineBatchFunction), and function load has no batch: in functions.yaml',
    );
    await expect(loadHandler(fn(true), plainFile, dir)).rejects.toThrow(
      'load.ts: function load has batch: in functions.yaml; its export "default" must be `defineBatchFunction({ handler(messages, ctx) })`',
    );
  });
});

describe("jetfn/testing: invokeBatch", () => {
  const Row = z.object({ n: z.number() });
  const load = defineBatchFunction({
    schema: Row,
    async handler(messages, batchCtx) {
      if (messages.some((m) => m.data.n < 0)) throw new Error("insert failed");
      await batchCtx.publish("rows.loaded", { count: messages.length });
      for (const m of messages) {
        if (m.data.n === 2) m.retry({ delay: "5s" });
        if (m.data.n === 3) m.fail(new NonRetryableError("row 3 refused"));
      }
    },
  });

  it("says how each message is settled: invalid before the batch, retried, failed, the rest acked", async () => {
    const { messages, published } = await invokeBatch(load, [{ n: 1 }, { n: "x" }, { n: 2 }, { n: 3 }], {
      messages: [{}, {}, {}, { headers: { "X-Tag": "three" } }],
    });
    expect(messages.map((m) => m.settlement.action)).toEqual(["ack", "dead-letter", "nak", "dead-letter"]);
    expect(messages[1]!.settlement).toMatchObject({ reason: "invalid" });
    expect(messages[2]!.settlement).toMatchObject({ delayMs: 5000 });
    expect(messages[3]!.settlement).toMatchObject({ reason: "non-retryable", error: "NonRetryableError: row 3 refused" });
    // The invalid one is dead-lettered before the batch runs.
    expect(published.map((p) => p.subject)).toEqual(["jetfn.dlq.test", "rows.loaded", "jetfn.dlq.test"]);
    expect(published[1]!.json()).toEqual({ count: 3 });
    // Each dead letter alone, with its own bytes and headers.
    expect(published[0]!.text()).toBe(JSON.stringify({ n: "x" }));
    expect(published[2]!.text()).toBe(JSON.stringify({ n: 3 }));
    expect(published[2]!.headers["X-Tag"]).toBe("three");
  });

  it("retries each unsettled message by its own delivery count when the handler throws, dead-lettering the exhausted one", async () => {
    const { messages } = await invokeBatch(load, [{ n: -1 }, { n: 5 }], {
      messages: [{ deliveryCount: 1 }, { deliveryCount: 3 }],
      retry: { maxAttempts: 3 },
    });
    expect(messages[0]!.settlement).toMatchObject({ action: "nak", delayMs: 1000, error: "insert failed" });
    expect(messages[1]!.settlement).toMatchObject({ action: "dead-letter", reason: "attempts-exhausted" });
  });

  it("refuses a one-event handler, and invoke() refuses a batch function", async () => {
    await expect(invokeBatch(defineFunction({ handler: async () => {} }) as never, [{}])).rejects.toThrow(
      "invokeBatch: expected defineBatchFunction({ handler })",
    );
    await expect(invoke(load as never, {})).rejects.toThrow(
      "invoke: a batch function (defineBatchFunction) runs on a batch: use invokeBatch",
    );
  });
});

describe("BatchInvoker", () => {
  const slow = defineBatchFunction({
    async handler(messages, batchCtx) {
      messages[0]!.ack();
      await new Promise((resolve) => setTimeout(resolve, 500));
      batchCtx.signal.throwIfAborted();
    },
  });

  it("settles what the handler left when the batch's timeout passes, as timed out, keeping what it settled", async () => {
    const { messages } = await invokeBatch(slow, [{ n: 1 }, { n: 2 }, { n: 3 }], { timeout: 50 });
    expect(messages.map((m) => [m.outcome.kind, m.settlement.action])).toEqual([
      ["success", "ack"],
      ["timeout", "nak"],
      ["timeout", "nak"],
    ]);
    expect(messages[1]!.settlement).toMatchObject({ delayMs: 1000, error: "timed out after 50ms" });
  });

  it("dead-letters a message past its attempts before the batch (the poison guard), handing over the rest", async () => {
    const seen: number[][] = [];
    const record = defineBatchFunction({
      handler(messages) {
        seen.push(messages.map((m) => m.seq));
      },
    });
    const { messages } = await invokeBatch(record, [{}, {}], { messages: [{ deliveryCount: 6 }, { deliveryCount: 2 }] });
    expect(messages[0]!.settlement).toMatchObject({ action: "dead-letter", reason: "attempts-exhausted" });
    expect(messages[1]!.settlement).toMatchObject({ action: "ack" });
    expect(seen).toEqual([[2]]);
  });

  it("hands a batch back unrun, its attempts spared, while the function is paused", async () => {
    const fn = {
      name: "paused",
      concurrency: 1,
      timeoutMs: 1000,
      ackWaitMs: 5000,
      retry: { maxAttempts: 1, backoff: "fixed", initialDelayMs: 1, maxDelayMs: 1, jitter: false },
      deadLetter: "jetfn.dlq.paused",
    } as unknown as CompiledFunction;
    const host = new HostContext(fn, createLogger("silent"), new CapturingPublisher(), new BreakerRegistry());
    const admission = new Admission(undefined);
    admission.setPaused({ at: new Date().toISOString(), by: "test" });
    const runBatch = vi.fn();
    const invoker = new BatchInvoker({
      host,
      executor: { runBatch, run: vi.fn(), waitingRoom: 0, status: () => undefined, close: async () => {} },
      admission,
      metrics: new Metrics(),
      stop: new AbortController().signal,
      heartbeats: new Heartbeats(1000),
    });
    const naks: number[] = [];
    const message = (seq: number, deliveryCount: number) =>
      ({
        seq,
        stream: "S",
        deliveryCount,
        data: new Uint8Array(0),
        headers: {},
        nak: (ms: number) => naks.push(ms),
        working() {},
      }) as unknown as Delivery;
    await invoker.process([message(1, 1), message(2, 1)]);
    expect(runBatch).not.toHaveBeenCalled();
    expect(naks).toHaveLength(2);
    // Delivered again (count 2) with maxAttempts 1: not past its attempts, as the hand-back spent none.
    admission.setPaused(undefined);
    runBatch.mockResolvedValue({ kind: "success", value: undefined });
    const acked: number[] = [];
    const again = (seq: number) => ({ ...message(seq, 2), ack: () => acked.push(seq), timestamp: new Date() }) as unknown as Delivery;
    await invoker.process([again(1), again(2)]);
    expect(runBatch).toHaveBeenCalledTimes(1);
    expect(acked).toEqual([1, 2]);
  });
});

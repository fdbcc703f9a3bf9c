/**
 * The pure parts of durable steps: run ids and key layout, the JSON check of results, the
 * outcome table's rows for a StepError, and the step journal's claims, leases, replays and
 * takeovers over the in-memory store, with injected clocks.
 */
import { ROOT_CONTEXT } from "@opentelemetry/api";
import { afterAll, describe, expect, it } from "vitest";
import type { CompiledFunction } from "../../runtime/config/types.ts";
import { configWarnings, retrySpanMs } from "../../runtime/config/warnings.ts";
import {
  completionRecordKey,
  occurrenceName,
  parseStepRecord,
  parseStepRecordKey,
  runIdOf,
  stepIdempotencyKey,
  stepRecordKey,
} from "../../runtime/contracts/steps.ts";
import { MemoryStepStore } from "../../runtime/invoke/memory-step-store.ts";
import { invocationOutcome, settle, spendsAttempt } from "../../runtime/invoke/outcome-table.ts";
import { stepJson } from "../../runtime/invoke/step-result.ts";
import { LEASE_MARGIN_MS, type StepBegin, StepJournal, type StepRun } from "../../runtime/invoke/steps.ts";
import { fromWire, toWire } from "../../runtime/isolation/protocol.ts";
import { isStepError, StepError } from "../../runtime/sdk/errors.ts";
import { cleanup, errorsOf, FUNCTION_A, load } from "./config-fixtures.ts";

afterAll(cleanup);

const FN: CompiledFunction = load([
  "functions:",
  "  - name: pay",
  "    handler: functions/a.ts",
  "    stream: ORDERS",
  "    subjects: [orders.created]",
  "    timeout: 10s",
  "    steps: { ttl: 1h }",
  "    retry: { maxAttempts: 3 }",
]).functions[0]!;

describe("steps: in functions.yaml", () => {
  it("compiles ttl and maxResultSize, layered over defaults:", () => {
    expect(FN.steps).toEqual({ ttlMs: 3_600_000, maxResultBytes: 256 * 1024 });
    const config = load(["defaults:", "  steps: { ttl: 48h }", "functions:", ...FUNCTION_A, "    steps: { maxResultSize: 1MB }"]);
    expect(config.functions[0]!.steps).toEqual({ ttlMs: 48 * 3_600_000, maxResultBytes: 1024 * 1024 });
  });

  it("warns when steps.ttl is shorter than the function's retry span", () => {
    // 3 attempts of up to 10 s, backoff 1 s then 2 s: 33 s.
    expect(retrySpanMs(FN)).toBe(33_000);
    const config = load(["functions:", ...FUNCTION_A, "    timeout: 10s", "    retry: { maxAttempts: 3 }", "    steps: { ttl: 30s }"]);
    expect(configWarnings(config)).toEqual([
      `${config.file}: function a: steps.ttl 30s is shorter than its retry span (up to 33s: 3 attempts of up to 10s and their backoff); an attempt after the ttl runs its steps again`,
    ]);
    expect(configWarnings(load(["functions:", ...FUNCTION_A]))).toEqual([]);
  });

  it("reports a bad key or value at its place", () => {
    expect(errorsOf(["functions:", ...FUNCTION_A, "    steps: { ttl: 7days, maxResultSize: 10, retain: true }"])).toEqual([
      'functions.yaml:6:19 functions[0].steps.ttl: expected a duration like 10s, got "7days"',
      "functions.yaml:6:41 functions[0].steps.maxResultSize: expected a size like 256MB, got 10",
      'functions.yaml:6:45 functions[0].steps.retain: unknown key "retain"',
    ]);
  });
});

describe("run ids and keys", () => {
  it("the run id is Nats-Msg-Id, else <stream>:<seq>; a replay's copy is a run of its own", () => {
    expect(runIdOf({ headers: { "Nats-Msg-Id": "order-1" }, stream: "ORDERS", seq: 7 })).toBe("order-1");
    expect(runIdOf({ headers: { "nats-msg-id": "order-1" }, stream: "ORDERS", seq: 7 })).toBe("order-1");
    expect(runIdOf({ headers: {}, stream: "ORDERS", seq: 7 })).toBe("ORDERS:7");
    expect(
      runIdOf({
        headers: { "Nats-Msg-Id": "replay:pay:ORDERS:7" },
        stream: "JETFN_REPLAY",
        seq: 3,
        replayOf: { stream: "ORDERS", seq: 7 },
      }),
    ).toBe("JETFN_REPLAY:3");
  });

  it("a synchronous call has a run id only with Nats-Msg-Id or Idempotency-Key", () => {
    expect(runIdOf({ headers: {}, stream: "", seq: 0 })).toBeUndefined();
    expect(runIdOf({ headers: { "Idempotency-Key": "k-1" }, stream: "", seq: 0 })).toBe("k-1");
  });

  it("names a loop's calls name, name#2, name#3", () => {
    expect([1, 2, 3].map((n) => occurrenceName("item", n))).toEqual(["item", "item#2", "item#3"]);
  });

  it("KV keys hold only [-/_=.a-zA-Z0-9] whatever the run id and step name, and read back", () => {
    const key = stepRecordKey("pay", "ORDERS:7 ünïcode/ *>", "charge card#2");
    expect(key).toMatch(/^[-/_=.a-zA-Z0-9]+$/);
    expect(key.split(".")).toHaveLength(3);
    expect(parseStepRecordKey(key)).toEqual({ fn: "pay", runId: "ORDERS:7 ünïcode/ *>", step: "charge card#2" });
    expect(stepIdempotencyKey("pay", "ORDERS:7", "charge")).toBe("pay:ORDERS:7:charge");
  });

  it("a run's completion record has a key no step name can have", () => {
    const key = completionRecordKey("pay", "ORDERS:7");
    expect(key).toBe(`pay.${Buffer.from("ORDERS:7").toString("base64url")}.=completed`);
    expect(key).toMatch(/^[-/_=.a-zA-Z0-9]+$/);
    expect(parseStepRecordKey(key)).toEqual({ fn: "pay", runId: "ORDERS:7", completed: true });
  });

  it("reads records it wrote, and calls anything else absent", () => {
    expect(parseStepRecord('{"state":"done","at":1,"expiresAt":2,"result":{"a":1}}')).toEqual({
      state: "done",
      at: 1,
      expiresAt: 2,
      result: { a: 1 },
    });
    expect(parseStepRecord("not json")).toBeUndefined();
    expect(parseStepRecord('{"state":"done"}')).toBeUndefined();
    expect(parseStepRecord('{"state":"odd","expiresAt":2}')).toBeUndefined();
  });
});

describe("stepJson", () => {
  it("writes JSON values", () => {
    expect(stepJson({ a: [1, "x", null, true], b: undefined })).toEqual({ ok: true, json: '{"a":[1,"x",null,true]}' });
    expect(stepJson(undefined)).toEqual({ ok: true, json: undefined });
    expect(stepJson(Object.create(null))).toEqual({ ok: true, json: "{}" });
  });

  it.each([
    [new Date(0), "the result is a Date (return date.toISOString()), which JSON does not read back as it was"],
    [{ n: Number.NaN }, "the result.n is NaN, which JSON writes as null"],
    [{ big: 1n }, "the result.big is a BigInt, which JSON cannot write (return it as a string)"],
    [[1, undefined], "the result[1] is undefined, which JSON writes as null in an array"],
    [{ f: () => 1 }, "the result.f is a function, which JSON leaves out"],
    [new Map(), "the result is a Map instance, which JSON does not read back as it was"],
  ])("refuses %o", (value, problem) => {
    expect(stepJson(value)).toEqual({ ok: false, problem });
  });

  it("refuses a cycle", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(stepJson(cyclic)).toEqual({ ok: false, problem: "the result.self refers back to itself (a cycle)" });
  });
});

describe("outcome table rows of a StepError", () => {
  const retry = FN.retry;
  it("a run that completed before: acked, publishing nothing, counted as duplicate", () => {
    expect(settle({ kind: "duplicate" }, 2, retry)).toEqual({ action: "ack", output: undefined });
    expect(invocationOutcome({ kind: "duplicate" })).toBe("duplicate");
  });

  it("a result too large or not JSON: dead-lettered at once with its own reason", () => {
    const tooLarge = new StepError("step x of function pay: too large", "x", "too-large");
    expect(settle({ kind: "error", error: tooLarge }, 1, retry)).toEqual({
      action: "dead-letter",
      reason: "step-too-large",
      error: "StepError: step x of function pay: too large",
    });
    const notJson = new StepError("step x of function pay: a Date", "x", "not-json");
    expect(settle({ kind: "error", error: notJson }, 1, retry)).toMatchObject({ action: "dead-letter", reason: "step-not-json" });
  });

  it("busy: handed back after its delay without spending an attempt, even on the last one", () => {
    const busy = new StepError("step x is being run", "x", "busy", 750);
    expect(settle({ kind: "error", error: busy }, 3, retry)).toMatchObject({ action: "nak", delayMs: 750 });
    expect(spendsAttempt({ kind: "error", error: busy })).toBe(false);
  });

  it("keeps its brand, step and problem across a thread boundary", () => {
    const crossed = fromWire(toWire(new StepError("busy", "charge#2", "busy", 300), String));
    expect(isStepError(crossed)).toBe(true);
    expect(crossed).toMatchObject({ step: "charge#2", problem: "busy", retryAfterMs: 300 });
    expect(crossed instanceof StepError).toBe(true);
  });
});

/** A manual clock: wall (epoch ms) and monotonic (ms) move together. */
class Clock {
  ms = 1_000_000;
  readonly now = () => this.ms;
  readonly monotonic = () => this.ms;
}

function journal(store: MemoryStepStore, clock: Clock, hostId = "host-a", waitMs = 0): StepJournal {
  return new StepJournal({ fn: FN, store: async () => store, hostId, now: clock.now, monotonic: clock.monotonic, waitMs, pollMs: 5 });
}

const run = (seq = 1, headers: Record<string, string> = {}): StepRun => ({ headers, stream: "ORDERS", seq, parent: ROOT_CONTEXT });

function claimOf(begin: StepBegin): number {
  if (begin.kind !== "run") throw new Error(`expected a claim, got ${JSON.stringify(begin)}`);
  return begin.claim;
}

describe("StepJournal", () => {
  it("claims a new step, records its result, and replays it on a later attempt (on another host too)", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const steps = journal(store, clock);
    const first = await steps.begin(run(), "charge");
    expect(first).toMatchObject({ kind: "run", key: "pay:ORDERS:1:charge", maxBytes: 256 * 1024 });
    await steps.end(claimOf(first), { kind: "done", json: '{"receipt":"r-1"}' });
    expect(await journal(store, clock, "host-b").begin(run(), "charge")).toEqual({ kind: "replay", result: { receipt: "r-1" } });
    expect(await journal(store, clock).begin(run(2), "charge")).toMatchObject({ kind: "run", key: "pay:ORDERS:2:charge" });
  });

  it("a step that returned nothing replays nothing", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const steps = journal(store, clock);
    await steps.end(claimOf(await steps.begin(run(), "notify")), { kind: "done", json: undefined });
    expect(await steps.begin(run(), "notify")).toEqual({ kind: "replay" });
  });

  it("a thrown error is not recorded: the next attempt runs the step again at once", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const steps = journal(store, clock);
    await steps.end(claimOf(await steps.begin(run(), "charge")), { kind: "threw" });
    expect(store.records.size).toBe(0);
    expect((await steps.begin(run(), "charge")).kind).toBe("run");
  });

  it("a NonRetryableError is recorded, and given again", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const steps = journal(store, clock);
    const failed = { name: "NonRetryableError", message: "card declined" };
    await steps.end(claimOf(await steps.begin(run(), "charge")), { kind: "threw", nonRetryable: failed });
    expect(await steps.begin(run(), "charge")).toEqual({ kind: "failed", error: failed });
  });

  it("a record past its ttl counts as absent: the step runs again", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const steps = journal(store, clock);
    await steps.end(claimOf(await steps.begin(run(), "charge")), { kind: "done", json: "1" });
    clock.ms += 3_600_000 - 1;
    expect((await steps.begin(run(), "charge")).kind).toBe("replay");
    clock.ms += 1;
    expect((await steps.begin(run(), "charge")).kind).toBe("run");
  });

  it("another delivery's claim: busy until its lease ran out as this host saw it, then taken over; never earlier", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    await journal(store, clock, "host-a").begin(run(), "charge"); // host-a dies holding it
    const other = journal(store, clock, "host-b");
    const leaseMs = FN.timeoutMs + LEASE_MARGIN_MS;
    const busy = await other.begin(run(), "charge").catch((error: unknown) => error);
    expect(isStepError(busy) && busy.problem).toBe("busy");
    expect((busy as StepError).retryAfterMs).toBe(5_000);
    clock.ms += leaseMs - 1;
    const stillBusy = await other.begin(run(), "charge").catch((error: unknown) => error);
    expect((stillBusy as StepError).retryAfterMs).toBe(250);
    clock.ms += 1;
    expect(await other.begin(run(), "charge")).toMatchObject({ kind: "run" });
  });

  it("a host that restarts sees a claim anew: its lease counts from when it first saw it", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    await journal(store, clock, "host-a").begin(run(), "charge");
    clock.ms += 60_000; // long ago, but host-b has not seen the claim before now
    await expect(journal(store, clock, "host-b").begin(run(), "charge")).rejects.toMatchObject({ problem: "busy" });
  });

  it("waits for another delivery running the step, and replays its result", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const runner = journal(store, clock, "host-a");
    const claim = claimOf(await runner.begin(run(), "ship"));
    const waiter = new StepJournal({ fn: FN, store: async () => store, hostId: "host-b", now: clock.now, waitMs: 2_000, pollMs: 5 });
    const waited = waiter.begin(run(), "ship");
    await new Promise((resolve) => setTimeout(resolve, 30));
    await runner.end(claim, { kind: "done", json: '"shipped"' });
    expect(await waited).toEqual({ kind: "replay", result: "shipped" });
  });

  it("a claim of this host that none of its runs holds (its thread ended) is taken over at once", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const steps = journal(store, clock, "host-a");
    const claim = claimOf(await steps.begin(run(), "charge"));
    await expect(steps.begin(run(), "charge")).rejects.toMatchObject({ problem: "busy" }); // held: busy
    steps.abandon(claim);
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect((await steps.begin(run(), "charge")).kind).toBe("run");
    // The record of a run of this host that never ended (another process of the same id cannot exist):
    await store.update(
      stepRecordKey("pay", "ORDERS:1", "charge"),
      JSON.stringify({ state: "running", owner: "host-a/999", leaseMs: 60_000, startedAt: 0, expiresAt: clock.ms + 60_000 }),
      (await store.get(stepRecordKey("pay", "ORDERS:1", "charge")))!.revision,
    );
    expect((await steps.begin(run(), "charge")).kind).toBe("run");
  });

  it("two claims at once: exactly one wins the compare-and-set", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const results = await Promise.allSettled([
      journal(store, clock, "host-a").begin(run(), "charge"),
      journal(store, clock, "host-b").begin(run(), "charge"),
    ]);
    expect(results.filter((result) => result.status === "fulfilled" && result.value.kind === "run")).toHaveLength(1);
    expect(results.filter((result) => result.status === "rejected")).toHaveLength(1);
  });

  it("a late result of a claim taken over leaves the other run's record", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const slow = journal(store, clock, "host-a");
    const late = claimOf(await slow.begin(run(), "charge"));
    const other = journal(store, clock, "host-b");
    await other.begin(run(), "charge").catch(() => {});
    clock.ms += FN.timeoutMs + LEASE_MARGIN_MS;
    await other.end(claimOf(await other.begin(run(), "charge")), { kind: "done", json: '"b"' });
    await slow.end(late, { kind: "done", json: '"a"' });
    expect(await other.begin(run(), "charge")).toEqual({ kind: "replay", result: "b" });
  });

  it("without a run id (a call with no Idempotency-Key) nothing is recorded", async () => {
    const store = new MemoryStepStore();
    const steps = journal(store, new Clock());
    const begin = await steps.begin({ headers: {}, stream: "", seq: 0, parent: ROOT_CONTEXT }, "charge");
    expect(begin).toMatchObject({ kind: "run", key: expect.stringMatching(/^pay:[0-9a-f-]{36}:charge$/) });
    await steps.end(claimOf(begin), { kind: "done", json: "1" });
    expect(store.records.size).toBe(0);
  });

  it("looks for a completion record on a redelivery, or on a first delivery with a message id once steps ran here", async () => {
    const store = new MemoryStepStore();
    const steps = journal(store, new Clock());
    const delivery = (deliveryCount: number, headers: Record<string, string> = {}) => ({ ...run(1, headers), deliveryCount });
    expect(steps.mayBeCompleted(delivery(1))).toBe(false);
    expect(steps.mayBeCompleted(delivery(2))).toBe(true);
    expect(steps.mayBeCompleted(delivery(1, { "Nats-Msg-Id": "order-1" }))).toBe(false);
    expect(await steps.completed(delivery(2))).toBe(false);
    await steps.end(claimOf(await steps.begin(run(), "charge")), { kind: "done", json: "1" });
    expect(steps.mayBeCompleted(delivery(1, { "Nats-Msg-Id": "order-1" }))).toBe(true);
    await steps.complete(run());
    expect(await steps.completed(run())).toBe(true);
    expect(await steps.completed(run(2))).toBe(false);
    expect(new StepJournal({ fn: FN }).mayBeCompleted(delivery(2))).toBe(false);
  });

  it("writes a completion record in one write, and over one the run wrote before (a run completed twice)", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const steps = journal(store, clock);
    const key = completionRecordKey("pay", "ORDERS:1");
    await steps.complete(run());
    const first = JSON.parse(store.records.get(key)!) as { at: number };
    clock.ms += 1_000;
    await steps.complete(run());
    expect(JSON.parse(store.records.get(key)!)).toMatchObject({ state: "completed", at: first.at + 1_000 });
  });

  it("caps the result size by the server's max_payload", () => {
    const steps = new StepJournal({ fn: FN, store: async () => new MemoryStepStore(), maxPayload: () => 64 * 1024 });
    expect(steps.maxResultBytes).toBe(63 * 1024);
  });
});

/**
 * `idempotency: { key, ttl }`: its config, and the key claims of IdempotencyGuard over the
 * in-memory store (the KV bucket's compare-and-set rules) with a manual clock. The same
 * against a real nats-server: test/integration/idempotency.test.ts.
 */
import { afterAll, describe, expect, it } from "vitest";
import { Encoded } from "../../runtime/codec/codec.ts";
import type { CompiledFunction, CompiledIdempotency } from "../../runtime/config/types.ts";
import type { Delivery } from "../../runtime/contracts/delivery.ts";
import { idempotencyRecordKey, parseIdempotencyRecord } from "../../runtime/contracts/idempotency.ts";
import { parseStepRecordKey } from "../../runtime/contracts/steps.ts";
import { IdempotencyGuard, type KeyClaim, type RunClaim } from "../../runtime/invoke/idempotency.ts";
import { MemoryStepStore } from "../../runtime/invoke/memory-step-store.ts";
import { settle } from "../../runtime/invoke/outcome-table.ts";
import { cleanup, errorsOf, FUNCTION_A, load, ORDERS_STREAM } from "./config-fixtures.ts";

afterAll(cleanup);

const FN = load([
  "functions:",
  "  - name: pay",
  "    handler: functions/a.ts",
  "    stream: ORDERS",
  "    subjects: [orders.created]",
  "    timeout: 10s",
  "    output: orders.paid",
  "    idempotency: { key: order.id }",
]).functions[0]! as CompiledFunction & { idempotency: CompiledIdempotency };

describe("idempotency: in functions.yaml", () => {
  it("compiles the key as ordering.key's (a JSON path, subject:N or header:Name) and the ttl (default 24h)", () => {
    expect(FN.idempotency).toEqual({ key: { kind: "json", path: ["order", "id"] }, ttlMs: 24 * 3_600_000 });
    const config = load([
      ...ORDERS_STREAM,
      "functions:",
      ...FUNCTION_A,
      '    idempotency: { key: "header:Order-Id", ttl: 1h }',
      "  - name: b",
      "    handler: functions/a.ts",
      "    stream: ORDERS",
      "    subjects: [orders.updated]",
      '    idempotency: { key: "subject:2" }',
    ]);
    expect(config.functions[0]!.idempotency).toEqual({ key: { kind: "header", name: "Order-Id" }, ttlMs: 3_600_000 });
    expect(config.functions[1]!.idempotency).toEqual({ key: { kind: "subject", token: 2 }, ttlMs: 24 * 3_600_000 });
    expect(load(["functions:", ...FUNCTION_A]).functions[0]!.idempotency).toBeUndefined();
  });

  it("reports a missing key, a bad key or ttl, an unknown key, and idempotency under defaults:", () => {
    expect(
      errorsOf([
        "defaults:",
        "  idempotency: { key: id }",
        "functions:",
        ...FUNCTION_A,
        '    idempotency: { key: "subject:0", ttl: 500ms, scope: all }',
        "  - name: b",
        "    handler: functions/a.ts",
        "    stream: ORDERS",
        "    subjects: [orders.updated]",
        "    idempotency: { ttl: 1h }",
      ]),
    ).toEqual([
      'functions.yaml:2:3 defaults.idempotency: "idempotency" is set per function and cannot be in defaults',
      'functions.yaml:8:25 functions[0].idempotency.key: expected a JSON path like customer.id, subject:2 or header:Name, got "subject:0"',
      'functions.yaml:8:43 functions[0].idempotency.ttl: expected a duration of at least 1s, got "500ms"',
      'functions.yaml:8:50 functions[0].idempotency.scope: unknown key "scope"',
      'functions.yaml:13:18 functions[1].idempotency.key: missing required key "key"',
    ]);
  });
});

/** A manual clock: wall (epoch ms) and monotonic (ms) move together. */
class Clock {
  ms = 1_000_000;
  readonly now = () => this.ms;
  readonly monotonic = () => this.ms;
}

function guard(store: MemoryStepStore, clock: Clock, hostId = "host-a", waitMs = 0): IdempotencyGuard {
  return new IdempotencyGuard({ fn: FN, store: async () => store, hostId, now: clock.now, monotonic: clock.monotonic, waitMs, pollMs: 5 });
}

function delivery(seq: number, body: unknown, extra: Partial<Delivery> = {}): Delivery {
  const nothing = (): void => {};
  return {
    data: new TextEncoder().encode(JSON.stringify(body)),
    subject: "orders.created",
    headers: {},
    stream: "ORDERS",
    seq,
    deliveryCount: 1,
    timestamp: new Date(),
    ack: nothing,
    nak: nothing,
    term: nothing,
    working: nothing,
    ...extra,
  };
}

function held(claim: KeyClaim): RunClaim {
  if (claim.kind !== "run") throw new Error(`expected a claim, got ${JSON.stringify(claim)}`);
  return claim;
}

const order = (id: string) => ({ order: { id } });

describe("IdempotencyGuard", () => {
  it("the first event of a key runs; a later one (another sequence, another msg id) is a duplicate with the first run's output", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const keys = guard(store, clock);
    const first = held(await keys.claim(delivery(1, order("o-1"))));
    expect(parseIdempotencyRecord(store.records.get(idempotencyRecordKey("pay", "o-1"))!)).toMatchObject({
      state: "running",
      run: "ORDERS:1",
      leaseMs: 15_000,
    });
    await keys.done(first, delivery(1, order("o-1")), { paid: "o-1" });
    const later = await keys.claim(delivery(7, order("o-1"), { headers: { "Nats-Msg-Id": "another" } }));
    expect(later.kind).toBe("duplicate");
    const outcome = (later as Extract<KeyClaim, { kind: "duplicate" }>).outcome;
    expect(outcome).toMatchObject({ kind: "duplicate", output: { msgId: "pay:ORDERS:1" } });
    // Settled as an ack with the first run's output, as it was published.
    const settlement = settle(outcome, 1, FN.retry);
    expect(settlement.action).toBe("ack");
    const value = (settlement as { output: unknown }).output as Encoded;
    expect(value).toBeInstanceOf(Encoded);
    expect(JSON.parse(new TextDecoder().decode(value.bytes))).toEqual({ paid: "o-1" });
    // Other keys, and events without one, are not held by it.
    expect((await keys.claim(delivery(8, order("o-2")))).kind).toBe("run");
    expect(await keys.claim(delivery(9, { order: {} }))).toEqual({ kind: "none" });
    expect(await keys.claim(delivery(10, order("o-1"), { replayOf: { stream: "ORDERS", seq: 1 } }))).toEqual({ kind: "none" });
  });

  it("keeps no output for a function without one, and a completion without output is a plain duplicate", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const { output: _, ...noOutput } = FN;
    const keys = new IdempotencyGuard({ fn: noOutput, store: async () => store, now: clock.now, monotonic: clock.monotonic, waitMs: 0 });
    await keys.done(held(await keys.claim(delivery(1, order("o-1")))), delivery(1, order("o-1")), { paid: "o-1" });
    expect(await keys.claim(delivery(2, order("o-1")))).toEqual({ kind: "duplicate", outcome: { kind: "duplicate" } });
  });

  it("a released key (a failed run) runs again; a done key runs again after its ttl", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const keys = guard(store, clock);
    await keys.release(held(await keys.claim(delivery(1, order("o-1")))));
    expect(store.records.size).toBe(0);
    const second = held(await keys.claim(delivery(2, order("o-1"))));
    await keys.done(second, delivery(2, order("o-1")), undefined);
    // Ended claims are written once: a release after done changes nothing.
    await keys.release(second);
    expect((await keys.claim(delivery(3, order("o-1")))).kind).toBe("duplicate");
    clock.ms += 24 * 3_600_000;
    expect((await keys.claim(delivery(4, order("o-1")))).kind).toBe("run");
  });

  it("a key another host runs: busy (handed back) until that host has held it for its whole lease, then taken over", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    held(await guard(store, clock, "host-a").claim(delivery(1, order("o-1"))));
    const other = guard(store, clock, "host-b");
    expect(await other.claim(delivery(2, order("o-1")))).toMatchObject({ kind: "busy", retryAfterMs: 5_000 });
    clock.ms += 14_000;
    expect(await other.claim(delivery(2, order("o-1")))).toMatchObject({ kind: "busy", retryAfterMs: 1_000 });
    clock.ms += 1_000;
    const taken = held(await other.claim(delivery(2, order("o-1"))));
    expect(parseIdempotencyRecord(store.records.get(taken.recordKey)!)).toMatchObject({ state: "running", run: "ORDERS:2" });
  });

  it("a key this host claimed for a run it no longer holds (its process restarted its runs) is taken over at once", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const keys = guard(store, clock, "host-a");
    const first = held(await keys.claim(delivery(1, order("o-1"))));
    // Another delivery on this host while the first runs: busy.
    expect((await keys.claim(delivery(2, order("o-1")))).kind).toBe("busy");
    // A guard of the same host id whose runs hold nothing (what a claim left behind looks like).
    expect((await guard(store, clock, "host-a").claim(delivery(2, order("o-1")))).kind).toBe("run");
    // The first claim's record was written over: its done does not stand.
    await keys.done(first, delivery(1, order("o-1")), undefined);
    expect(parseIdempotencyRecord(store.records.get(first.recordKey)!)).toMatchObject({ state: "running", run: "ORDERS:2" });
  });

  it("waits for a run of its key on another host and is then its duplicate", async () => {
    const store = new MemoryStepStore();
    const clock = new Clock();
    const keys = guard(store, clock, "host-a");
    const first = held(await keys.claim(delivery(1, order("o-1"))));
    const waiting = new IdempotencyGuard({ fn: FN, store: async () => store, hostId: "host-b", now: clock.now, waitMs: 2_000, pollMs: 5 });
    const second = waiting.claim(delivery(2, order("o-1")));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await keys.done(first, delivery(1, order("o-1")), { paid: "o-1" });
    expect((await second).kind).toBe("duplicate");
  });

  it("a store that fails: the event is handed back (fails closed), and the key's records stay out of a run's", async () => {
    const keys = new IdempotencyGuard({
      fn: FN,
      store: async () => {
        throw new Error("no responders");
      },
    });
    expect(await keys.claim(delivery(1, order("o-1")))).toMatchObject({ kind: "busy", retryAfterMs: 1_000 });
    // `jetfn steps show` reads `<function>.<run id>.<step>` keys only.
    expect(parseStepRecordKey(idempotencyRecordKey("pay", "o-1"))).toBeUndefined();
  });
});

import { describe, expect, it } from "vitest";
import type { Delivery } from "../../runtime/contracts/delivery.ts";
import { eventKey, MISSING_KEY } from "../../runtime/contracts/event-key.ts";
import { escapeName, forwarded } from "../../runtime/contracts/ordered.ts";
import { Heartbeats } from "../../runtime/invoke/heartbeats.ts";
import { PartitionFence } from "../../runtime/ordering/fence.ts";
import { partitionOf } from "../../runtime/ordering/key.ts";
import { KeyLanes, type RunResult, Slots } from "../../runtime/ordering/lanes.ts";

const bytes = (value: unknown) => new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));

function delivery(seq: number, key = "k", extra: Partial<Delivery> = {}): Delivery & { beats: number } {
  const d = {
    data: bytes({ key }),
    subject: `s.${key}`,
    headers: {},
    stream: "S",
    seq,
    deliveryCount: 1,
    timestamp: new Date(),
    beats: 0,
    ack() {},
    nak() {},
    term() {},
    working() {
      d.beats++;
    },
    ...extra,
  };
  return d;
}

describe("ordering keys", () => {
  it("reads a JSON path, a subject token or a header, and gives events without one the missing key", () => {
    const d = { data: bytes({ customer: { id: "c-1", n: 7 } }), subject: "orders.eu.created", headers: { "Tenant-Id": "t-9" } };
    expect(eventKey(d, { kind: "json", path: ["customer", "id"] })).toBe("c-1");
    expect(eventKey(d, { kind: "json", path: ["customer", "n"] })).toBe("7");
    expect(eventKey(d, { kind: "subject", token: 2 })).toBe("eu");
    expect(eventKey(d, { kind: "header", name: "tenant-id" })).toBe("t-9");
    expect(eventKey(d, { kind: "json", path: ["customer", "missing"] })).toBe(MISSING_KEY);
    expect(eventKey(d, { kind: "json", path: ["customer"] })).toBe(MISSING_KEY); // an object is no key
    expect(eventKey(d, { kind: "subject", token: 4 })).toBe(MISSING_KEY);
    expect(eventKey(d, { kind: "header", name: "Other" })).toBe(MISSING_KEY);
    expect(eventKey({ ...d, data: bytes("{not json") }, { kind: "json", path: ["a"] })).toBe(MISSING_KEY);
  });

  it("puts a key in the same partition every time, and spreads keys over all partitions", () => {
    expect(partitionOf("account-42", 8)).toBe(partitionOf("account-42", 8));
    // FNV-1a 32 is fixed for ever: a change would move keys between partitions on upgrade.
    expect(partitionOf("a", 1_000_000)).toBe(0xe40c292c % 1_000_000);
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 8000; i++) counts[partitionOf(`key-${i}`, 8)]!++;
    for (const count of counts) expect(count).toBeGreaterThan(800);
  });
});

/** Lanes whose runs the test finishes by hand. */
function lanes(limit = 4, mayStart = () => true) {
  const slots = new Slots(limit);
  const runs: { seq: number; finish: (result: RunResult) => void }[] = [];
  const waits: number[] = [];
  const keyLanes = new KeyLanes({
    slots,
    mayStart,
    heartbeats: new Heartbeats(20),
    waited: (s) => waits.push(s),
    run: (d) => new Promise<RunResult>((resolve) => runs.push({ seq: d.seq, finish: resolve })),
  });
  const running = () => runs.map((r) => r.seq);
  const finish = async (seq: number, result: RunResult = "settled") => {
    const at = runs.findIndex((r) => r.seq === seq);
    runs.splice(at, 1)[0]!.finish(result);
    await new Promise((r) => setImmediate(r));
  };
  return { keyLanes, slots, running, finish, waits };
}

describe("partition fence", () => {
  it("passes a delivery's settlement through until the partition's lease is lost, then sends nothing", () => {
    const sent: string[] = [];
    const raw = delivery(7, "a", {
      ack: () => sent.push("ack"),
      nak: (ms: number) => sent.push(`nak ${ms}`),
      term: () => sent.push("term"),
      working: () => sent.push("working"),
    });
    const held = true;
    const fence = new PartitionFence(() => held);
    const fenced = fence.wrap(raw);
    expect([fenced.seq, fenced.subject, fenced.stream, fenced.data]).toEqual([7, "s.a", "S", raw.data]);
    fenced.working();
    fenced.nak(5);
    expect(fenced.revoked?.aborted).toBe(false);
    fence.revoke();
    expect(fenced.revoked?.aborted).toBe(true);
    fenced.ack();
    fenced.nak(0);
    fenced.term();
    fenced.working();
    expect(sent).toEqual(["working", "nak 5"]);
    // Deliveries wrapped after the loss are revoked from the start.
    expect(fence.wrap(raw).revoked?.aborted).toBe(true);
  });

  it("sends nothing once the lease ran out by the host's clock, before the loss is reported", () => {
    const sent: string[] = [];
    let held = true;
    const fenced = new PartitionFence(() => held).wrap(delivery(8, "a", { ack: () => sent.push("ack") }));
    held = false; // a process woken after a stall: its deadline passed, no timer has run yet
    fenced.ack();
    expect(sent).toEqual([]);
    expect(fenced.revoked?.aborted).toBe(true);
  });
});

describe("forwarded copies", () => {
  it("carry the original's headers under names the server does not act on, and give them back as they were", () => {
    const original = { "Nats-Msg-Id": "order-7", "nats-rollup": "sub", "Jetfn-Ordered-Seq": "mine", "X-Trace": "t1" };
    const escaped = Object.keys(original).map(escapeName);
    expect(escaped).toEqual([
      "Jetfn-Ordered-Orig-Nats_Msg-Id",
      "Jetfn-Ordered-Orig-nats_rollup",
      "Jetfn-Ordered-Orig-Jetfn-Ordered-Seq",
      "X-Trace",
    ]);
    // No name the server reads (Nats-*) appears anywhere in an escaped name.
    for (const name of escaped) expect(name.toLowerCase()).not.toContain("nats-");
    const copyHeaders: Record<string, string> = {
      "Nats-Msg-Id": "S:42",
      "Nats-Expected-Last-Msg-Id": "S:41",
      "Jetfn-Ordered-Subject": "orders.created",
      "Jetfn-Ordered-Stream": "ORDERS",
      "Jetfn-Ordered-Seq": "42",
      "Jetfn-Ordered-Time": "1700000000000",
    };
    for (const [name, value] of Object.entries(original)) copyHeaders[escapeName(name)] = value;
    const seen = forwarded(delivery(9, "k", { headers: copyHeaders, stream: "JETFN_ORDERED_f", subject: "jetfn.ordered.f.0" }));
    expect({ ...seen.headers }).toEqual(original);
    expect([seen.subject, seen.stream, seen.seq, seen.timestamp.getTime()]).toEqual(["orders.created", "ORDERS", 42, 1700000000000]);
  });
});

describe("key lanes", () => {
  it("runs one event per key at a time, in stream order, and different keys in parallel", async () => {
    const { keyLanes, running, finish } = lanes();
    keyLanes.add("a", delivery(1, "a"));
    keyLanes.add("a", delivery(2, "a"));
    keyLanes.add("b", delivery(3, "b"));
    keyLanes.add("a", delivery(4, "a"));
    expect(running()).toEqual([1, 3]);
    await finish(1);
    expect(running()).toEqual([3, 2]);
    await finish(2);
    expect(running()).toEqual([3, 4]);
    await finish(3);
    await finish(4);
    expect(keyLanes.size).toBe(0);
    keyLanes.close();
  });

  it("starts an older event that arrives while a later one of its key runs (a copy forwarded again) once that one ends", async () => {
    const { keyLanes, running, finish } = lanes();
    keyLanes.add("a", delivery(5, "a"));
    expect(running()).toEqual([5]);
    keyLanes.add("a", delivery(3, "a"));
    keyLanes.add("a", delivery(7, "a"));
    expect(running()).toEqual([5]);
    await finish(5);
    expect(running()).toEqual([3]);
    await finish(3);
    expect(running()).toEqual([7]);
    await finish(7);
    expect(keyLanes.size).toBe(0);
    keyLanes.close();
  });

  it("keeps a handed-back event first in its key: its successors wait for its redelivery; other keys go on", async () => {
    const { keyLanes, running, finish } = lanes();
    const first = keyLanes.add("a", delivery(1, "a"));
    keyLanes.add("a", delivery(2, "a"));
    keyLanes.add("b", delivery(3, "b"));
    await finish(1, "again");
    await first; // the delivery object is done with: the server has the message back
    expect(running()).toEqual([3]);
    await finish(3);
    expect(running()).toEqual([]);
    keyLanes.add("a", delivery(1, "a", { deliveryCount: 2 })); // the redelivery
    expect(running()).toEqual([1]);
    await finish(1);
    expect(running()).toEqual([2]);
    await finish(2);
    keyLanes.close();
  });

  it("shares the concurrency across lanes, and starts nothing while it may not", async () => {
    let may = false;
    const { keyLanes, running, finish } = lanes(2, () => may);
    for (let i = 1; i <= 4; i++) keyLanes.add(`k${i}`, delivery(i, `k${i}`));
    expect(running()).toEqual([]);
    may = true;
    keyLanes.pump();
    expect(running()).toEqual([1, 2]);
    await finish(1);
    expect(running()).toEqual([2, 3]);
    keyLanes.close();
  });

  it("heartbeats waiting events, and lets go of them on drop while running ones finish", async () => {
    const { keyLanes, running, finish } = lanes(1);
    const a1 = delivery(1, "a");
    const a2 = delivery(2, "a");
    keyLanes.add("a", a1);
    const second = keyLanes.add("a", a2);
    await new Promise((r) => setTimeout(r, 70));
    expect(a2.beats).toBeGreaterThanOrEqual(2);
    expect(a1.beats).toBe(0); // running: its heartbeats are the invoker's
    keyLanes.drop();
    await second;
    expect(keyLanes.size).toBe(1);
    await finish(1);
    expect(running()).toEqual([]);
    expect(keyLanes.size).toBe(0);
    await keyLanes.settled();
    keyLanes.close();
  });
});

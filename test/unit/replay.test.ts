import { describe, expect, it } from "vitest";
import type { Delivery } from "../../runtime/contracts/delivery.ts";
import type { Gate } from "../../runtime/contracts/gate.ts";
import { formatReplayOf, parseReplayOf, replayMsgId, replaySubject } from "../../runtime/contracts/replay.ts";
import { PullBudget } from "../../runtime/nats/pull-budget.ts";
import { ReplayGate, replayed } from "../../runtime/nats/replay-watch.ts";

describe("the replay contract", () => {
  it("names a replay's subject, original and message id", () => {
    expect(replaySubject("charge-payment")).toBe("jetfn.replay.charge-payment");
    expect(formatReplayOf({ stream: "ORDERS", seq: 42 })).toBe("ORDERS:42");
    expect(parseReplayOf("ORDERS:42")).toEqual({ stream: "ORDERS", seq: 42 });
    for (const bad of [undefined, "", "ORDERS", "ORDERS:", "ORDERS:0", "ORDERS:-1", ":4", "ORDERS:4x"])
      expect(parseReplayOf(bad)).toBeUndefined();
    expect(replayMsgId("f", { stream: "ORDERS", seq: 7 })).toBe("replay:f:ORDERS:7");
    expect(replayMsgId("f", { stream: "ORDERS", seq: 7 }, "again")).toBe("replay:f:again:ORDERS:7");
  });
});

describe("a replay's copy as the function sees it", () => {
  const settled: string[] = [];
  const copy: Delivery = {
    data: new Uint8Array([1]),
    subject: "jetfn.replay.f",
    headers: { "Jetfn-Replay-Of": "ORDERS:5", "Jetfn-Subject": "orders.created", "X-Note": "kept" },
    stream: "JETFN_REPLAY",
    seq: 3,
    deliveryCount: 2,
    timestamp: new Date(0),
    ack: () => settled.push("ack"),
    nak: (delayMs) => settled.push(`nak ${delayMs}`),
    term: () => settled.push("term"),
    working: () => settled.push("working"),
  };

  it("has the original's subject and place, and the copy's own sequence and settlement", () => {
    const delivery = replayed(copy);
    expect(delivery).toMatchObject({
      subject: "orders.created",
      replayOf: { stream: "ORDERS", seq: 5 },
      stream: "JETFN_REPLAY",
      seq: 3,
      deliveryCount: 2,
    });
    expect(delivery.headers["X-Note"]).toBe("kept");
    delivery.nak(100);
    delivery.ack();
    expect(settled).toEqual(["nak 100", "ack"]);
  });

  it("is still a replay without jetfn's headers (published by hand): of itself, on its own subject", () => {
    expect(replayed({ ...copy, headers: {} })).toMatchObject({ subject: "jetfn.replay.f", replayOf: { stream: "JETFN_REPLAY", seq: 3 } });
  });
});

describe("PullBudget", () => {
  it("keeps the loops together within the capacity, each within its limit", () => {
    const budget = new PullBudget(4);
    let replaysWaiting = false;
    const live = budget.part(() => (replaysWaiting ? 2 : 4));
    const replays = budget.part(() => 2);
    expect([live.free(), replays.free()]).toEqual([4, 2]);
    live.take(4);
    expect([live.free(), replays.free()]).toEqual([0, 0]);
    // Replays wait: the live loop holds more than its limit until its pulls give room back.
    replaysWaiting = true;
    live.give(1);
    expect([live.free(), replays.free()]).toEqual([0, 1]);
    live.give(1);
    replays.take(2);
    expect([live.free(), replays.free(), live.limit]).toEqual([0, 0, 2]);
    replaysWaiting = false;
    live.give(2);
    expect([live.free(), replays.free()]).toEqual([2, 0]);
  });

  it("tells every loop when any gives room back", () => {
    const budget = new PullBudget(2);
    const a = budget.part();
    const b = budget.part();
    const told: string[] = [];
    a.onGive(() => told.push("a"));
    b.onGive(() => told.push("b"));
    b.take(1);
    b.give(1);
    expect(told).toEqual(["a", "b"]);
  });
});

describe("ReplayGate", () => {
  const closers: Array<() => void> = [];
  const admission: Gate = {
    closedForMs: () => 0,
    allowance: () => Number.POSITIVE_INFINITY,
    probing: false,
    onClose: (l) => {
      closers.push(l);
      return () => {};
    },
    onOpen: () => () => {},
  };

  it("is closed while no replay waits, and otherwise the function's admission", () => {
    const gate = new ReplayGate(admission);
    expect(gate.allowance()).toBe(0);
    gate.waiting = 3;
    expect(gate.allowance()).toBe(Number.POSITIVE_INFINITY);
    gate.onClose(() => {});
    expect(closers).toHaveLength(1);
  });
});

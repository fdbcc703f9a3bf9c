import { describe, expect, it } from "vitest";
import { PullBudget, type PullState, pullSize } from "../../runtime/nats/pull-budget.ts";

const INF = Number.POSITIVE_INFINITY;
/** An open gate, no pull open, the default 4 pulls, a limit of 16 with all of it free. */
const open: PullState = { allowance: INF, room: 16, probing: false, openPulls: 0, maxPulls: 4, limit: 16 };

describe("pullSize", () => {
  it.each([
    // why                                              state                                          asks
    ["gate closed (paused, breaker open, broker hold)", { allowance: 0 }, 0],
    ["no room: every slot runs or is asked for", { room: 0 }, 0],
    ["room below zero after a limit shrank", { room: -3 }, 0],
    ["idle: all the room", {}, 16],
    ["idle with little room: still all of it", { room: 1 }, 1],
    ["a pull open, a quarter of the limit free", { openPulls: 1, room: 4 }, 4],
    ["a pull open, less than a quarter free: wait for a batch", { openPulls: 1, room: 3 }, 0],
    ["a quarter rounds up (limit 10: 3)", { openPulls: 1, limit: 10, room: 3 }, 3],
    ["a quarter rounds up (limit 10: 2 is not enough)", { openPulls: 1, limit: 10, room: 2 }, 0],
    ["limit 1: one free slot is a batch", { openPulls: 1, limit: 1, room: 1 }, 1],
    ["three pulls open of four", { openPulls: 3, room: 8 }, 8],
    ["maxPulls open: wait", { openPulls: 4, room: 16 }, 0],
    ["maxPulls 1 with a pull open: wait", { maxPulls: 1, openPulls: 1, room: 16 }, 0],
    ["probing: only the free probes", { probing: true, allowance: 1 }, 1],
    ["probing: no more than the room", { probing: true, allowance: 3, room: 2 }, 2],
    ["probing: one pull at a time", { probing: true, allowance: 1, openPulls: 1 }, 0],
    ["probing, probes all used", { probing: true, allowance: 0 }, 0],
    ["probing without room", { probing: true, allowance: 1, room: 0 }, 0],
  ] as const)("%s", (_, change, asks) => {
    expect(pullSize({ ...open, ...change })).toBe(asks);
  });

  it("reads only what the decision needs, each at most once, in order", () => {
    const reads: string[] = [];
    const state = (values: Partial<PullState>): PullState => {
      const all = { ...open, ...values };
      const view = {} as Record<string, unknown>;
      for (const key of Object.keys(all) as (keyof PullState)[]) {
        Object.defineProperty(view, key, { get: () => (reads.push(key), all[key]) });
      }
      return view as unknown as PullState;
    };
    // A closed gate: the breaker's state (probing) is not read at all.
    expect(pullSize(state({ allowance: 0 }))).toBe(0);
    expect(reads.splice(0)).toEqual(["allowance"]);
    expect(pullSize(state({ room: 0 }))).toBe(0);
    expect(reads.splice(0)).toEqual(["allowance", "room"]);
    expect(pullSize(state({ probing: true, allowance: 1 }))).toBe(1);
    expect(reads.splice(0)).toEqual(["allowance", "room", "probing", "openPulls"]);
    expect(pullSize(state({ openPulls: 1, room: 8 }))).toBe(8);
    expect(reads.splice(0)).toEqual(["allowance", "room", "probing", "openPulls", "maxPulls", "limit"]);
  });
});

describe("PullBudget", () => {
  it("gives a lone part the whole capacity, taken and given back", () => {
    const part = new PullBudget(8).part();
    expect([part.limit, part.free()]).toEqual([8, 8]);
    part.take(5);
    expect(part.free()).toBe(3);
    part.give(2);
    expect(part.free()).toBe(5);
  });

  it("never lets its parts together hold more than the capacity", () => {
    const budget = new PullBudget(8);
    const live = budget.part();
    const replay = budget.part();
    live.take(6);
    expect(replay.free()).toBe(2);
    replay.take(2);
    expect([live.free(), replay.free()]).toEqual([0, 0]);
    live.give(6);
    expect([live.free(), replay.free()]).toEqual([6, 6]);
  });

  it("holds each part to its own limit, read anew each time", () => {
    const budget = new PullBudget(8);
    let share = 2;
    const replay = budget.part(() => share);
    const live = budget.part(() => 8 - share);
    expect([live.limit, live.free(), replay.free()]).toEqual([6, 6, 2]);
    live.take(6);
    // Replays are done: live may have it all, what it holds counting against it.
    share = 0;
    expect([live.limit, live.free(), replay.free()]).toEqual([8, 2, 0]);
    // A share that grows while live holds more than its new limit: no negative room.
    share = 4;
    expect([live.free(), replay.free()]).toEqual([0, 2]);
  });

  it("tells every part when any of them gives room back", () => {
    const budget = new PullBudget(4);
    const a = budget.part();
    const b = budget.part();
    const told: string[] = [];
    a.onGive(() => told.push("a"));
    b.onGive(() => told.push("b"));
    a.take(2);
    expect(told).toEqual([]);
    a.give(1);
    b.take(1);
    b.give(1);
    expect(told).toEqual(["a", "b", "a", "b"]);
  });

  it("with pullSize: a busy loop waits until a quarter of its limit is free again", () => {
    const part = new PullBudget(16).part();
    const want = (openPulls: number): number => pullSize({ ...open, room: part.free(), limit: part.limit, openPulls });
    expect(want(0)).toBe(16);
    part.take(16);
    part.give(3); // three finished while the pull is still open
    expect(want(1)).toBe(0);
    part.give(1);
    expect(want(1)).toBe(4);
  });
});

import { describe, expect, it } from "vitest";
import { Capacity } from "../../runtime/function/capacity.ts";

const fn = { concurrency: 8, ackWaitMs: 40_000, timeoutMs: 10_000, ordering: undefined };

describe("Capacity: one owner of what a function holds", () => {
  it("gives live events the whole concurrency while no replay waits, and half of it to replays when some do", () => {
    let replaysWaiting = false;
    const capacity = new Capacity(fn, { waitingRoom: 0 }, () => replaysWaiting);
    expect(capacity.liveCapacity).toBe(8);
    expect(capacity.live.limit).toBe(8);
    expect(capacity.replays.limit).toBe(4);
    replaysWaiting = true;
    expect(capacity.live.limit).toBe(4);
    // The two share one budget: what live events hold is not there for replays.
    capacity.live.take(4);
    expect(capacity.replays.free()).toBe(4);
    capacity.replays.take(4);
    expect(capacity.live.free()).toBe(0);
    capacity.replays.give(4);
    replaysWaiting = false;
    expect(capacity.live.free()).toBe(4);
  });

  it("adds the executor's waiting room to the live events' room, and then heartbeats every running delivery", () => {
    const capacity = new Capacity(fn, { waitingRoom: 2 }, () => false);
    expect(capacity.liveCapacity).toBe(10);
    expect(capacity.live.limit).toBe(10);
    expect(capacity.heartbeat).toBe(true);
    expect(new Capacity(fn, { waitingRoom: 0 }, () => false).heartbeat).toBe(false);
  });

  it("heartbeats running deliveries when the timeout may outlive half the ack wait", () => {
    expect(new Capacity({ ...fn, timeoutMs: 25_000 }, { waitingRoom: 0 }, () => false).heartbeat).toBe(true);
    expect(new Capacity({ ...fn, timeoutMs: 20_000 }, { waitingRoom: 0 }, () => false).heartbeat).toBe(false);
  });

  it("gives an ordered function's replays a concurrency of their own, and replays at least 1 slot", () => {
    const ordered = new Capacity(
      { ...fn, ordering: { key: { kind: "json", path: ["id"] }, partitions: 4, leaseTtlMs: 10_000 } },
      { waitingRoom: 0 },
      () => true,
    );
    ordered.live.take(8);
    expect(ordered.replays.free()).toBe(8);
    expect(new Capacity({ ...fn, concurrency: 1 }, { waitingRoom: 0 }, () => true).replays.limit).toBe(1);
  });
});

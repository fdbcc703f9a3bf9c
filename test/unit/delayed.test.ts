import { describe, expect, it } from "vitest";
import {
  bucketFilter,
  bucketOf,
  bucketStart,
  DelayError,
  delayedPublication,
  delayedSubject,
  deliveryMsgId,
  dueOf,
  formatDeliverAt,
  isForwardedHeader,
  MAX_DELAY_MS,
  parseDelayedId,
  parseDelayedSubject,
  parseDeliverAt,
  resolveDeliverAt,
  targetFilter,
  targetProblem,
} from "../../runtime/contracts/delayed.ts";
import { ParkedTargets } from "../../runtime/nats/delayed-parking.ts";

const NOW = Date.parse("2025-06-01T09:00:00.000Z");

describe("buckets and subjects", () => {
  it("puts a due time in the bucket of its whole epoch second", () => {
    expect(bucketOf(NOW)).toBe(NOW / 1000);
    expect(bucketOf(NOW + 999)).toBe(NOW / 1000);
    expect(bucketOf(NOW + 1000)).toBe(NOW / 1000 + 1);
    expect(bucketStart(bucketOf(NOW + 1234))).toBe(NOW + 1000);
  });

  it("names the subject jetfn.delayed.<bucket>.<target>, and reads it back", () => {
    expect(delayedSubject(1748768400, "orders.reminder")).toBe("jetfn.delayed.1748768400.orders.reminder");
    expect(parseDelayedSubject("jetfn.delayed.1748768400.orders.reminder")).toEqual({ bucket: 1748768400, target: "orders.reminder" });
    expect(bucketFilter(1748768400)).toBe("jetfn.delayed.1748768400.>");
  });

  it("reads no bucket or target from what is not a delayed event's subject", () => {
    for (const subject of [
      "jetfn.delayed.1748768400",
      "jetfn.delayed.abc.orders",
      "jetfn.delayed.-5.orders",
      "jetfn.delayed.0100.orders",
      "jetfn.delayed.5.jetfn.delayed.6.x",
      "orders.1748768400.x",
    ]) {
      expect(parseDelayedSubject(subject), subject).toBeUndefined();
    }
  });

  it("filters by target on the server: any bucket, then the target's own filter", () => {
    expect(targetFilter()).toBe("jetfn.delayed.>");
    expect(targetFilter("orders.*")).toBe("jetfn.delayed.*.orders.*");
    expect(targetFilter("orders.>")).toBe("jetfn.delayed.*.orders.>");
  });

  it("refuses targets that are empty, wildcards, malformed, or delayed events themselves", () => {
    expect(targetProblem("orders.reminder")).toBeUndefined();
    expect(targetProblem("")).toMatch(/empty/);
    expect(targetProblem("orders.*")).toMatch(/wildcard/);
    expect(targetProblem("orders.>")).toMatch(/wildcard/);
    expect(targetProblem("orders..x")).toMatch(/empty token/);
    expect(targetProblem("orders x")).toMatch(/whitespace/);
    expect(targetProblem("jetfn.delayed.5.x")).toMatch(/under jetfn\.delayed\./);
  });
});

describe("Jetfn-Deliver-At", () => {
  it("is written as epoch milliseconds", () => {
    expect(formatDeliverAt(NOW)).toBe(String(NOW));
    expect(formatDeliverAt(NOW + 0.6)).toBe(String(NOW + 1));
  });

  it("is read as epoch milliseconds or ISO 8601 with a zone", () => {
    expect(parseDeliverAt(String(NOW))).toBe(NOW);
    expect(parseDeliverAt("2025-06-01T09:00:00Z")).toBe(NOW);
    expect(parseDeliverAt("2025-06-01T11:00:00.250+02:00")).toBe(NOW + 250);
    expect(parseDeliverAt(" 2025-06-01T09:00Z ")).toBe(NOW);
  });

  it("is unreadable without a zone, as words, or negative", () => {
    for (const text of ["2025-06-01T09:00:00", "2025-06-01", "tomorrow", "-5", "1.5", "", undefined]) {
      expect(parseDeliverAt(text), String(text)).toBeUndefined();
    }
  });

  it("decides the due time; absent, the bucket's start", () => {
    expect(dueOf(NOW / 1000, NOW + 300)).toBe(NOW + 300);
    expect(dueOf(NOW / 1000, undefined)).toBe(NOW);
  });
});

describe("resolveDeliverAt", () => {
  it("adds a delay (a duration or milliseconds) to now", () => {
    expect(resolveDeliverAt({ delay: "10m" }, NOW)).toBe(NOW + 600_000);
    expect(resolveDeliverAt({ delay: "250ms" }, NOW)).toBe(NOW + 250);
    expect(resolveDeliverAt({ delay: 1500 }, NOW)).toBe(NOW + 1500);
    expect(resolveDeliverAt({ delay: "0s" }, NOW)).toBe(NOW);
    expect(resolveDeliverAt({ delay: "8760h" }, NOW)).toBe(NOW + MAX_DELAY_MS);
  });

  it("refuses a negative delay, one over a year, and one it cannot read, saying so", () => {
    expect(() => resolveDeliverAt({ delay: "-5s" }, NOW)).toThrow(new DelayError('delay must not be negative, got "-5s"'));
    expect(() => resolveDeliverAt({ delay: -1 }, NOW)).toThrow(/must not be negative, got -1 ms/);
    expect(() => resolveDeliverAt({ delay: "8761h" }, NOW)).toThrow('delay must be at most a year (8760h), got "8761h"');
    expect(() => resolveDeliverAt({ delay: MAX_DELAY_MS + 1 }, NOW)).toThrow(/at most a year/);
    expect(() => resolveDeliverAt({ delay: "ten minutes" }, NOW)).toThrow(/a duration like 10m/);
    expect(() => resolveDeliverAt({ delay: Number.NaN }, NOW)).toThrow(/finite/);
  });

  it("takes an at as a Date, an ISO 8601 time with a zone, or epoch ms", () => {
    expect(resolveDeliverAt({ at: new Date(NOW + 5000) }, NOW)).toBe(NOW + 5000);
    expect(resolveDeliverAt({ at: "2025-06-01T10:00:00+01:00" }, NOW)).toBe(NOW);
    expect(resolveDeliverAt({ at: NOW + 1 }, NOW)).toBe(NOW + 1);
  });

  it("accepts an at in the past: it is due at once", () => {
    expect(resolveDeliverAt({ at: new Date(NOW - 3_600_000) }, NOW)).toBe(NOW - 3_600_000);
  });

  it("refuses an at over a year ahead, one without a zone, and both or neither", () => {
    expect(() => resolveDeliverAt({ at: new Date(NOW + MAX_DELAY_MS + 1) }, NOW)).toThrow(/at most a year \(365 days\) ahead/);
    expect(() => resolveDeliverAt({ at: "2025-06-01 09:00" }, NOW)).toThrow(/ISO 8601 with a zone/);
    expect(() => resolveDeliverAt({ at: new Date(Number.NaN) }, NOW)).toThrow(DelayError);
    expect(() => resolveDeliverAt({ delay: "1s", at: NOW }, NOW)).toThrow("give either delay or at, not both");
    expect(() => resolveDeliverAt({}, NOW)).toThrow("give a delay or an at time");
  });
});

describe("delayedPublication", () => {
  it("is the subject of the due time's bucket and the headers plus Jetfn-Deliver-At", () => {
    const p = delayedPublication("orders.reminder", NOW + 1500, { traceparent: "00-abc-def-01", "x-k": "v" }, NOW);
    expect(p).toEqual({
      subject: `jetfn.delayed.${NOW / 1000 + 1}.orders.reminder`,
      headers: { traceparent: "00-abc-def-01", "x-k": "v", "Jetfn-Deliver-At": String(NOW + 1500) },
    });
  });

  it("puts an event due in the past in the bucket of now, keeping its time", () => {
    const p = delayedPublication("orders.reminder", NOW - 86_400_000, {}, NOW + 10);
    expect(p.subject).toBe(`jetfn.delayed.${NOW / 1000}.orders.reminder`);
    expect(p.headers["Jetfn-Deliver-At"]).toBe(String(NOW - 86_400_000));
  });

  it("rounds to whole milliseconds before choosing the bucket, so the header never names a later one", () => {
    const p = delayedPublication("t", NOW + 999.7, {}, NOW);
    expect(p.headers["Jetfn-Deliver-At"]).toBe(String(NOW + 1000));
    expect(p.subject).toBe(`jetfn.delayed.${NOW / 1000 + 1}.t`);
  });

  it("refuses a bad target and a time over a year ahead", () => {
    expect(() => delayedPublication("orders.*", NOW, {}, NOW)).toThrow(DelayError);
    expect(() => delayedPublication("t", NOW + MAX_DELAY_MS + 1, {}, NOW)).toThrow(/at most a year ahead/);
  });
});

describe("ids and headers", () => {
  it("knows an event by its stream sequence", () => {
    expect(parseDelayedId("42")).toBe(42);
    expect(parseDelayedId(" 7 ")).toBe(7);
    for (const id of ["0", "-1", "1.5", "abc", "", "01"]) expect(parseDelayedId(id), id).toBeUndefined();
  });

  it("derives the delivery's Nats-Msg-Id from the stream's creation and the id", () => {
    expect(deliveryMsgId(1700000000000, 42)).toBe("delayed:1700000000000:42");
  });

  it("forwards the event's own headers, not jetfn's or the server's", () => {
    expect(isForwardedHeader("traceparent")).toBe(true);
    expect(isForwardedHeader("X-Custom")).toBe(true);
    expect(isForwardedHeader("Jetfn-Deliver-At")).toBe(false);
    expect(isForwardedHeader("jetfn-anything")).toBe(false);
    expect(isForwardedHeader("Nats-Msg-Id")).toBe(false);
    expect(isForwardedHeader("Nats-Expected-Stream")).toBe(false);
  });
});

describe("ParkedTargets", () => {
  it("keeps a refused target's events in order and tries its first after the broker's backoff", () => {
    const parked = new ParkedTargets<string>(() => 1);
    parked.park("a", "a1", "no-responders", 0);
    parked.park("a", "a2", "no-responders", 0);
    parked.park("b", "b1", "storage-full", 50);
    expect(parked.size).toBe(3);
    expect(parked.has("a")).toBe(true);
    expect(parked.due(199)).toEqual([]);
    expect(parked.nextTryAt()).toBe(200);
    expect(parked.due(200)).toEqual([{ target: "a", event: "a1" }]);
    expect(parked.due(250)).toEqual([
      { target: "a", event: "a1" },
      { target: "b", event: "b1" },
    ]);
  });

  it("backs off 200 ms doubling to 5 s while the target keeps refusing, counting events in flight together as one refusal", () => {
    const parked = new ParkedTargets<string>(() => 1);
    parked.park("a", "a1", "no-responders", 0);
    parked.park("a", "a2", "no-responders", 0); // in flight with a1: no second backoff step
    const tries = [parked.nextTryAt()];
    for (let i = 0; i < 7; i++) {
      parked.failedAgain("a", "no-responders", tries[tries.length - 1]!);
      tries.push(parked.nextTryAt());
    }
    const gaps = tries.map((t, i) => t! - (i === 0 ? 0 : tries[i - 1]!));
    expect(gaps).toEqual([200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    expect(parked.reasons().get("a")).toEqual({ reason: "no-responders", waiting: 2 });
  });

  it("hands every event back, the tried one first, once the try passed; and forgets all when cleared", () => {
    const parked = new ParkedTargets<string>(() => 1);
    parked.park("a", "a1", "refused", 0);
    parked.park("a", "a2", "refused", 0);
    parked.park("b", "b1", "refused", 0);
    expect(parked.passed("a")).toEqual(["a1", "a2"]);
    expect(parked.has("a")).toBe(false);
    expect(parked.passed("a")).toEqual([]);
    expect(parked.clear()).toEqual(["b1"]);
    expect(parked.size).toBe(0);
    expect(parked.nextTryAt()).toBeUndefined();
  });
});

import { describe, expect, it } from "vitest";
import { Admission } from "../../runtime/invoke/admission.ts";
import { BreakerRegistry } from "../../runtime/resilience/breaker-registry.ts";
import { BreakerOpenError, NonRetryableError } from "../../runtime/sdk/errors.ts";

const policy = { failureThreshold: 2, openForMs: 1000, halfOpenRequests: 1 };

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 0;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe("Admission", () => {
  it("admits everything without a breaker, and nothing while held", () => {
    const c = clock();
    const admission = new Admission(undefined, () => {}, c.now);
    expect(admission.allowance()).toBe(Number.POSITIVE_INFINITY);
    expect(admission.tryAdmit()).toBe(true);
    let closed = 0;
    admission.onClose(() => closed++);
    admission.hold(500);
    expect(closed).toBe(1);
    expect(admission.tryAdmit()).toBe(false);
    expect(admission.closedForMs()).toBe(500);
    c.advance(500);
    expect(admission.tryAdmit()).toBe(true);
  });

  it("opens the function's breaker on failures, closes the gate, then admits one probe", () => {
    const c = clock();
    const transitions: string[] = [];
    const admission = new Admission(policy, (from, to) => transitions.push(`${from}->${to}`), c.now);
    let closed = 0;
    admission.onClose(() => closed++);
    for (let i = 0; i < 2; i++) {
      expect(admission.tryAdmit()).toBe(true);
      admission.finish({ kind: "error", error: new Error("down") }, new Set());
    }
    expect(transitions).toEqual(["closed->open"]);
    expect(closed).toBe(1);
    expect(admission.allowance()).toBe(0);
    expect(admission.closedForMs()).toBe(1000);
    c.advance(1000);
    expect(admission.probing).toBe(true);
    expect(admission.allowance()).toBe(1);
    expect(admission.tryAdmit()).toBe(true);
    expect(admission.tryAdmit()).toBe(false);
    expect(admission.finish({ kind: "success", value: undefined }, new Set())).toBeUndefined();
    expect(transitions).toEqual(["closed->open", "open->half-open", "half-open->closed"]);
  });

  it("counts crashes and timeouts against the breaker, not the handler's own verdicts", () => {
    const admission = new Admission(policy, () => {}, clock().now);
    admission.tryAdmit();
    admission.finish({ kind: "error", error: new NonRetryableError("no") }, new Set());
    admission.tryAdmit();
    admission.finish({ kind: "invalid", error: new Error("schema") }, new Set());
    expect(admission.breaker?.state).toBe("closed");
    admission.tryAdmit();
    admission.finish({ kind: "crashed", reason: "exit", error: "exit" }, new Set());
    admission.tryAdmit();
    const hold = admission.finish({ kind: "timeout", timeoutMs: 5 }, new Set());
    expect(admission.breaker?.state).toBe("open");
    expect(hold).toBe(1000);
  });

  it("holds the gate on a BreakerOpenError, and holds a failure while a named breaker it used is open", () => {
    const c = clock();
    const admission = new Admission(undefined, () => {}, c.now);
    const named = new BreakerRegistry(() => {}, c.now).get("payment-api", { failureThreshold: 1, openFor: "2s" }, "fn");
    expect(admission.finish({ kind: "error", error: new BreakerOpenError("payment-api", 300) }, new Set())).toBeUndefined();
    expect(admission.closedForMs()).toBe(300);
    named.tryAcquire();
    named.failure();
    expect(admission.finish({ kind: "error", error: new Error("down") }, new Set([named]))).toBe(2000);
  });

  it("admits nothing while an operator's pause lasts, tells the listeners, and opens at once on resume", () => {
    const c = clock();
    const admission = new Admission(undefined, () => {}, c.now);
    const events: string[] = [];
    admission.onClose(() => events.push("close"));
    const unlisten = admission.onOpen(() => events.push("open"));
    admission.setPaused({ reason: "db migration", at: "2024-01-01T00:00:00.000Z", by: "ops@box" });
    expect(admission.paused?.reason).toBe("db migration");
    expect(admission.allowance()).toBe(0);
    expect(admission.tryAdmit()).toBe(false);
    // No end is known: callers look again, and are told at once when it ends.
    expect(admission.closedForMs()).toBe(1000);
    c.advance(60_000);
    expect(admission.tryAdmit()).toBe(false);
    // The same pause written again changes nothing.
    admission.setPaused({ at: "2024-01-01T00:01:00.000Z", by: "ops@box" });
    expect(events).toEqual(["close"]);
    admission.setPaused(undefined);
    expect(events).toEqual(["close", "open"]);
    expect(admission.paused).toBeUndefined();
    expect(admission.closedForMs()).toBe(0);
    expect(admission.allowance()).toBe(Number.POSITIVE_INFINITY);
    expect(admission.tryAdmit()).toBe(true);
    unlisten();
    admission.setPaused({ at: "x", by: "y" });
    admission.setPaused(undefined);
    expect(events).toEqual(["close", "open", "close"]);
  });

  it("stays closed after a resume while the function's breaker is still open", () => {
    const c = clock();
    const admission = new Admission(policy, () => {}, c.now);
    admission.setPaused({ at: "x", by: "y" });
    for (let i = 0; i < 2; i++) {
      admission.breaker!.tryAcquire();
      admission.breaker!.failure();
    }
    c.advance(400);
    expect(admission.closedForMs()).toBe(1000);
    admission.setPaused(undefined);
    expect(admission.closedForMs()).toBe(600);
    expect(admission.allowance()).toBe(0);
  });

  it("holds pulls while a publish waits for the broker, says why, and opens at once when the last wait ends", () => {
    const c = clock();
    const admission = new Admission(undefined, () => {}, c.now);
    const events: string[] = [];
    admission.onClose(() => events.push("close"));
    admission.onOpen(() => events.push("open"));
    admission.onBrokerHold((hold) => events.push(hold ? `hold ${hold.reason} ${hold.waiting}` : "hold over"));
    c.advance(1_000);
    const first = admission.waitForBroker("storage-full");
    expect(events).toEqual(["close", "hold storage-full 1"]);
    c.advance(500);
    const second = admission.waitForBroker("timeout");
    expect(admission.brokerHold).toEqual({ reason: "timeout", since: new Date(1_000).toISOString(), waiting: 2 });
    // Nothing starts, the pull loop looks again within a second, but calls still run.
    expect(admission.allowance()).toBe(0);
    expect(admission.closedForMs()).toBe(1000);
    expect(admission.tryAdmit()).toBe(false);
    expect(admission.tryAdmit("call")).toBe(true);
    first.refused("storage-full");
    expect(admission.brokerHold?.reason).toBe("storage-full");
    first.end();
    first.end(); // idempotent: the other wait still holds
    expect(admission.brokerHold?.waiting).toBe(1);
    expect(admission.tryAdmit()).toBe(false);
    c.advance(60_000);
    expect(admission.tryAdmit()).toBe(false);
    second.end();
    expect(events).toEqual(["close", "hold storage-full 1", "open", "hold over"]);
    expect(admission.brokerHold).toBeUndefined();
    expect(admission.closedForMs()).toBe(0);
    expect(admission.tryAdmit()).toBe(true);
    // A refusal told after its wait ended changes nothing.
    second.refused("disconnected");
    expect(admission.brokerHold).toBeUndefined();
  });

  it("stays closed when the broker's hold ends during a pause, and the other way round", () => {
    const c = clock();
    const admission = new Admission(undefined, () => {}, c.now);
    const wait = admission.waitForBroker("no-responders");
    admission.setPaused({ at: "x", by: "y" });
    wait.end();
    expect(admission.tryAdmit()).toBe(false);
    admission.setPaused(undefined);
    expect(admission.tryAdmit()).toBe(true);
    const again = admission.waitForBroker("refused");
    admission.setPaused({ at: "x", by: "y" });
    admission.setPaused(undefined);
    expect(admission.tryAdmit()).toBe(false);
    again.end();
    expect(admission.tryAdmit()).toBe(true);
  });
});

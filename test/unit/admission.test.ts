import { describe, expect, it } from "vitest";
import { Admission } from "../../runtime/invoke/admission.ts";
import { BreakerRegistry } from "../../runtime/resilience/breakers.ts";
import { BreakerOpenError, NonRetryableError } from "../../runtime/sdk/errors.ts";

const policy = { failureThreshold: 2, openForMs: 1000, halfOpenRequests: 1 };

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 0;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe("Admission", () => {
  it("admits everything without a breaker, and nothing while paused", () => {
    const c = clock();
    const admission = new Admission(undefined, () => {}, c.now);
    expect(admission.allowance()).toBe(Number.POSITIVE_INFINITY);
    expect(admission.tryAdmit()).toBe(true);
    let closed = 0;
    admission.onClose(() => closed++);
    admission.pause(500);
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

  it("pauses on a BreakerOpenError, and holds a failure while a named breaker it used is open", () => {
    const c = clock();
    const admission = new Admission(undefined, () => {}, c.now);
    const named = new BreakerRegistry(() => {}, c.now).get("payment-api", { failureThreshold: 1, openFor: "2s" }, "fn");
    expect(admission.finish({ kind: "error", error: new BreakerOpenError("payment-api", 300) }, new Set())).toBeUndefined();
    expect(admission.closedForMs()).toBe(300);
    named.tryAcquire();
    named.failure();
    expect(admission.finish({ kind: "error", error: new Error("down") }, new Set([named]))).toBe(2000);
  });
});

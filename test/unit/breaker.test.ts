import { describe, expect, it } from "vitest";
import type { BreakerState } from "../../runtime/contracts/status.ts";
import { CircuitBreaker } from "../../runtime/resilience/breaker.ts";

function setup(policy = { failureThreshold: 3, openForMs: 1000, halfOpenRequests: 2 }) {
  let now = 0;
  const transitions: string[] = [];
  const breaker = new CircuitBreaker(
    policy,
    () => now,
    (from: BreakerState, to: BreakerState) => transitions.push(`${from}->${to}`),
  );
  return { breaker, transitions, advance: (ms: number) => (now += ms) };
}

describe("CircuitBreaker", () => {
  it("opens after failureThreshold consecutive failures", () => {
    const { breaker, transitions } = setup();
    breaker.failure();
    breaker.failure();
    expect(breaker.state).toBe("closed");
    breaker.failure();
    expect(breaker.state).toBe("open");
    expect(transitions).toEqual(["closed->open"]);
    expect(breaker.tryAcquire()).toBe(false);
    expect(breaker.allowance()).toBe(0);
  });

  it("counts only consecutive failures: a success resets the count", () => {
    const { breaker } = setup();
    breaker.failure();
    breaker.failure();
    breaker.success();
    breaker.failure();
    breaker.failure();
    expect(breaker.state).toBe("closed");
  });

  it("goes half-open after openFor and admits halfOpenRequests probes", () => {
    const { breaker, advance, transitions } = setup();
    for (let i = 0; i < 3; i++) breaker.failure();
    advance(400);
    expect(breaker.remainingOpenMs()).toBe(600);
    advance(600);
    expect(breaker.state).toBe("half-open");
    expect(breaker.remainingOpenMs()).toBe(0);
    expect(breaker.allowance()).toBe(2);
    expect(breaker.tryAcquire()).toBe(true);
    expect(breaker.tryAcquire()).toBe(true);
    expect(breaker.tryAcquire()).toBe(false);
    expect(transitions).toEqual(["closed->open", "open->half-open"]);
  });

  it("closes after halfOpenRequests successful probes", () => {
    const { breaker, advance, transitions } = setup();
    for (let i = 0; i < 3; i++) breaker.failure();
    advance(1000);
    breaker.tryAcquire();
    breaker.tryAcquire();
    breaker.success();
    expect(breaker.state).toBe("half-open");
    breaker.success();
    expect(breaker.state).toBe("closed");
    expect(breaker.allowance()).toBe(Number.POSITIVE_INFINITY);
    expect(transitions).toEqual(["closed->open", "open->half-open", "half-open->closed"]);
  });

  it("re-opens for a full openFor when a probe fails", () => {
    const { breaker, advance, transitions } = setup();
    for (let i = 0; i < 3; i++) breaker.failure();
    advance(1500);
    breaker.tryAcquire();
    breaker.failure();
    expect(breaker.state).toBe("open");
    expect(breaker.remainingOpenMs()).toBe(1000);
    expect(transitions).toEqual(["closed->open", "open->half-open", "half-open->open"]);
  });

  it("frees a probe on release without deciding anything", () => {
    const { breaker, advance } = setup({ failureThreshold: 1, openForMs: 10, halfOpenRequests: 1 });
    breaker.failure();
    advance(10);
    expect(breaker.tryAcquire()).toBe(true);
    expect(breaker.tryAcquire()).toBe(false);
    breaker.release();
    expect(breaker.state).toBe("half-open");
    expect(breaker.tryAcquire()).toBe(true);
  });

  it("ignores results of calls admitted before it opened", () => {
    const { breaker } = setup({ failureThreshold: 1, openForMs: 1000, halfOpenRequests: 1 });
    breaker.failure();
    breaker.success(); // a late success of a call started while closed
    breaker.failure();
    expect(breaker.state).toBe("open");
    expect(breaker.remainingOpenMs()).toBe(1000);
  });
});

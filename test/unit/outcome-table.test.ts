import { describe, expect, it } from "vitest";
import type { CompiledRetry } from "../../runtime/config/types.ts";
import type { Delivery } from "../../runtime/contracts/delivery.ts";
import { errorMessage } from "../../runtime/contracts/error-message.ts";
import { AttemptLedger } from "../../runtime/invoke/attempts.ts";
import { invocationOutcome, settle, spendsAttempt } from "../../runtime/invoke/outcome-table.ts";
import { backoffDelay } from "../../runtime/resilience/backoff.ts";
import { NonRetryableError, RetryAfterError } from "../../runtime/sdk/errors.ts";

const retry: CompiledRetry = { maxAttempts: 5, backoff: "exponential", initialDelayMs: 1000, maxDelayMs: 300_000, jitter: false };

describe("backoffDelay", () => {
  it("doubles from initialDelay per delivery and caps at maxDelay", () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(retry, n))).toEqual([1000, 2000, 4000, 8000, 16000]);
    expect(backoffDelay(retry, 10)).toBe(300_000);
    expect(backoffDelay(retry, 10_000)).toBe(300_000);
  });

  it("is constant when fixed", () => {
    expect(backoffDelay({ ...retry, backoff: "fixed" }, 7)).toBe(1000);
  });

  it("draws jitter from [delay/2, delay]", () => {
    const jittered = { ...retry, jitter: true };
    expect(backoffDelay(jittered, 3, () => 0)).toBe(2000);
    expect(backoffDelay(jittered, 3, () => 0.5)).toBe(3000);
    expect(backoffDelay(jittered, 3, () => 0.999999)).toBe(4000);
  });

  it("treats a delivery count below 1 as the first", () => {
    expect(backoffDelay(retry, 0)).toBe(1000);
  });
});

describe("settle: the outcome table", () => {
  it("acks a success and carries the output", () => {
    expect(settle({ kind: "success", value: { ok: 1 } }, 1, retry)).toEqual({ action: "ack", output: { ok: 1 } });
  });

  it("naks a failure with the backoff for its delivery count", () => {
    expect(settle({ kind: "error", error: new Error("boom") }, 2, retry)).toEqual({ action: "nak", delayMs: 2000, error: "boom" });
  });

  it("naks a timeout with backoff while attempts remain", () => {
    expect(settle({ kind: "timeout", timeoutMs: 50 }, 1, retry)).toEqual({
      action: "nak",
      delayMs: 1000,
      error: "timed out after 50ms",
    });
  });

  it("naks a RetryAfterError with its own delay", () => {
    expect(settle({ kind: "error", error: new RetryAfterError("slow down", 1234) }, 1, retry)).toMatchObject({
      action: "nak",
      delayMs: 1234,
    });
  });

  it("dead-letters when the last attempt fails, whatever the failure", () => {
    for (const outcome of [
      { kind: "error", error: new Error("x") },
      { kind: "timeout", timeoutMs: 10 },
      { kind: "error", error: new RetryAfterError("later", 10) },
    ] as const) {
      expect(settle(outcome, 5, retry)).toMatchObject({ action: "dead-letter", reason: "attempts-exhausted" });
      expect(settle(outcome, 4, retry).action).toBe("nak");
    }
  });

  it("dead-letters a NonRetryableError at once", () => {
    expect(settle({ kind: "error", error: new NonRetryableError("card declined") }, 1, retry)).toEqual({
      action: "dead-letter",
      reason: "non-retryable",
      error: "NonRetryableError: card declined",
    });
  });

  it("recognises error classes from another bundle by their brand", () => {
    const foreign = Object.assign(new Error("declined"), { [Symbol.for("jetfn.error")]: "non-retryable" });
    expect(settle({ kind: "error", error: foreign }, 1, retry)).toMatchObject({ action: "dead-letter", reason: "non-retryable" });
    const later = Object.assign(new Error("later"), { [Symbol.for("jetfn.error")]: "retry-after", delayMs: 42 });
    expect(settle({ kind: "error", error: later }, 1, retry)).toMatchObject({ action: "nak", delayMs: 42 });
  });

  it("dead-letters undecodable and invalid payloads without retry", () => {
    expect(settle({ kind: "undecodable", error: new Error("not JSON") }, 1, retry)).toEqual({
      action: "dead-letter",
      reason: "undecodable",
      error: "not JSON",
    });
    expect(settle({ kind: "invalid", error: new Error("schema: amount") }, 1, retry)).toMatchObject({
      action: "dead-letter",
      reason: "invalid",
    });
  });

  it("naks at once what shutdown cut off, without spending an attempt's delay", () => {
    expect(settle({ kind: "aborted" }, 5, retry)).toEqual({ action: "nak", delayMs: 0, error: "aborted by shutdown" });
  });

  it("maps outcomes to the invocation metric's labels", () => {
    expect(invocationOutcome({ kind: "undecodable", error: new Error() })).toBe("invalid");
    expect(invocationOutcome({ kind: "aborted" })).toBe("timeout");
    expect(invocationOutcome({ kind: "success", value: 1 })).toBe("success");
  });
});

describe("errorMessage", () => {
  it("describes non-errors and keeps one line", () => {
    expect(errorMessage("plain string")).toBe("plain string");
    expect(errorMessage(undefined)).toBe("non-error thrown: undefined");
    expect(errorMessage(new Error("line one\r\nline two"))).toBe("line one line two");
    expect(errorMessage(new TypeError("bad"))).toBe("TypeError: bad");
    expect(errorMessage(new Error("x".repeat(5000))).length).toBe(1000);
  });

  it("never throws, even when reading the thrown value does", () => {
    const hostile = new Error("x");
    Object.defineProperty(hostile, "message", {
      get() {
        throw new Error("no");
      },
    });
    expect(errorMessage(hostile)).toBe("an error whose message cannot be read");
    expect(
      errorMessage({
        toString: () => {
          throw new Error("no");
        },
      }),
    ).toBe("non-error thrown");
  });
});

describe("settle: breakers", () => {
  it("naks a BreakerOpenError until the breaker half-opens, even past maxAttempts", async () => {
    const { BreakerOpenError } = await import("../../runtime/sdk/errors.ts");
    const open = new BreakerOpenError("payment-api", 2500);
    expect(settle({ kind: "error", error: open }, 1, retry)).toEqual({
      action: "nak",
      delayMs: 2500,
      error: "BreakerOpenError: breaker payment-api is open",
    });
    expect(settle({ kind: "error", error: open }, 99, retry)).toMatchObject({ action: "nak", delayMs: 2500 });
  });

  it("holds failures while the function's breaker is open instead of dead-lettering them", () => {
    expect(settle({ kind: "error", error: new Error("down") }, 5, retry, Math.random, 700)).toEqual({
      action: "nak",
      delayMs: 700,
      error: "down",
    });
    expect(settle({ kind: "timeout", timeoutMs: 5 }, 5, retry, Math.random, 700)).toMatchObject({ action: "nak", delayMs: 700 });
    // The handler's own verdicts still stand.
    expect(settle({ kind: "error", error: new NonRetryableError("no") }, 1, retry, Math.random, 700)).toMatchObject({
      action: "dead-letter",
    });
    expect(settle({ kind: "invalid", error: new Error("schema") }, 1, retry, Math.random, 700)).toMatchObject({ action: "dead-letter" });
  });
});

describe("settle: worker threads and the poison guard", () => {
  const crash = { kind: "crashed", reason: "out-of-memory", error: "its worker thread ran out of memory (memoryLimit 64MB)" } as const;

  it("retries a crash with backoff, and dead-letters it as crashed on the last attempt", () => {
    expect(settle(crash, 2, retry)).toEqual({ action: "nak", delayMs: 2000, error: crash.error });
    expect(settle(crash, 5, retry)).toEqual({ action: "dead-letter", reason: "crashed", error: crash.error });
  });

  it("hands a bystander of a terminated thread back at once", () => {
    expect(settle({ kind: "aborted", cause: "bystander" }, 5, retry)).toMatchObject({ action: "nak", delayMs: 0 });
    expect(invocationOutcome({ kind: "aborted", cause: "bystander" })).toBe("crashed");
  });

  it("hands a delivery released from its thread's waiting room back at once, and counts no invocation", () => {
    expect(settle({ kind: "aborted", cause: "released" }, 5, retry)).toMatchObject({
      action: "nak",
      delayMs: 0,
      error: expect.stringMatching(/^handed back unrun/),
    });
    expect(invocationOutcome({ kind: "aborted", cause: "released" })).toBeUndefined();
    expect(spendsAttempt({ kind: "aborted", cause: "released" })).toBe(false);
  });

  it("dead-letters an exhausted delivery unrun, and counts no invocation for it", () => {
    expect(settle({ kind: "exhausted", attempts: 6 }, 6, retry)).toMatchObject({
      action: "dead-letter",
      reason: "attempts-exhausted",
      error: expect.stringMatching(/^not run: attempt 6 is past retry.maxAttempts \(5\)/),
    });
    expect(invocationOutcome({ kind: "exhausted", attempts: 6 })).toBeUndefined();
    expect(invocationOutcome(crash)).toBe("crashed");
  });

  it("spends an attempt only for the message's own failures", () => {
    expect(spendsAttempt({ kind: "error", error: new Error("x") })).toBe(true);
    expect(spendsAttempt({ kind: "timeout", timeoutMs: 5 })).toBe(true);
    expect(spendsAttempt(crash)).toBe(true);
    expect(spendsAttempt({ kind: "aborted" })).toBe(false);
    expect(spendsAttempt({ kind: "aborted", cause: "bystander" })).toBe(false);
    expect(spendsAttempt({ kind: "error", error: new Error("down") }, 700)).toBe(false);
  });
});

describe("AttemptLedger", () => {
  const delivery = (seq: number, deliveryCount: number) => ({ stream: "S", seq, deliveryCount }) as Delivery;

  it("subtracts the deliveries that spent no attempt, and forgets a settled message", () => {
    const ledger = new AttemptLedger();
    expect(ledger.attempt(delivery(1, 3))).toBe(3);
    ledger.spare(delivery(1, 1));
    ledger.spare(delivery(1, 2));
    expect(ledger.attempt(delivery(1, 3))).toBe(1);
    expect(ledger.attempt(delivery(2, 3))).toBe(3);
    ledger.forget(delivery(1, 3));
    expect(ledger.attempt(delivery(1, 4))).toBe(4);
  });

  it("keeps at most `limit` messages, dropping the oldest note", () => {
    const ledger = new AttemptLedger(2);
    for (const seq of [1, 2, 3]) ledger.spare(delivery(seq, 1));
    expect([1, 2, 3].map((seq) => ledger.attempt(delivery(seq, 2)))).toEqual([2, 1, 1]);
  });
});

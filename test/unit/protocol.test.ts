import { describe, expect, it } from "vitest";
import { errorMessage, settle } from "../../runtime/invoke/settle.ts";
import { fromWire, toWire, transferable } from "../../runtime/isolation/protocol.ts";
import { BreakerOpenError, NonRetryableError, RetryAfterError } from "../../runtime/sdk/errors.ts";

const retry = { maxAttempts: 5, backoff: "exponential", initialDelayMs: 1000, maxDelayMs: 300_000, jitter: false } as const;

/** A thrown value's trip across a thread: taken apart, structured-cloned, rebuilt. */
const across = (error: unknown): unknown => fromWire(structuredClone(toWire(error, errorMessage)));

describe("errors across threads", () => {
  it("keep their brand, fields and meaning for settlement, and instanceof", () => {
    const fatal = across(new NonRetryableError("card declined"));
    expect(fatal).toBeInstanceOf(NonRetryableError);
    expect(settle({ kind: "error", error: fatal }, 1, retry)).toEqual({ action: "dead-letter", reason: "non-retryable", error: "NonRetryableError: card declined" });
    const later = across(new RetryAfterError("slow down", "30s"));
    expect(later).toBeInstanceOf(RetryAfterError);
    expect(settle({ kind: "error", error: later }, 1, retry)).toMatchObject({ action: "nak", delayMs: 30_000 });
    const open = across(new BreakerOpenError("payment-api", 1234)) as BreakerOpenError;
    expect(open).toBeInstanceOf(BreakerOpenError);
    expect(open).not.toBeInstanceOf(NonRetryableError);
    expect([open.breaker, open.retryAfterMs]).toEqual(["payment-api", 1234]);
  });

  it("keep the name, message and stack of a plain error", () => {
    const original = new TypeError("bad input");
    const rebuilt = across(original) as Error;
    expect(errorMessage(rebuilt)).toBe("TypeError: bad input");
    expect(rebuilt.stack).toBe(original.stack);
  });

  it("describe non-errors the way settlement would have, without cloning them", () => {
    for (const thrown of ["a string", undefined, { message: "not an Error", callback: () => 1 }, Symbol("s")]) {
      expect(errorMessage(across(thrown))).toBe(errorMessage(thrown));
    }
  });

  it("survive an error whose getters throw", () => {
    const hostile = new Error("hostile");
    Object.defineProperty(hostile, "stack", { get: () => { throw new Error("no stack for you"); } });
    expect(errorMessage(across(hostile))).toBe("hostile");
  });
});

describe("transferable", () => {
  it("copies a view of a shared buffer, and passes on bytes nobody else holds", () => {
    const shared = Buffer.from("0123456789").subarray(2, 5);
    const copy = transferable(shared, false);
    expect(copy.buffer).not.toBe(shared.buffer);
    expect(Buffer.from(copy).toString()).toBe("234");
    const own = new TextEncoder().encode("mine");
    expect(transferable(own, true)).toBe(own);
    expect(transferable(own, false)).not.toBe(own);
  });
});

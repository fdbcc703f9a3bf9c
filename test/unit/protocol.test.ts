import { describe, expect, it } from "vitest";
import { errorMessage, settle } from "../../runtime/invoke/settle.ts";
import { MessageChannel } from "node:worker_threads";
import { BatchPort, bytesIn, type Batch, type BytesRef } from "../../runtime/isolation/batch-port.ts";
import { fromWire, toWire } from "../../runtime/isolation/protocol.ts";
import { waitFor } from "../support/wait-for.ts";
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

describe("BatchPort", () => {
  it("posts what one turn sent as one message, the payloads in one transferred buffer", async () => {
    const { port1, port2 } = new MessageChannel();
    const received: Batch<{ n: number; data: BytesRef }>[] = [];
    port2.on("message", (batch: Batch<{ n: number; data: BytesRef }>) => received.push(batch));
    const outbox = new BatchPort<{ n: number; data: BytesRef }>(port1);
    const socketChunk = Buffer.from("xx{\"a\":1}{\"b\":22}yy");
    outbox.send({ n: 1, data: outbox.bytes(socketChunk.subarray(2, 9)) });
    outbox.send({ n: 2, data: outbox.bytes(socketChunk.subarray(9, 17)) });
    await waitFor(() => received.length === 1);
    const [batch] = received;
    expect(batch!.m.map((m) => m.n)).toEqual([1, 2]);
    expect(batch!.m.map((m) => Buffer.from(bytesIn(batch!, m.data)).toString())).toEqual(['{"a":1}', '{"b":22}']);
    // The source was copied, not moved: the client's buffer is intact.
    expect(socketChunk.toString()).toBe('xx{"a":1}{"b":22}yy');
    port1.close();
  });
});

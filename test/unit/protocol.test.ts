import { MessageChannel } from "node:worker_threads";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { errorMessage } from "../../runtime/contracts/error-message.ts";
import { settle } from "../../runtime/invoke/outcome-table.ts";
import { type Batch, BatchPort, type BytesRef, bytesIn } from "../../runtime/isolation/batch-port.ts";
import { fromWire, toWire } from "../../runtime/isolation/protocol.ts";
import { BreakerOpenError, NonRetryableError, RetryAfterError } from "../../runtime/sdk/errors.ts";
import { waitFor } from "../support/wait-for.ts";

const retry = { maxAttempts: 5, backoff: "exponential", initialDelayMs: 1000, maxDelayMs: 300_000, jitter: false } as const;

/** A thrown value's trip across a thread: taken apart, structured-cloned, rebuilt. */
const across = (error: unknown): unknown => fromWire(structuredClone(toWire(error, errorMessage)));

describe("errors across threads", () => {
  it("keep their brand, fields and meaning for settlement, and instanceof", () => {
    const fatal = across(new NonRetryableError("card declined"));
    expect(fatal).toBeInstanceOf(NonRetryableError);
    expect(settle({ kind: "error", error: fatal }, 1, retry)).toEqual({
      action: "dead-letter",
      reason: "non-retryable",
      error: "NonRetryableError: card declined",
    });
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
    Object.defineProperty(hostile, "stack", {
      get: () => {
        throw new Error("no stack for you");
      },
    });
    expect(errorMessage(across(hostile))).toBe("hostile");
  });
});

describe("BatchPort", () => {
  it("posts what one turn sent as one message, the payloads in one transferred buffer", async () => {
    const { port1, port2 } = new MessageChannel();
    const received: Batch<{ n: number; data: BytesRef }>[] = [];
    port2.on("message", (batch: Batch<{ n: number; data: BytesRef }>) => received.push(batch));
    const outbox = new BatchPort<{ n: number; data: BytesRef }>(port1);
    const socketChunk = Buffer.from('xx{"a":1}{"b":22}yy');
    // The clock stands still between the two sends, however busy the machine.
    const clock = vi.spyOn(performance, "now").mockReturnValue(1000);
    outbox.send({ n: 1, data: outbox.bytes(socketChunk.subarray(2, 9)) });
    outbox.send({ n: 2, data: outbox.bytes(socketChunk.subarray(9, 17)) });
    clock.mockRestore();
    await waitFor(() => received.length === 1);
    const [batch] = received;
    expect(batch!.m.map((m) => m.n)).toEqual([1, 2]);
    expect(batch!.m.map((m) => Buffer.from(bytesIn(batch!, m.data)).toString())).toEqual(['{"a":1}', '{"b":22}']);
    // The source was copied, not moved: the client's buffer is intact.
    expect(socketChunk.toString()).toBe('xx{"a":1}{"b":22}yy');
    port1.close();
  });
});

describe("toWire", () => {
  const wire = (error: unknown) => toWire(error, errorMessage);

  it.each([
    ["NonRetryableError", new NonRetryableError("card declined"), { name: "NonRetryableError", brand: "non-retryable" }],
    ["RetryAfterError", new RetryAfterError("slow down", "30s"), { name: "RetryAfterError", brand: "retry-after", delayMs: 30_000 }],
    [
      "BreakerOpenError",
      new BreakerOpenError("payment-api", 1234),
      { name: "BreakerOpenError", brand: "breaker-open", breaker: "payment-api", retryAfterMs: 1234 },
    ],
  ])("takes a %s apart: its brand and its fields", (_, error, fields) => {
    expect(wire(error)).toEqual({ message: (error as Error).message, stack: (error as Error).stack, ...fields });
  });

  it("takes a plain error apart without brand or extra fields", () => {
    const error = new RangeError("out of range");
    expect(wire(error)).toEqual({ name: "RangeError", message: "out of range", stack: error.stack });
  });

  it("reads the brand of another bundle's copy of the error classes (Symbol.for)", () => {
    const foreign = Object.assign(new Error("from another bundle"), { [Symbol.for("jetfn.error")]: "retry-after", delayMs: 500 });
    expect(wire(foreign)).toMatchObject({ brand: "retry-after", delayMs: 500 });
    expect(settle({ kind: "error", error: fromWire(wire(foreign)) }, 1, retry)).toMatchObject({ action: "nak", delayMs: 500 });
  });

  it("leaves out fields of the wrong type rather than sending them", () => {
    const odd = Object.assign(new Error("odd"), { delayMs: "5s", retryAfterMs: null, breaker: 7 });
    expect(wire(odd)).toEqual({ name: "Error", message: "odd", stack: odd.stack });
  });

  it("describes a thrown non-error instead of cloning it", () => {
    expect(wire("plain string")).toEqual({ message: "plain string", nonError: true });
    expect(wire(undefined)).toEqual({ message: "non-error thrown: undefined", nonError: true });
    expect(wire(null)).toEqual({ message: "non-error thrown: null", nonError: true });
    expect(wire({ message: "error-like", callback: () => 1 })).toEqual({ message: "error-like", nonError: true });
  });

  it("makes plain data whatever the error carries (functions, sockets, cycles)", () => {
    const error = Object.assign(new Error("carrying"), { callback: () => 1, self: undefined as unknown });
    error.self = error;
    expect(() => structuredClone(wire(error))).not.toThrow();
    expect(Object.keys(wire(error)).sort()).toEqual(["message", "name", "stack"]);
  });

  it("keeps a message that is not a string out, describing the error instead", () => {
    const error = new Error("ignored");
    Object.defineProperty(error, "message", { value: 42 });
    expect(wire(error).message).toBe("42");
  });
});

describe("fromWire", () => {
  it("rebuilds a non-error as its description", () => {
    expect(fromWire({ message: "plain string", nonError: true })).toBe("plain string");
  });

  it("rebuilds an Error with its name (not enumerable), message, stack and fields", () => {
    const error = fromWire({ name: "TypeError", message: "bad", stack: "TypeError: bad\n    at handler (functions/a.ts:3:9)" }) as Error;
    expect(error).toBeInstanceOf(Error);
    expect([error.name, error.message, error.stack]).toEqual(["TypeError", "bad", "TypeError: bad\n    at handler (functions/a.ts:3:9)"]);
    expect(Object.keys(error)).not.toContain("name");
  });

  it("keeps Error's own name and stack when the wire has none", () => {
    const error = fromWire({ message: "bare" }) as Error;
    expect(error.name).toBe("Error");
    expect(error.stack).toContain("bare");
    expect(Object.getOwnPropertySymbols(error)).toEqual([]);
  });

  it.each([
    [{ message: "m", brand: "retry-after", delayMs: 250 } as const, { action: "nak", delayMs: 250 }],
    [{ message: "m", brand: "non-retryable" } as const, { action: "dead-letter", reason: "non-retryable" }],
    [{ message: "m", name: "Error" } as const, { action: "nak", delayMs: 1000 }],
  ])("rebuilds what settlement reads: %o", (wire, action) => {
    expect(settle({ kind: "error", error: fromWire(wire) }, 1, retry)).toMatchObject(action);
  });

  it("brands with the shared symbol, not enumerable, so a log of the error does not show it", () => {
    const error = fromWire({ message: "m", brand: "breaker-open", breaker: "db", retryAfterMs: 10 }) as BreakerOpenError;
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect(Object.getOwnPropertyDescriptor(error, Symbol.for("jetfn.error"))).toMatchObject({ value: "breaker-open", enumerable: false });
    expect([error.breaker, error.retryAfterMs]).toEqual(["db", 10]);
  });
});

/** A port that records what is posted, in place of a Worker. */
class FakePort<T = string> {
  readonly posts: { value: Batch<T>; transfer?: readonly ArrayBuffer[] }[] = [];
  postMessage(value: unknown, transfer?: readonly ArrayBuffer[]): void {
    this.posts.push({ value: value as Batch<T>, ...(transfer ? { transfer } : {}) });
  }
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("BatchPort with a fake port", () => {
  // The clock stands still unless a test moves it: on a busy machine a turn of these tests
  // can take longer than the 0.25 ms after which a batch leaves early.
  let now = 1000;
  beforeEach(() => {
    now = 1000;
    vi.spyOn(performance, "now").mockImplementation(() => now);
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("posts nothing during the turn, then one batch of everything sent in it", async () => {
    const port = new FakePort();
    const outbox = new BatchPort<string>(port);
    outbox.send("a");
    outbox.send("b");
    outbox.send("c");
    expect(port.posts).toEqual([]);
    await nextTurn();
    expect(port.posts).toEqual([{ value: { m: ["a", "b", "c"] } }]);
    await nextTurn();
    expect(port.posts).toHaveLength(1);
  });

  it("sends one batch per turn, each with its own messages", async () => {
    const port = new FakePort();
    const outbox = new BatchPort<string>(port);
    outbox.send("a");
    await nextTurn();
    outbox.send("b");
    await nextTurn();
    expect(port.posts.map((p) => p.value.m)).toEqual([["a"], ["b"]]);
  });

  it("copies each batch's payloads into one buffer, which it transfers", async () => {
    const port = new FakePort<{ id: number; data: BytesRef }>();
    const outbox = new BatchPort<{ id: number; data: BytesRef }>(port);
    const refs = [outbox.bytes(Buffer.from("one")), outbox.bytes(new Uint8Array()), outbox.bytes(Buffer.from("three"))];
    expect(refs).toEqual([
      [0, 3],
      [3, 0],
      [3, 5],
    ]);
    refs.forEach((data, id) => {
      outbox.send({ id, data });
    });
    await nextTurn();
    const { value, transfer } = port.posts[0]!;
    expect(value.b!.byteLength).toBe(8);
    expect(transfer).toEqual([value.b]);
    expect(value.m.map((m) => Buffer.from(bytesIn(value, m.data)).toString())).toEqual(["one", "", "three"]);
  });

  it("starts each batch's offsets at 0", async () => {
    const port = new FakePort<BytesRef>();
    const outbox = new BatchPort<BytesRef>(port);
    outbox.send(outbox.bytes(Buffer.from("first")));
    await nextTurn();
    outbox.send(outbox.bytes(Buffer.from("second")));
    await nextTurn();
    const [first, second] = port.posts.map((p) => p.value);
    expect([first!.m[0], second!.m[0]]).toEqual([
      [0, 5],
      [0, 6],
    ]);
    expect(Buffer.from(bytesIn(second!, second!.m[0]!)).toString()).toBe("second");
  });

  it("flush() posts at once, and the turn's end posts nothing more", async () => {
    const port = new FakePort();
    const outbox = new BatchPort<string>(port);
    outbox.flush();
    expect(port.posts).toEqual([]);
    outbox.send("now");
    outbox.flush();
    expect(port.posts).toEqual([{ value: { m: ["now"] } }]);
    await nextTurn();
    expect(port.posts).toHaveLength(1);
  });

  it("in a long turn, posts at once once the first message has waited more than 0.25 ms", async () => {
    const port = new FakePort();
    const outbox = new BatchPort<string>(port);
    outbox.send("a");
    now += 0.25;
    outbox.send("b");
    expect(port.posts).toEqual([]);
    now += 0.01;
    outbox.send("c");
    expect(port.posts.map((p) => p.value.m)).toEqual([["a", "b", "c"]]);
    // The next message starts a new batch, which waits for the turn's end again.
    outbox.send("d");
    expect(port.posts).toHaveLength(1);
    await nextTurn();
    expect(port.posts.map((p) => p.value.m)).toEqual([["a", "b", "c"], ["d"]]);
  });

  it("reads the payload's bytes when the batch leaves, and never again", async () => {
    const port = new FakePort<BytesRef>();
    const outbox = new BatchPort<BytesRef>(port);
    const source = Buffer.from("abc");
    outbox.send(outbox.bytes(source));
    source[0] = 0x7a; // still this turn: goes as changed
    outbox.flush();
    source[1] = 0x7a; // after it left: the batch keeps its copy
    const batch = port.posts[0]!.value;
    expect(Buffer.from(bytesIn(batch, batch.m[0]!)).toString()).toBe("zbc");
  });
});

import { describe, expect, it } from "vitest";
import { z } from "zod";
import { decode, encode, validate } from "../../runtime/codec/codec.ts";
import { runWithTimeout } from "../../runtime/invoke/run.ts";

describe("decode", () => {
  it("parses JSON, text and binary", () => {
    const bytes = new TextEncoder().encode('{"a":1}');
    expect(decode(bytes, "json")).toEqual({ ok: true, value: { a: 1 } });
    expect(decode(bytes, "text")).toEqual({ ok: true, value: '{"a":1}' });
    expect(decode(bytes, "binary")).toEqual({ ok: true, value: bytes });
  });

  it("rejects invalid JSON and invalid UTF-8", () => {
    const bad = decode(new TextEncoder().encode("{nope"), "json");
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.error.message).toMatch(/^payload is not valid JSON/);
    const notUtf8 = decode(Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d]), "json");
    expect(!notUtf8.ok && notUtf8.error.message).toBe("payload is not valid UTF-8");
  });

  it("parses deeply nested JSON without blowing the stack", () => {
    const deep = "[".repeat(10_000) + "]".repeat(10_000);
    expect(decode(new TextEncoder().encode(deep), "json").ok).toBe(true);
  });
});

describe("encode", () => {
  it("sends bytes as is, strings as UTF-8 and the rest as JSON", () => {
    const bytes = Uint8Array.from([1, 2]);
    expect(encode(bytes)).toBe(bytes);
    expect(new TextDecoder().decode(encode("hé"))).toBe("hé");
    expect(new TextDecoder().decode(encode({ a: [1] }))).toBe('{"a":[1]}');
    expect(() => encode(() => 1)).toThrow(/cannot encode function/);
  });
});

describe("validate", () => {
  const schema = z.object({ amount: z.number().positive(), currency: z.string().default("EUR") });

  it("returns the parsed value with defaults", async () => {
    expect(await validate(schema, { amount: 3 })).toEqual({ ok: true, value: { amount: 3, currency: "EUR" } });
  });

  it("names the failing path", async () => {
    const result = await validate(schema, { amount: -1 });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.message).toMatch(/^schema: amount: /);
  });

  it("accepts a bare safeParse schema", async () => {
    const custom = {
      safeParse: (v: unknown) => (v === 1 ? { success: true as const, data: 1 } : { success: false as const, error: "no" }),
    };
    expect(await validate(custom, 1)).toEqual({ ok: true, value: 1 });
    expect((await validate(custom, 2)).ok).toBe(false);
  });
});

describe("runWithTimeout", () => {
  const never = new AbortController().signal;

  it("takes a run that ended after its deadline, before its timer could fire (the process stalled), as a timeout", async () => {
    const outcome = await runWithTimeout(
      async (deadline) => {
        deadline.start();
        const until = performance.now() + 60;
        while (performance.now() < until); // blocks the loop past the 20 ms timeout, as a SIGSTOP would
        return { kind: "success", value: 1 };
      },
      20,
      never,
    );
    expect(outcome).toEqual({ kind: "timeout", timeoutMs: 20 });
  });

  it("does not start a run whose delivery expired while it waited, and settles a run that ends after its delivery expired as expired", async () => {
    let started: boolean | undefined;
    const refused = await runWithTimeout(
      async (deadline) => {
        started = deadline.start();
        return { kind: "success", value: 1 };
      },
      1000,
      never,
      undefined,
      () => true,
    );
    expect(started).toBe(false);
    expect(refused).toEqual({ kind: "aborted", cause: "expired" });
    let expired = false;
    const late = await runWithTimeout(
      async (deadline) => {
        deadline.start();
        expired = true; // its ack wait ran out meanwhile
        return { kind: "success", value: 1 };
      },
      1000,
      never,
      undefined,
      () => expired,
    );
    expect(late).toEqual({ kind: "aborted", cause: "expired" });
  });

  it("resolves with the run's outcome, or its rejection as an error", async () => {
    expect(await runWithTimeout(async () => ({ kind: "success", value: 7 }), 1000, never)).toEqual({ kind: "success", value: 7 });
    expect(await runWithTimeout(() => Promise.reject("a string"), 1000, never)).toEqual({ kind: "error", error: "a string" });
    expect(await runWithTimeout(() => Promise.reject(undefined), 1000, never)).toEqual({ kind: "error", error: undefined });
  });

  it("times out, aborts the signal, and swallows the late rejection", async () => {
    let seen: AbortSignal | undefined;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on("unhandledRejection", onUnhandled);
    try {
      const outcome = await runWithTimeout(
        (deadline) => {
          deadline.start();
          seen = deadline.signal();
          return new Promise((_, reject) => seen!.addEventListener("abort", () => setTimeout(() => reject(new Error("late")), 5)));
        },
        20,
        never,
      );
      expect(outcome).toEqual({ kind: "timeout", timeoutMs: 20 });
      expect(seen?.aborted).toBe(true);
      expect((seen!.reason as Error).name).toBe("TimeoutError");
      await new Promise((r) => setTimeout(r, 30));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("hands out an already-aborted signal when it is first asked for after the timeout", async () => {
    let late: (() => AbortSignal) | undefined;
    const outcome = await runWithTimeout(
      (deadline) => {
        deadline.start();
        late = () => deadline.signal();
        return new Promise(() => {});
      },
      10,
      never,
    );
    expect(outcome.kind).toBe("timeout");
    expect(late!().aborted).toBe(true);
    expect((late!().reason as Error).name).toBe("TimeoutError");
  });

  it("tells its onAbort listener the reason, at once when it comes after the abort", async () => {
    const reasons: string[] = [];
    let late: ((listener: (reason: Error) => void) => void) | undefined;
    const outcome = await runWithTimeout(
      (deadline) => {
        deadline.start();
        deadline.onAbort((reason) => reasons.push(reason.name));
        late = (listener) => deadline.onAbort(listener);
        return new Promise(() => {});
      },
      10,
      never,
    );
    expect(outcome.kind).toBe("timeout");
    late!((reason) => reasons.push(`late ${reason.name}`));
    expect(reasons).toEqual(["TimeoutError", "late TimeoutError"]);
  });

  it("starts the clock when the run says the handler starts, not before", async () => {
    let start!: () => void;
    const running = runWithTimeout(
      (deadline) => {
        start = () => deadline.start();
        return new Promise(() => {});
      },
      10,
      never,
    );
    const first = await Promise.race([running, new Promise((r) => setTimeout(r, 40, "still running"))]);
    expect(first).toBe("still running");
    start();
    expect(await running).toEqual({ kind: "timeout", timeoutMs: 10 });
  });

  it("aborts when stop fires, and at once when it already has", async () => {
    const stop = new AbortController();
    const running = runWithTimeout(() => new Promise(() => {}), 10_000, stop.signal);
    stop.abort();
    expect(await running).toEqual({ kind: "aborted" });
    expect(await runWithTimeout(async () => ({ kind: "success", value: 1 }), 10_000, stop.signal)).toEqual({ kind: "aborted" });
  });

  it("is cut off when its delivery is revoked: the signal aborts and the executor is told why", async () => {
    const revoked = new AbortController();
    let signal!: AbortSignal;
    const told: string[] = [];
    const running = runWithTimeout(
      (deadline) => {
        deadline.start();
        signal = deadline.signal();
        deadline.onAbort((reason, cause) => told.push(`${cause}: ${reason.message}`));
        return new Promise(() => {});
      },
      10_000,
      never,
      revoked.signal,
    );
    revoked.abort();
    expect(await running).toEqual({ kind: "aborted", cause: "revoked" });
    expect(signal.aborted).toBe(true);
    expect(told).toEqual([expect.stringMatching(/^revoked: invocation aborted: this host lost the lease/)]);
    // Already revoked: the run is not even started.
    let ran = false;
    const late = runWithTimeout(async () => ((ran = true), { kind: "success", value: 1 }), 10_000, never, revoked.signal);
    expect(await late).toEqual({ kind: "aborted", cause: "revoked" });
    expect(ran).toBe(false);
  });

  it("tells a timeout apart from shutdown for the executor", async () => {
    const stop = new AbortController();
    const causes: string[] = [];
    const timedOut = runWithTimeout(
      (deadline) => {
        deadline.onAbort((_, cause) => causes.push(cause));
        deadline.start();
        return new Promise(() => {});
      },
      5,
      never,
    );
    expect(await timedOut).toEqual({ kind: "timeout", timeoutMs: 5 });
    const stopped = runWithTimeout(
      (deadline) => {
        deadline.onAbort((_, cause) => causes.push(cause));
        return new Promise(() => {});
      },
      10_000,
      stop.signal,
    );
    stop.abort();
    await stopped;
    expect(causes).toEqual(["timeout", "shutdown"]);
  });
});

/**
 * `jetfn/testing`'s invoke(): every row of the outcome table, each checked against what the
 * host's settle() decides for that outcome, attempt and policy (test/integration/testing.test.ts
 * compares the same rows with a real host's settlements), and the ways to shape the context.
 */

import { type InvokeResult, invoke } from "jetfn/testing";
import { describe, expect, it } from "vitest";
import { BUILT_IN_DEFAULTS } from "../../runtime/config/compile.ts";
import type { CompiledRetry } from "../../runtime/config/types.ts";
import { settle } from "../../runtime/invoke/outcome-table.ts";
import type { FunctionContext } from "../../runtime/sdk/types.ts";
import rows, * as rowsModule from "../fixtures/testing/fns/rows.ts";

const NOW = Date.parse("2030-01-01T00:00:00Z");
const now = () => NOW;
/** The built-in policy (5 attempts, 1 s doubling to 5 m) with jitter off, as invoke() runs it without `random`. */
const RETRY: CompiledRetry = { ...BUILT_IN_DEFAULTS.retry, jitter: false };

/** The host's settle() for the result's outcome: the settlement must be exactly that. */
function expectHostSettlement(
  result: InvokeResult,
  attempt: number,
  options: { retry?: CompiledRetry; breakerOpenMs?: number } = {},
): void {
  expect(result.settlement).toEqual(settle(result.outcome, attempt, options.retry ?? RETRY, Math.random, options.breakerOpenMs));
}

const ran = (result: InvokeResult) => result.logs.some((line) => line.msg === "row");

describe("outcome table", () => {
  it("success with output: publishes the output with Nats-Msg-Id, then acks", async () => {
    const result = await invoke(rows, { mode: "ok", n: 7 }, { function: "rows", stream: "EVT", seq: 42, output: "out.rows", now });
    expect(result.outcome).toEqual({ kind: "success", value: { n: 7, ok: true, currency: null } });
    expect(result.settlement).toEqual({ action: "ack", output: { n: 7, ok: true, currency: null } });
    expect(result.output).toEqual({ n: 7, ok: true, currency: null });
    expect(result.published.map((m) => [m.subject, m.json(), m.msgId])).toEqual([
      ["tside.rows", { n: 7, seen: true }, undefined],
      ["out.rows", { n: 7, ok: true, currency: null }, "rows:EVT:42"],
    ]);
    expectHostSettlement(result, 1);
  });

  it("a plain error with attempts left: nak with the backoff delay for the delivery count", async () => {
    for (const [deliveryCount, delayMs] of [
      [1, 1000],
      [2, 2000],
      [4, 8000],
    ] as const) {
      const result = await invoke(rows, { mode: "fail" }, { deliveryCount, now });
      expect(result.outcome.kind).toBe("error");
      expect(result.settlement).toEqual({ action: "nak", delayMs, error: `transient failure on delivery ${deliveryCount}` });
      expectHostSettlement(result, deliveryCount);
    }
  });

  it("RetryAfterError: nak with its delay", async () => {
    const result = await invoke(rows, { mode: "later" }, { now });
    expect(result.settlement).toEqual({ action: "nak", delayMs: 400, error: "RetryAfterError: rate limited" });
    expectHostSettlement(result, 1);
  });

  it("timeout: counts as a failure (nak with backoff)", async () => {
    const result = await invoke(rows, { mode: "slow" }, { timeout: "50ms", deliveryCount: 2, now });
    expect(result.outcome).toEqual({ kind: "timeout", timeoutMs: 50 });
    expect(result.settlement).toEqual({ action: "nak", delayMs: 2000, error: "timed out after 50ms" });
    expectHostSettlement(result, 2);
  });

  it("attempts used up: dead-letters as attempts-exhausted on the last attempt, and past it without running", async () => {
    const last = await invoke(rows, { mode: "fail" }, { deliveryCount: 5, now });
    expect(last.settlement).toMatchObject({
      action: "dead-letter",
      reason: "attempts-exhausted",
      error: "transient failure on delivery 5",
    });
    expectHostSettlement(last, 5);
    const timedOut = await invoke(rows, { mode: "slow" }, { deliveryCount: 3, timeout: 20, retry: { maxAttempts: 3 }, now });
    expect(timedOut.settlement).toMatchObject({ action: "dead-letter", reason: "attempts-exhausted", error: "timed out after 20ms" });
    expectHostSettlement(timedOut, 3, { retry: { ...RETRY, maxAttempts: 3 } });
    // The poison guard: a delivery past maxAttempts (its host died mid-run) is not run again.
    const past = await invoke(rows, { mode: "ok" }, { deliveryCount: 6, now });
    expect(past.outcome).toEqual({ kind: "exhausted", attempts: 6 });
    expect(past.settlement).toMatchObject({ action: "dead-letter", reason: "attempts-exhausted" });
    expect(ran(past)).toBe(false);
    expectHostSettlement(past, 6);
  });

  it("NonRetryableError: dead-letters at once, the original bytes and headers with the Jetfn-* ones", async () => {
    const result = await invoke(
      rows,
      { mode: "fatal", n: 3 },
      {
        function: "rows",
        subject: "evt.rows",
        stream: "EVT",
        seq: 9,
        headers: { "Customer-Id": "c-1" },
        now,
      },
    );
    expect(result.settlement).toEqual({ action: "dead-letter", reason: "non-retryable", error: "NonRetryableError: declined 3" });
    expectHostSettlement(result, 1);
    const [dead, ...rest] = result.published;
    expect(rest).toEqual([]);
    expect(dead!.subject).toBe("jetfn.dlq.rows");
    expect(dead!.text()).toBe('{"mode":"fatal","n":3}');
    expect(dead!.msgId).toBe("dlq:rows:EVT:9");
    expect(dead!.headers).toMatchObject({
      "Customer-Id": "c-1",
      "Jetfn-Function": "rows",
      "Jetfn-Subject": "evt.rows",
      "Jetfn-Stream": "EVT",
      "Jetfn-Stream-Seq": "9",
      "Jetfn-Deliveries": "1",
      "Jetfn-Error": "NonRetryableError: declined 3",
      "Jetfn-Reason": "non-retryable",
    });
  });

  it("undecodable payload: dead-letters the bytes as received, without running the handler", async () => {
    const bytes = new TextEncoder().encode("{not json");
    const result = await invoke(rows, bytes, { now });
    expect(result.outcome.kind).toBe("undecodable");
    expect(result.settlement).toMatchObject({
      action: "dead-letter",
      reason: "undecodable",
      error: expect.stringMatching(/^payload is not valid JSON/),
    });
    expect(result.published[0]!.data).toEqual(bytes);
    expect(ran(result)).toBe(false);
    expectHostSettlement(result, 1);
  });

  it("schema invalid: dead-letters as invalid, without running the handler", async () => {
    const result = await invoke(rows, { mode: "nope" }, { now });
    expect(result.outcome.kind).toBe("invalid");
    expect(result.settlement).toMatchObject({ action: "dead-letter", reason: "invalid", error: expect.stringMatching(/^schema: mode: /) });
    expect(ran(result)).toBe(false);
    expectHostSettlement(result, 1);
  });

  it("BreakerOpenError: nak until the breaker lets a probe through, even on the last attempt", async () => {
    for (const deliveryCount of [1, 5]) {
      const result = await invoke(rows, { mode: "guarded" }, { openBreakers: ["dependency"], deliveryCount, now });
      expect(result.settlement).toEqual({ action: "nak", delayMs: 5000, error: "BreakerOpenError: breaker dependency is open" });
      expectHostSettlement(result, deliveryCount);
    }
    const closed = await invoke(rows, { mode: "guarded" }, { now });
    expect(closed.settlement).toEqual({ action: "ack", output: { called: true } });
  });

  it("a failure that opens a breaker the handler used: nak held until it half-opens, not the backoff", async () => {
    const result = await invoke(rows, { mode: "trip" }, { deliveryCount: 5, now });
    expect(result.settlement).toEqual({ action: "nak", delayMs: 5000, error: "dependency down" });
    expectHostSettlement(result, 5, { breakerOpenMs: 5000 });
  });

  it("dead-letter publish refused: tried again in place; never dropped, no attempt spent", async () => {
    const result = await invoke(
      rows,
      { mode: "fatal" },
      {
        now,
        publish: (message) => {
          if (message.subject.startsWith("jetfn.dlq.")) throw new Error("no stream captures it");
        },
      },
    );
    // A host tries until the broker takes it; invoke() 3 times, then ends as shutdown would.
    expect(result.settlement).toEqual({
      action: "nak",
      delayMs: 0,
      spared: true,
      error: "dead-letter publish to jetfn.dlq.test failed: no stream captures it; gave up waiting for the broker after 3 tries",
    });
    expect(result.published).toEqual([]);
  });

  it("output publish refused, then taken: acked with the output, the handler run once", async () => {
    let refusals = 2;
    const result = await invoke(
      rows,
      { mode: "ok", n: 1 },
      {
        now,
        output: "out.rows",
        deliveryCount: 5,
        publish: (message) => {
          if (message.subject === "out.rows" && refusals-- > 0) throw new Error("insufficient resources");
        },
      },
    );
    expect(result.settlement).toEqual({ action: "ack", output: { n: 1, ok: true, currency: null } });
    expect(result.published.map((m) => [m.subject, m.msgId])).toEqual([
      ["tside.rows", undefined],
      ["out.rows", "test:TEST:1"],
    ]);
    expect(result.logs.filter((line) => line.msg === "row")).toHaveLength(1);
  });
});

describe("shaping the context", () => {
  it("passes deliveryCount, headers, subject, seq, config, timestamp and function to ctx", async () => {
    let seen: FunctionContext<{ currency: string }> | undefined;
    const result = await invoke(
      async (event: { id: string }, ctx: FunctionContext<{ currency: string }>) => {
        seen = ctx;
        return `${event.id} in ${ctx.config.currency}`;
      },
      { id: "o-1" },
      {
        function: "charge",
        subject: "orders.created",
        seq: 12,
        deliveryCount: 3,
        headers: { "Trace-Me": "yes" },
        config: { currency: "EUR" },
        now,
      },
    );
    expect(result.output).toBe("o-1 in EUR");
    expect(seen).toMatchObject({
      function: "charge",
      subject: "orders.created",
      seq: 12,
      deliveryCount: 3,
      headers: { "Trace-Me": "yes" },
      config: { currency: "EUR" },
      timestamp: new Date(NOW),
    });
    expect(seen!.signal.aborted).toBe(false);
  });

  it("accepts the module itself, and a plain function; refuses anything else", async () => {
    expect((await invoke(rowsModule, { mode: "ok" })).settlement.action).toBe("ack");
    expect((await invoke(async () => undefined, null)).settlement).toEqual({ action: "ack", output: undefined });
    await expect(invoke({ nothing: true } as never, {})).rejects.toThrow(/expected defineFunction/);
  });

  it("compiles its options with the host's own compiler: the same names and the same errors as functions.yaml", async () => {
    // The dead letter is named as the host names it, from the compiled function.
    const poisoned = await invoke(rows, { mode: "fatal" }, { function: "charge-payment" });
    expect(poisoned.published.at(-1)?.subject).toBe("jetfn.dlq.charge-payment");
    await expect(invoke(rows, {}, { function: "Charge_Payment" })).rejects.toThrow(/^invoke: function: /);
    await expect(invoke(rows, {}, { timeout: "soon" })).rejects.toThrow(/^invoke: timeout: /);
    await expect(invoke(rows, {}, { retry: { initialDelay: "10s", maxDelay: "1s" } })).rejects.toThrow(
      /^invoke: retry\.(initialDelay|maxDelay): /,
    );
  });

  it("encodes the event per encoding: text as UTF-8, binary as given", async () => {
    const text = await invoke(async (event: unknown) => event, "plain words", { encoding: "text" });
    expect(text.output).toBe("plain words");
    const bytes = new Uint8Array([0, 255, 1]);
    const binary = await invoke(async (event: unknown) => event, bytes, { encoding: "binary" });
    expect(binary.output).toEqual(bytes);
    await expect(invoke(async () => 1, { a: 1 }, { encoding: "binary" })).rejects.toThrow(/must be bytes/);
  });

  it("takes a retry policy over the built-in one, and jitter only with an injected random", async () => {
    const fixed = await invoke(rows, { mode: "fail" }, { deliveryCount: 3, retry: { backoff: "fixed", initialDelay: "250ms" } });
    expect(fixed.settlement).toMatchObject({ action: "nak", delayMs: 250 });
    const jittered = await invoke(rows, { mode: "fail" }, { deliveryCount: 2, random: () => 0 });
    expect(jittered.settlement).toMatchObject({ action: "nak", delayMs: 1000 }); // equal jitter: half of 2 s at least
    const retry: CompiledRetry = { ...BUILT_IN_DEFAULTS.retry };
    expect(jittered.settlement).toEqual(settle(jittered.outcome, 2, retry, () => 0));
  });

  it("logs: the handler's lines with the delivery's fields, and jetfn's one line per failed delivery", async () => {
    const result = await invoke(rows, { mode: "fail", n: 1 }, { function: "rows", subject: "evt.rows", seq: 5, now });
    expect(result.logs).toEqual([
      { level: "info", function: "rows", subject: "evt.rows", seq: 5, delivery_count: 1, mode: "fail", n: 1, msg: "row" },
      expect.objectContaining({
        level: "warn",
        msg: "delivery failed",
        function: "rows",
        outcome: "error",
        action: "nak",
        delay_ms: 1000,
        error: "transient failure on delivery 1",
        stack: expect.stringContaining("rows.ts"),
      }),
    ]);
  });
});

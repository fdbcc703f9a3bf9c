/**
 * The Caller without a server: a fake executor stands in for the handler, the rest is real
 * (admission, the invocation core, metrics). What a synchronous call answers for each way a
 * run can end, and when it is refused before it runs.
 */
import { ROOT_CONTEXT, SpanKind } from "@opentelemetry/api";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../runtime/codec/codec.ts";
import type { CompiledFunction } from "../../runtime/config/types.ts";
import type { CallRequest } from "../../runtime/contracts/call.ts";
import type { Outcome } from "../../runtime/contracts/outcome.ts";
import { Admission } from "../../runtime/invoke/admission.ts";
import { Caller } from "../../runtime/invoke/caller.ts";
import type { Executor, Invocation } from "../../runtime/invoke/executor.ts";
import { HostContext } from "../../runtime/invoke/host-context.ts";
import type { Deadline } from "../../runtime/invoke/run.ts";
import { BreakerRegistry } from "../../runtime/resilience/breaker-registry.ts";
import { BreakerOpenError, NonRetryableError, RetryAfterError } from "../../runtime/sdk/errors.ts";
import { Metrics } from "../../runtime/telemetry/metrics.ts";

const fn = { name: "quote", concurrency: 2, timeoutMs: 50, encoding: "json", config: {} } as unknown as CompiledFunction;
const request: CallRequest = {
  data: new Uint8Array(),
  subject: "POST /quote",
  headers: {},
  parent: ROOT_CONTEXT,
  spanKind: SpanKind.INTERNAL,
};

/** An executor whose runs end as `next` says; `hang` ones never end by themselves. */
class FakeExecutor implements Executor {
  readonly waitingRoom = 0;
  readonly seen: Invocation[] = [];
  next: Outcome | "hang" = { kind: "success", value: { price: 3 } };

  run(invocation: Invocation, deadline: Deadline): Promise<Outcome> {
    this.seen.push(invocation);
    deadline.start();
    return this.next === "hang" ? new Promise(() => {}) : Promise.resolve(this.next);
  }

  status(): undefined {
    return undefined;
  }

  async close(): Promise<void> {}
}

function caller(stop = new AbortController().signal) {
  const metrics = new Metrics();
  metrics.registerFunction(fn.name);
  const host = new HostContext(fn, pino({ level: "silent" }), undefined as never, new BreakerRegistry());
  const executor = new FakeExecutor();
  const admission = new Admission(undefined);
  return { caller: new Caller({ host, executor, admission, metrics, stop }), executor, admission, metrics };
}

describe("Caller", () => {
  it("answers each outcome in the caller's terms; only the messages meant for the caller reach it", async () => {
    // A fresh caller for each: a BreakerOpenError holds the function (calls included) for a while.
    const answer = async (outcome: Outcome) => {
      const { caller: call, executor } = caller();
      executor.next = outcome;
      return call.call(request);
    };
    expect(await answer({ kind: "success", value: { price: 3 } })).toEqual({ kind: "ok", value: { price: 3 } });
    expect(await answer({ kind: "invalid", error: new ValidationError([{ path: "sku", message: "required" }]) })).toEqual({
      kind: "invalid",
      message: "the event does not match the function's schema",
      issues: [{ path: "sku", message: "required" }],
    });
    expect(await answer({ kind: "error", error: new NonRetryableError("sold out") })).toEqual({ kind: "rejected", message: "sold out" });
    expect(await answer({ kind: "error", error: new RetryAfterError("busy", 700) })).toMatchObject({
      kind: "unavailable",
      retryAfterMs: 700,
    });
    expect(await answer({ kind: "error", error: new BreakerOpenError("pricing", 900) })).toMatchObject({
      kind: "unavailable",
      retryAfterMs: 900,
    });
    expect(await answer({ kind: "error", error: new Error("db password is hunter2") })).toEqual({
      kind: "failed",
      message: "function quote failed",
    });
    expect(await answer({ kind: "crashed", reason: "out-of-memory", error: "..." })).toMatchObject({ kind: "failed" });
    expect(await answer({ kind: "aborted", cause: "bystander" })).toMatchObject({ kind: "unavailable" });
  });

  it("times a run out with the function's timeout, and runs calls as calls (no message to heartbeat)", async () => {
    const { caller: call, executor, metrics } = caller();
    executor.next = "hang";
    expect(await call.call(request)).toEqual({ kind: "timeout", message: "function quote did not answer within 50 ms" });
    expect(executor.seen[0]!.call).toBe(true);
    expect(metrics.lastMinute("quote")).toEqual({ successes: 0, failures: 1 });
  });

  it("refuses beyond its concurrency, while paused, and once shutdown's grace is over, without running anything", async () => {
    const stop = new AbortController();
    const { caller: call, executor } = caller(stop.signal);
    executor.next = "hang";
    void call.call(request);
    void call.call(request);
    expect(call.inflight).toBe(2);
    expect(await call.call(request)).toMatchObject({ kind: "unavailable", message: "function quote is running 2 calls already" });
    expect(executor.seen).toHaveLength(2);

    const paused = caller();
    paused.admission.setPaused({ reason: "db repair", at: "2030-01-01T00:00:00Z", by: "ops@host" });
    expect(await paused.caller.call(request)).toMatchObject({
      kind: "unavailable",
      message: "function quote is not taking calls: it is paused (db repair)",
    });
    expect(paused.executor.seen).toHaveLength(0);

    stop.abort();
    expect(await call.call(request)).toMatchObject({ kind: "unavailable", message: "the host is shutting down" });
  });

  it("settles once no call runs", async () => {
    const { caller: call, executor } = caller();
    let finish!: (outcome: Outcome) => void;
    executor.run = (_invocation, deadline) => {
      deadline.start();
      return new Promise((resolve) => (finish = resolve));
    };
    const running = call.call(request);
    let settled = false;
    const idle = call.settled().then(() => (settled = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    finish({ kind: "success", value: 1 });
    await running;
    await idle;
    expect(call.inflight).toBe(0);
  });
});

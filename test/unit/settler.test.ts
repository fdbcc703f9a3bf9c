/**
 * The settler's wait for the broker: a publish of an output or a dead letter that the
 * broker refuses is tried again in place (same Nats-Msg-Id), the delivery heartbeated and
 * the function's pulls held, until the broker takes it; shutdown and revocation end it.
 * Fake timers drive it: an outage of ten minutes takes milliseconds.
 */
import { ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { CompiledFunction } from "../../runtime/config/types.ts";
import type { BrokerFailure, BrokerPublisher } from "../../runtime/contracts/broker.ts";
import type { Delivery } from "../../runtime/contracts/delivery.ts";
import type { Outcome } from "../../runtime/contracts/outcome.ts";
import { Admission } from "../../runtime/invoke/admission.ts";
import { Settler } from "../../runtime/invoke/settler.ts";
import { createLogger } from "../../runtime/telemetry/logger.ts";
import { Metrics } from "../../runtime/telemetry/metrics.ts";
import { cleanup, load } from "./config-fixtures.ts";

afterAll(cleanup);

/** One function with an output, compiled by the real compiler: timeout 1s, so ack wait 6 s. */
const FN: CompiledFunction = load([
  "functions:",
  "  - name: shout",
  "    handler: functions/a.ts",
  "    stream: EVT",
  "    subjects: [evt.shout]",
  "    output: out.shout",
  "    timeout: 1s",
  "    retry: { maxAttempts: 3, initialDelay: 100ms }",
]).functions[0]!;

class StorageFull extends Error {}
class TooLarge extends Error {}

/** Refuses publishes while `refusing` says so; records each try. */
class FakeBroker implements BrokerPublisher {
  readonly maxPayload = 1024 * 1024;
  readonly tries: { subject: string; msgId?: string; at: number }[] = [];
  refusing: (subject: string) => Error | undefined = () => undefined;

  async publish(subject: string, _data: Uint8Array, options: { msgId?: string } = {}) {
    this.tries.push({ subject, msgId: options.msgId, at: Date.now() });
    const error = this.refusing(subject);
    if (error) throw error;
    return { stream: "OUT", seq: this.tries.length, duplicate: false };
  }

  failureOf(error: unknown): BrokerFailure | undefined {
    return error instanceof TooLarge ? undefined : error instanceof StorageFull ? "storage-full" : "refused";
  }
}

/** A delivery that records what was sent for it, and when. */
function delivery(revoked?: AbortSignal): Delivery & { sent: string[]; beats: number[] } {
  const sent: string[] = [];
  const beats: number[] = [];
  return {
    data: new TextEncoder().encode('{"n":1}'),
    subject: "evt.shout",
    headers: {},
    stream: "EVT",
    seq: 7,
    deliveryCount: 3,
    timestamp: new Date(0),
    ...(revoked ? { revoked } : {}),
    sent,
    beats,
    ack: () => sent.push("ack"),
    nak: (delayMs) => sent.push(`nak ${delayMs}`),
    term: () => sent.push("term"),
    working: () => beats.push(Date.now()),
  };
}

function setup(options: { stop?: AbortSignal } = {}) {
  const broker = new FakeBroker();
  const metrics = new Metrics();
  const admission = new Admission(undefined, () => {}, Date.now);
  const log = createLogger("silent");
  const settler = new Settler(FN, broker, metrics, log, () => 0.5, { waits: admission, ...(options.stop ? { stop: options.stop } : {}) });
  const settle = (d: Delivery, outcome: Outcome, attempt = 3) =>
    settler.settle({ delivery: d, attempt, outcome, span: trace.getTracer("test").startSpan("t"), context: ROOT_CONTEXT });
  const failures = async (reason: string) =>
    (await metrics.outputFailures.get()).values.find((v) => v.labels.function === "shout" && v.labels.reason === reason)?.value ?? 0;
  return { broker, admission, settle, failures };
}

const success: Outcome = { kind: "success", value: { loud: "HI" } };

describe("Settler: a publish the broker refuses", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("is tried again in place until the broker takes it: one ack, heartbeats, pulls held meanwhile, no attempt spent", async () => {
    const { broker, admission, settle, failures } = setup();
    const d = delivery();
    // Full for ten minutes, on the handler's last allowed attempt.
    broker.refusing = () => (Date.now() < 600_000 ? new StorageFull("insufficient resources") : undefined);
    const holds: unknown[] = [];
    admission.onBrokerHold((hold) => holds.push(hold?.reason ?? "over"));
    let result: unknown;
    void settle(d, success).then((r) => (result = r));
    await vi.advanceTimersByTimeAsync(300_000);
    expect(result).toBeUndefined();
    expect(d.sent).toEqual([]);
    expect(admission.brokerHold).toMatchObject({ reason: "storage-full", waiting: 1, since: new Date(0).toISOString() });
    expect(admission.tryAdmit()).toBe(false);
    await vi.advanceTimersByTimeAsync(305_000);
    expect(result).toEqual({ action: "ack", output: { loud: "HI" } });
    expect(d.sent).toEqual(["ack"]);
    expect(holds).toEqual(["storage-full", "over"]);
    expect(admission.tryAdmit()).toBe(true);
    // The same message every time, so it lands once.
    expect(new Set(broker.tries.map((t) => `${t.subject} ${t.msgId}`))).toEqual(new Set(["out.shout shout:EVT:7"]));
    const gaps = broker.tries.slice(1).map((t, i) => t.at - broker.tries[i]!.at);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(5000);
    // working() at the first refusal, then every half ack wait (3 s): never redelivered.
    expect(d.beats[0]).toBe(0);
    const beatGaps = d.beats.slice(1).map((t, i) => t - d.beats[i]!);
    expect(Math.max(...beatGaps)).toBeLessThanOrEqual(3000);
    expect(d.beats.at(-1)).toBeGreaterThan(597_000);
    expect(await failures("storage-full")).toBe(broker.tries.length - 1);
    // Heartbeats stop with the wait.
    const beats = d.beats.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(d.beats).toHaveLength(beats);
  });

  it("waits for a dead letter the same way, then terms", async () => {
    const { broker, admission, settle } = setup();
    const d = delivery();
    broker.refusing = (subject) => (subject.startsWith("jetfn.dlq.") && Date.now() < 20_000 ? new Error("timeout") : undefined);
    const done = settle(d, { kind: "exhausted", attempts: 4 });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(admission.brokerHold?.reason).toBe("refused");
    await vi.advanceTimersByTimeAsync(15_000);
    expect(await done).toMatchObject({ action: "dead-letter", reason: "attempts-exhausted" });
    expect(d.sent).toEqual(["term"]);
    expect(new Set(broker.tries.map((t) => t.msgId))).toEqual(new Set(["dlq:shout:EVT:7"]));
    expect(admission.brokerHold).toBeUndefined();
  });

  it("ends at shutdown's end of grace with a nak of no delay that spends no attempt", async () => {
    const stop = new AbortController();
    const { broker, admission, settle } = setup({ stop: stop.signal });
    const d = delivery();
    broker.refusing = () => new StorageFull("insufficient resources");
    const done = settle(d, success);
    await vi.advanceTimersByTimeAsync(30_000);
    const tries = broker.tries.length;
    stop.abort();
    expect(await done).toEqual({
      action: "nak",
      delayMs: 0,
      spared: true,
      error: `output publish to out.shout failed: insufficient resources; shutdown ended the wait for the broker after ${tries} tries`,
    });
    expect(d.sent).toEqual(["nak 0"]);
    expect(admission.brokerHold).toBeUndefined();
  });

  it("sends nothing at all once the delivery is revoked", async () => {
    const revoked = new AbortController();
    const { broker, admission, settle } = setup();
    const d = delivery(revoked.signal);
    broker.refusing = () => new StorageFull("insufficient resources");
    const done = settle(d, success);
    await vi.advanceTimersByTimeAsync(30_000);
    revoked.abort();
    expect(await done).toMatchObject({ action: "nak", unsent: true });
    const tries = broker.tries.length;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(broker.tries).toHaveLength(tries);
    expect(d.sent).toEqual([]);
    expect(admission.brokerHold).toBeUndefined();
    // Revoked before settling: not even the first publish.
    const late = delivery(revoked.signal);
    expect(await settle(late, success)).toMatchObject({ unsent: true });
    expect(broker.tries).toHaveLength(tries);
    expect(late.sent).toEqual([]);
  });

  it("an output refused for its own size stays the handler's failure: dead-lettered as non-retryable, no wait", async () => {
    const { broker, admission, settle, failures } = setup();
    const d = delivery();
    broker.refusing = (subject) => (subject === "out.shout" ? new TooLarge("message size exceeds maximum allowed") : undefined);
    const holds: unknown[] = [];
    admission.onBrokerHold((hold) => holds.push(hold));
    expect(await settle(d, success, 1)).toEqual({
      action: "dead-letter",
      reason: "non-retryable",
      error: "output publish to out.shout failed: message size exceeds maximum allowed",
    });
    expect(broker.tries.map((t) => t.subject)).toEqual(["out.shout", "jetfn.dlq.shout"]);
    expect(d.sent).toEqual(["term"]);
    expect(holds).toEqual([]);
    expect(await failures("too-large")).toBe(1);
  });

  it("a handler failure is still the handler's: nak with backoff, nothing published", async () => {
    const { broker, settle } = setup();
    const d = delivery();
    // 100 ms jittered with random() = 0.5: 75 ms.
    expect(await settle(d, { kind: "error", error: new Error("boom") }, 1)).toEqual({ action: "nak", delayMs: 75, error: "boom" });
    expect(broker.tries).toEqual([]);
    expect(d.sent).toEqual(["nak 75"]);
  });
});

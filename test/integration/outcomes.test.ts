/**
 * Every row of DESIGN.md's outcome table, against a real nats-server and an in-process
 * host: success with output, retry then success, RetryAfterError, NonRetryableError,
 * schema-invalid, undecodable, attempts exhausted, timeout, dead-letter publish failure,
 * and output de-duplication when a message is delivered again.
 */
import type { Msg, Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { type LogCapture, makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

/** The handlers are in test/fixtures/outcomes/fns/. */
const files: Record<string, string> = {
  "functions.yaml": `
defaults:
  timeout: 2s
  retry: { maxAttempts: 3, initialDelay: 100ms, maxDelay: 1s, jitter: false }
streams:
  - { name: EVT, subjects: ["evt.>"], storage: memory }
  - { name: OUT, subjects: ["out.>"], storage: memory }
  - { name: CALLS, subjects: ["calls.>"], storage: memory }
  - { name: DLQFAIL, subjects: ["dlqfail.>"], storage: memory }
functions:
  - { name: ok, handler: fns/ok.ts, stream: EVT, subjects: [evt.ok], output: out.ok }
  - { name: flaky, handler: fns/flaky.ts, stream: EVT, subjects: [evt.flaky], retry: { maxAttempts: 5 } }
  - { name: later, handler: fns/later.ts, stream: EVT, subjects: [evt.later] }
  - { name: fatal, handler: fns/fatal.ts, stream: EVT, subjects: [evt.fatal] }
  - { name: strict, handler: fns/strict.ts, stream: EVT, subjects: [evt.strict] }
  - { name: broken, handler: fns/broken.ts, stream: EVT, subjects: [evt.broken] }
  - { name: slow, handler: fns/slow.ts, stream: EVT, subjects: [evt.slow], timeout: 300ms, retry: { maxAttempts: 2 } }
  - { name: dlqfail, handler: fns/fatal.ts, stream: EVT, subjects: [evt.dlqfail], deadLetter: dlqfail.dead }
`,
};

let host: Host;
let logs: LogCapture;
let baseUrl: string;
let calls: Subscription;
const seen: { fn: string; seq: number; deliveryCount: number; at: number }[] = [];

const nats = useNats();

beforeAll(async () => {
  calls = nats.nc.subscribe("calls.>", {
    callback: (_err: Error | null, msg: Msg) => {
      seen.push({ fn: msg.subject.slice("calls.".length), ...msg.json<{ seq: number; deliveryCount: number; at: number }>() });
    },
  });
  ({ host, logs, baseUrl } = await startHost(makeProject(files, { fixtures: "outcomes" }), nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
  calls?.unsubscribe();
});

const callsOf = (fn: string, seq: number) => seen.filter((c) => c.fn === fn && c.seq === seq);

async function publish(subject: string, body: string | object): Promise<number> {
  const ack = await nats.js.publish(subject, typeof body === "string" ? body : JSON.stringify(body));
  return ack.seq;
}

async function deadLetter(subject: string, seq: number, stream = "JETFN_DLQ") {
  return waitFor(
    async () => {
      const msg = await nats.jsm.streams.getMessage(stream, { last_by_subj: subject });
      return msg && msg.header.get("Jetfn-Stream-Seq") === String(seq) ? msg : null;
    },
    { message: `dead letter for seq ${seq} on ${subject}` },
  );
}

/** Every message of the function's consumer is settled: nothing pending, nothing un-acked. */
async function drained(durable: string): Promise<void> {
  await waitFor(
    async () => {
      const info = await nats.jsm.consumers.info("EVT", durable);
      return info.num_pending === 0 && info.num_ack_pending === 0 && info.num_redelivered >= 0 && info.delivered.stream_seq > 0;
    },
    { message: `consumer ${durable} settled` },
  );
}

const metric = (series: string) => scrape(baseUrl, series);

describe("outcome table", () => {
  it("success: publishes the output with Nats-Msg-Id, then acks", async () => {
    const seq = await publish("evt.ok", { n: 1 });
    const out = await waitFor(() => nats.jsm.streams.getMessage("OUT", { last_by_subj: "out.ok" }));
    expect(out.json()).toEqual({ n: 1, ok: true });
    expect(out.header.get("Nats-Msg-Id")).toBe(`ok:EVT:${seq}`);
    await drained("jetfn_ok");
    expect(callsOf("ok", seq)).toHaveLength(1);
    await waitFor(async () => (await metric('jetfn_invocations_total{function="ok",outcome="success"}')) === 1);
    expect(await metric('jetfn_acks_total{function="ok",action="ack"}')).toBe(1);
  });

  it("failure with attempts left: nak with backoff, then success on delivery 3", async () => {
    const seq = await publish("evt.flaky", { n: 2 });
    await waitFor(() => callsOf("flaky", seq).length === 3);
    await drained("jetfn_flaky");
    const [first, second, third] = callsOf("flaky", seq);
    expect([first!.deliveryCount, second!.deliveryCount, third!.deliveryCount]).toEqual([1, 2, 3]);
    // Backoff 100ms then 200ms (jitter off).
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(90);
    expect(third!.at - second!.at).toBeGreaterThanOrEqual(190);
    expect(await metric('jetfn_acks_total{function="flaky",action="nak"}')).toBe(2);
    expect(await metric('jetfn_invocations_total{function="flaky",outcome="error"}')).toBe(2);
    expect(await metric('jetfn_invocations_total{function="flaky",outcome="success"}')).toBe(1);
    const line = logs.find((l) => l.function === "flaky" && l.msg === "delivery failed");
    expect(line).toMatchObject({ subject: "evt.flaky", seq, delivery_count: 1, outcome: "error", action: "nak", delay_ms: 100 });
    expect(line?.error).toBe("flaky dependency, attempt 1");
  });

  it("RetryAfterError: nak with the handler's delay", async () => {
    const seq = await publish("evt.later", {});
    await waitFor(() => callsOf("later", seq).length === 2);
    const [first, second] = callsOf("later", seq);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(390);
    await drained("jetfn_later");
  });

  it("NonRetryableError: dead-letters the original bytes with Jetfn-* headers, then terms", async () => {
    const body = '{"orderId":"o-1",  "spacing":"kept as sent"}';
    const seq = await publish("evt.fatal", body);
    const dead = await deadLetter("jetfn.dlq.fatal", seq);
    expect(new TextDecoder().decode(dead.data)).toBe(body);
    expect(dead.header.get("Jetfn-Function")).toBe("fatal");
    expect(dead.header.get("Jetfn-Subject")).toBe("evt.fatal");
    expect(dead.header.get("Jetfn-Stream")).toBe("EVT");
    expect(dead.header.get("Jetfn-Deliveries")).toBe("1");
    expect(dead.header.get("Jetfn-Error")).toBe("NonRetryableError: card declined");
    expect(Number.isNaN(Date.parse(dead.header.get("Jetfn-Failed-At")))).toBe(false);
    await drained("jetfn_fatal");
    expect(callsOf("fatal", seq)).toHaveLength(1);
    // Counted once the dead-letter stream acknowledged the copy, which a reader may see first.
    await waitFor(async () => (await metric('jetfn_dead_letters_total{function="fatal",reason="non-retryable"}')) === 1, {
      message: 'jetfn_dead_letters_total{function="fatal",reason="non-retryable"} reached 1',
    });
    expect(await metric('jetfn_acks_total{function="fatal",action="term"}')).toBe(1);
  });

  it("schema invalid: dead-letters without running the handler", async () => {
    const seq = await publish("evt.strict", { amount: -5 });
    const dead = await deadLetter("jetfn.dlq.strict", seq);
    expect(dead.header.get("Jetfn-Error")).toMatch(/^schema: amount: /);
    await drained("jetfn_strict");
    expect(callsOf("strict", seq)).toHaveLength(0);
    expect(await metric('jetfn_invocations_total{function="strict",outcome="invalid"}')).toBe(1);
  });

  it("undecodable payload: dead-letters the bytes as received", async () => {
    const seq = await publish("evt.ok", "{not json");
    const dead = await deadLetter("jetfn.dlq.ok", seq);
    expect(new TextDecoder().decode(dead.data)).toBe("{not json");
    expect(dead.header.get("Jetfn-Error")).toMatch(/^payload is not valid JSON/);
    // Counted once the dead-letter stream acknowledged the copy, which a reader may see first.
    await waitFor(async () => (await metric('jetfn_dead_letters_total{function="ok",reason="undecodable"}')) === 1, {
      message: 'jetfn_dead_letters_total{function="ok",reason="undecodable"} reached 1',
    });
  });

  it("attempts used up: dead-letters after maxAttempts deliveries (a thrown string too)", async () => {
    const seq = await publish("evt.broken", {});
    const dead = await deadLetter("jetfn.dlq.broken", seq);
    expect(dead.header.get("Jetfn-Deliveries")).toBe("3");
    expect(dead.header.get("Jetfn-Error")).toBe("a string, not an Error");
    await drained("jetfn_broken");
    expect(callsOf("broken", seq).map((c) => c.deliveryCount)).toEqual([1, 2, 3]);
    // Counted once the dead-letter stream acknowledged the copy, which a reader may see first.
    await waitFor(async () => (await metric('jetfn_dead_letters_total{function="broken",reason="attempts-exhausted"}')) === 1, {
      message: 'jetfn_dead_letters_total{function="broken",reason="attempts-exhausted"} reached 1',
    });
  });

  it("timeout: aborts, counts as a failure, retries, then dead-letters", async () => {
    const seq = await publish("evt.slow", {});
    const dead = await deadLetter("jetfn.dlq.slow", seq);
    expect(dead.header.get("Jetfn-Error")).toBe("timed out after 300ms");
    expect(dead.header.get("Jetfn-Deliveries")).toBe("2");
    expect(callsOf("slow", seq)).toHaveLength(2);
    expect(await metric('jetfn_invocations_total{function="slow",outcome="timeout"}')).toBe(2);
  });

  it("dead-letter publish refused: waits for the broker in place, unspent, and reaches the dead letters once they work again", async () => {
    const stream = await nats.jsm.streams.info("DLQFAIL");
    await nats.jsm.streams.delete("DLQFAIL");
    const seq = await publish("evt.dlqfail", { n: 9 });
    const refusals = 'jetfn_output_failures_total{function="dlqfail",reason="no-responders"}';
    await waitFor(async () => (await metric(refusals)) >= 2, { message: "the dead-letter publish refused, and tried again" });
    const fns = (await (await fetch(`${baseUrl}/functions`)).json()) as { name: string; brokerHold?: unknown }[];
    expect(fns.find((f) => f.name === "dlqfail")?.brokerHold).toMatchObject({ reason: "no-responders", waiting: 1 });
    expect(fns.find((f) => f.name === "ok")?.brokerHold).toBeUndefined();
    expect(await metric('jetfn_dead_letters_total{function="dlqfail",reason="non-retryable"}')).toBe(0);
    const info = await nats.jsm.consumers.info("EVT", "jetfn_dlqfail");
    expect(info.num_ack_pending).toBe(1); // held here, heartbeated: not dropped, not redelivered
    await nats.jsm.streams.add({ ...stream.config });
    const dead = await deadLetter("dlqfail.dead", seq, "DLQFAIL");
    expect(new TextDecoder().decode(dead.data)).toBe('{"n":9}');
    expect(dead.header.get("Jetfn-Deliveries")).toBe("1");
    await drained("jetfn_dlqfail");
    // The handler ran once: its failure was kept while the dead letter waited.
    expect(callsOf("dlqfail", seq)).toHaveLength(1);
    expect(await metric('jetfn_dead_letters_total{function="dlqfail",reason="non-retryable"}')).toBe(1);
    expect(logs.find((l) => l.function === "dlqfail" && l.msg === "delivery failed")).toMatchObject({ action: "dead-letter" });
    const held = logs.lines.filter((l) => l.function === "dlqfail" && /^the broker (refuses|takes)/.test(String(l.msg)));
    expect(held.map((l) => l.msg)).toEqual([
      "the broker refuses the function's outputs: pulling held, the waiting publishes retried in place",
      "the broker takes the function's outputs again: pulling resumed",
    ]);
  });

  it("a message delivered again (consumer re-created) publishes its output once", async () => {
    const before = (await nats.jsm.streams.info("OUT")).state.messages;
    const seqs = [await publish("evt.ok", { n: 10 }), await publish("evt.ok", { n: 11 })];
    await waitFor(async () => (await nats.jsm.streams.info("OUT")).state.messages === before + 2);
    await drained("jetfn_ok");
    // Delete the consumer under the running host: it re-binds (deliver policy all), and
    // every message of evt.ok is delivered again as a new delivery.
    await nats.jsm.consumers.delete("EVT", "jetfn_ok");
    await waitFor(() => seqs.every((seq) => callsOf("ok", seq).length === 2), { message: "redelivery after re-bind", timeout: 20_000 });
    await drained("jetfn_ok");
    expect((await nats.jsm.streams.info("OUT")).state.messages).toBe(before + 2);
    expect(logs.lines.filter((l) => l.msg === "created consumer" && l.durable === "jetfn_ok")).toHaveLength(2);
  });
});

describe("HTTP", () => {
  it("is ready, lists functions, and serves metrics", async () => {
    expect((await fetch(`${baseUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${baseUrl}/healthz`)).status).toBe(200);
    const fns = (await (await fetch(`${baseUrl}/functions`)).json()) as { name: string; limit: number; durable: string }[];
    expect(fns.map((f) => f.name)).toContain("flaky");
    expect(fns.find((f) => f.name === "ok")).toMatchObject({ durable: "jetfn_ok", limit: 16, bound: true });
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    for (const name of [
      "jetfn_messages_received_total",
      "jetfn_invocation_duration_seconds_bucket",
      "jetfn_inflight_invocations",
      "process_cpu_user_seconds_total",
    ]) {
      expect(text).toContain(name);
    }
  });
});

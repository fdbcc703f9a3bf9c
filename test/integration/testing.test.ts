/**
 * `jetfn/testing`'s invoke() against a real host: the same handler file and the same event,
 * once through a host on a real nats-server, once through invoke() with the function's
 * settings. For each row of the outcome table the host's settlement of each delivery (read
 * from its "delivery failed" line, or its output and ack) must be what invoke() returns, and
 * what it published (output, dead letter) the same bytes and headers.
 */
import { type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node";
import { type InvokeOptions, type InvokeResult, invoke } from "jetfn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import rows from "../fixtures/testing/fns/rows.ts";
import { type LogCapture, makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const files = {
  "functions.yaml": `
defaults:
  timeout: 300ms
  retry: { maxAttempts: 2, initialDelay: 100ms, maxDelay: 1s, jitter: false }
streams:
  - { name: TEVT, subjects: ["tevt.>"], storage: memory }
  - { name: TOUT, subjects: ["tout.>"], storage: memory }
  - { name: TSIDE, subjects: ["tside.>"], storage: memory }
functions:
  - { name: rows, handler: fns/rows.ts, stream: TEVT, subjects: [tevt.rows], output: tout.rows, config: { currency: EUR } }
  - { name: guarded, handler: fns/rows.ts, stream: TEVT, subjects: [tevt.guarded] }
`,
};

/** The same functions, as invoke() options. */
const OPTIONS: Record<"rows" | "guarded", InvokeOptions> = {
  rows: {
    function: "rows",
    subject: "tevt.rows",
    stream: "TEVT",
    output: "tout.rows",
    config: { currency: "EUR" },
    timeout: "300ms",
    retry: { maxAttempts: 2, initialDelay: "100ms", maxDelay: "1s", jitter: false },
  },
  guarded: {
    function: "guarded",
    subject: "tevt.guarded",
    stream: "TEVT",
    timeout: "300ms",
    retry: { maxAttempts: 2, initialDelay: "100ms", maxDelay: "1s", jitter: false },
  },
};

const nats = useNats();
let host: Host;
let logs: LogCapture;

beforeAll(async () => {
  ({ host, logs } = await startHost(makeProject(files, { fixtures: "testing" }), nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

const encoder = new TextEncoder();

async function publish(fn: "rows" | "guarded", event: object | Uint8Array, headers: Record<string, string> = {}): Promise<number> {
  const hdrs = natsHeaders();
  for (const [key, value] of Object.entries(headers)) hdrs.set(key, value);
  const data = event instanceof Uint8Array ? event : encoder.encode(JSON.stringify(event));
  return (await nats.js.publish(`tevt.${fn}`, data, { headers: hdrs })).seq;
}

/** The host's settlement of one failed delivery, from its one "delivery failed" line. */
async function hostFailure(fn: string, seq: number, deliveryCount: number) {
  const line = await waitFor(
    () => logs.find((l) => l.msg === "delivery failed" && l.function === fn && l.seq === seq && l.delivery_count === deliveryCount),
    { message: `the host's settlement of ${fn} seq ${seq} delivery ${deliveryCount}` },
  );
  const settlement =
    line.action === "nak"
      ? { action: "nak", delayMs: line.delay_ms, error: line.error }
      : { action: line.action, reason: line.reason, error: line.error };
  return { outcome: line.outcome, settlement };
}

const viewOf = (result: InvokeResult) => ({ outcome: result.outcome.kind, settlement: result.settlement });

function headersOf(hdrs: MsgHdrs | undefined, except: RegExp): Record<string, string> {
  return Object.fromEntries((hdrs?.keys() ?? []).filter((key) => !except.test(key)).map((key) => [key, hdrs!.get(key)]));
}

/** The host's dead letter for `seq` equals the one invoke() published: bytes, id and headers (but the time). */
async function expectSameDeadLetter(fn: string, seq: number, result: InvokeResult): Promise<void> {
  const stored = await waitFor(
    async () => {
      const msg = await nats.jsm.streams.getMessage("JETFN_DLQ", { last_by_subj: `jetfn.dlq.${fn}` });
      return msg?.header.get("Jetfn-Stream-Seq") === String(seq) ? msg : null;
    },
    { message: `dead letter of ${fn} seq ${seq}` },
  );
  const dead = result.published.at(-1)!;
  expect(dead.subject).toBe(stored.subject);
  expect(dead.data).toEqual(stored.data);
  expect(dead.msgId).toBe(stored.header.get("Nats-Msg-Id"));
  expect(headersOf(natsHeadersFrom(dead.headers), /^Jetfn-Failed-At$/i)).toEqual(
    headersOf(stored.header, /^(Jetfn-Failed-At|Nats-Msg-Id)$/i),
  );
}

function natsHeadersFrom(record: Readonly<Record<string, string>>): MsgHdrs {
  const hdrs = natsHeaders();
  for (const [key, value] of Object.entries(record)) hdrs.set(key, value);
  return hdrs;
}

describe("invoke() settles each delivery as the host does", () => {
  it("success with output: the same output, with the same Nats-Msg-Id, and the same ctx.publish", async () => {
    const event = { mode: "ok", n: 1 };
    const seq = await publish("rows", event);
    const out = await waitFor(async () => {
      const msg = await nats.jsm.streams.getMessage("TOUT", { last_by_subj: "tout.rows" });
      return msg?.header.get("Nats-Msg-Id") === `rows:TEVT:${seq}` ? msg : null;
    });
    const side = await nats.jsm.streams.getMessage("TSIDE", { last_by_subj: "tside.rows" });
    await waitFor(async () => (await nats.jsm.consumers.info("TEVT", "jetfn_rows")).num_ack_pending === 0);
    expect(logs.find((l) => l.msg === "delivery failed" && l.function === "rows" && l.seq === seq)).toBeUndefined();

    const result = await invoke(rows, event, { ...OPTIONS.rows, seq });
    expect(result.settlement).toEqual({ action: "ack", output: out!.json() });
    expect(result.published.map((m) => [m.subject, m.data, m.msgId])).toEqual([
      ["tside.rows", side!.data, undefined],
      ["tout.rows", out.data, `rows:TEVT:${seq}`],
    ]);
  });

  it("a plain error: nak with backoff on delivery 1, dead-letter attempts-exhausted on the last", async () => {
    const event = { mode: "fail" };
    const seq = await publish("rows", event);
    for (const deliveryCount of [1, 2]) {
      const result = await invoke(rows, event, { ...OPTIONS.rows, seq, deliveryCount });
      expect(viewOf(result)).toEqual(await hostFailure("rows", seq, deliveryCount));
      if (deliveryCount === 2) await expectSameDeadLetter("rows", seq, result);
    }
  });

  it("RetryAfterError: nak with its delay", async () => {
    const event = { mode: "later" };
    const seq = await publish("rows", event);
    const result = await invoke(rows, event, { ...OPTIONS.rows, seq });
    expect(viewOf(result)).toEqual(await hostFailure("rows", seq, 1));
    expect(result.settlement).toMatchObject({ action: "nak", delayMs: 400 });
  });

  it("timeout: nak with backoff, then attempts-exhausted", async () => {
    const event = { mode: "slow" };
    const seq = await publish("rows", event);
    for (const deliveryCount of [1, 2]) {
      const result = await invoke(rows, event, { ...OPTIONS.rows, seq, deliveryCount });
      expect(viewOf(result)).toEqual(await hostFailure("rows", seq, deliveryCount));
    }
  });

  it("NonRetryableError: the same dead letter, the message's own headers included", async () => {
    const event = { mode: "fatal", n: 4 };
    const headers = { "Customer-Id": "c-1" };
    const seq = await publish("rows", event, headers);
    const result = await invoke(rows, event, { ...OPTIONS.rows, seq, headers });
    expect(viewOf(result)).toEqual(await hostFailure("rows", seq, 1));
    expect(result.settlement).toMatchObject({ action: "dead-letter", reason: "non-retryable" });
    await expectSameDeadLetter("rows", seq, result);
  });

  it("undecodable payload and schema invalid: the same dead letters", async () => {
    for (const event of [encoder.encode("{not json"), { mode: "nope" }]) {
      const seq = await publish("rows", event);
      const result = await invoke(rows, event, { ...OPTIONS.rows, seq });
      expect(viewOf(result)).toEqual(await hostFailure("rows", seq, 1));
      await expectSameDeadLetter("rows", seq, result);
    }
  });

  it("breakers: a failure that opens one is held until it half-opens; then BreakerOpenError naks until then", async () => {
    // The host's delays are the breaker's remaining open time, read a few ms after it opened.
    const close = (host: { settlement: Record<string, unknown> }, result: InvokeResult) => {
      const { delayMs, ...rest } = host.settlement;
      expect(result.settlement).toMatchObject(rest);
      expect(result.settlement).toMatchObject({ action: "nak", delayMs: 5000 });
      expect(delayMs).toBeGreaterThan(5000 - 2000);
      expect(delayMs).toBeLessThanOrEqual(5000);
    };
    const trip = { mode: "trip" };
    const tripSeq = await publish("guarded", trip);
    const tripped = await hostFailure("guarded", tripSeq, 1);
    const tripResult = await invoke(rows, trip, { ...OPTIONS.guarded, seq: tripSeq });
    expect(tripResult.outcome.kind).toBe(tripped.outcome);
    close(tripped, tripResult);

    const guarded = { mode: "guarded" };
    const seq = await publish("guarded", guarded);
    const refused = await hostFailure("guarded", seq, 1);
    const result = await invoke(rows, guarded, { ...OPTIONS.guarded, seq, openBreakers: ["dependency"] });
    expect(result.outcome.kind).toBe(refused.outcome);
    expect(result.settlement).toMatchObject({ error: "BreakerOpenError: breaker dependency is open" });
    close(refused, result);
  });
});

/**
 * Durable steps (`ctx.step`) against a real nats-server and an in-process host, in both
 * isolation modes (the suite runs twice: see vitest.config.ts). Side effects are counted in
 * an effect log the handlers append to (a file), never by jetfn's own metrics.
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { completionRecordKey, STEP_BUCKET, stepRecordKey } from "../../runtime/contracts/steps.ts";
import type { Host } from "../../runtime/host.ts";
import { makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host;
let baseUrl: string;
let effects: string;

beforeAll(async () => {
  effects = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-steps-")), "effects.log");
  const yaml = `
defaults:
  timeout: 5s
  retry: { maxAttempts: 3, initialDelay: 100ms, maxDelay: 500ms, jitter: false }
  config: { effects: ${JSON.stringify(effects)} }
streams:
  - { name: STEPS, subjects: ["steps.>"], storage: memory }
  # A short duplicate window: the same Nats-Msg-Id published twice 300 ms apart is stored twice (two deliveries of one run).
  - { name: TWICE, subjects: ["twice.>"], storage: memory, duplicateWindow: 100ms }
  - { name: OUT, subjects: ["out.>"], storage: memory }
functions:
  - { name: charge, handler: fns/charge.ts, stream: STEPS, subjects: [steps.charge], output: out.charge }
  - { name: loop, handler: fns/loop.ts, stream: STEPS, subjects: [steps.loop], output: out.loop }
  - { name: big, handler: fns/big.ts, stream: STEPS, subjects: [steps.big], steps: { maxResultSize: 2KB } }
  - { name: dated, handler: fns/dated.ts, stream: STEPS, subjects: [steps.dated] }
  - { name: slow, handler: fns/slow.ts, stream: TWICE, subjects: [twice.slow], concurrency: 4, output: out.slow }
  # Its retry comes after its steps' ttl: the record is gone, and the step runs again.
  - name: expiring
    handler: fns/charge.ts
    stream: STEPS
    subjects: [steps.expiring]
    output: out.expiring
    steps: { ttl: 1s }
    retry: { maxAttempts: 3, initialDelay: 1500ms, maxDelay: 1500ms, jitter: false }
`;
  ({ host, baseUrl } = await startHost(makeProject({ "functions.yaml": yaml }, { fixtures: "steps" }), nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

/** The effect log's lines of one function. */
function effectsOf(fn: string): string[] {
  if (!existsSync(effects)) return [];
  return readFileSync(effects, "utf8")
    .split("\n")
    .filter((line) => line.startsWith(`${fn} `));
}

async function output(subject: string) {
  return waitFor(() => nats.jsm.streams.getMessage("OUT", { last_by_subj: subject }), { message: `output on ${subject}` });
}

async function deadLetter(fn: string, seq: number) {
  return waitFor(
    async () => {
      const msg = await nats.jsm.streams.getMessage("JETFN_DLQ", { last_by_subj: `jetfn.dlq.${fn}` });
      return msg && msg.header.get("Jetfn-Stream-Seq") === String(seq) ? msg : null;
    },
    { message: `dead letter of ${fn} seq ${seq}` },
  );
}

describe("ctx.step", () => {
  it("a step whose record's ttl ran out before the retry runs again, as documented", async () => {
    const ack = await nats.js.publish("steps.expiring", JSON.stringify({ order: "o-9" }));
    const out = await output("out.expiring");
    // The second attempt ran the step again: its own result, and a second side effect.
    expect(out.json()).toEqual({ receipt: "r-o-9", attempt: 2 });
    const key = `expiring:STEPS:${ack.seq}:charge`;
    expect(effectsOf("expiring")).toEqual([`expiring charge o-9 ${key}`, `expiring charge o-9 ${key}`]);
  });

  it("a handler that throws after its step: the retry replays the step, whose side effect happened once", async () => {
    const ack = await nats.js.publish("steps.charge", JSON.stringify({ order: "o-1" }));
    const out = await output("out.charge");
    // The first attempt's result, recorded and replayed: not a second run's.
    expect(out.json()).toEqual({ receipt: "r-o-1", attempt: 1 });
    expect(out.header.get("Nats-Msg-Id")).toBe(`charge:STEPS:${ack.seq}`);
    expect(effectsOf("charge")).toEqual([`charge charge o-1 charge:STEPS:${ack.seq}:charge`]);
    const kv = await new Kvm(nats.nc).open(STEP_BUCKET);
    const record = await kv.get(stepRecordKey("charge", `STEPS:${ack.seq}`, "charge"));
    expect(record?.json()).toMatchObject({ state: "done", result: { receipt: "r-o-1", attempt: 1 } });
    await waitFor(async () => (await scrape(baseUrl, 'jetfn_steps_total{function="charge",result="replayed"}')) === 1);
    expect(await scrape(baseUrl, 'jetfn_steps_total{function="charge",result="ran"}')).toBe(1);
    expect(await scrape(baseUrl, 'jetfn_step_duration_seconds_count{function="charge"}')).toBe(1);
  });

  it("the run id is the event's Nats-Msg-Id when it has one", async () => {
    await nats.js.publish("steps.charge", JSON.stringify({ order: "o-2" }), { msgID: "order-o-2" });
    await waitFor(() => effectsOf("charge").some((line) => line.includes(" o-2 ")));
    await waitFor(async () => (await scrape(baseUrl, 'jetfn_steps_total{function="charge",result="replayed"}')) === 2);
    expect(effectsOf("charge").filter((line) => line.includes(" o-2 "))).toEqual(["charge charge o-2 charge:order-o-2:charge"]);
  });

  it("the same name in a loop of 3 is three steps, each replayed on the retry", async () => {
    const ack = await nats.js.publish("steps.loop", JSON.stringify({ order: "o-3" }));
    const out = await output("out.loop");
    const run = `loop:STEPS:${ack.seq}`;
    expect(out.json()).toEqual([`${run}:item`, `${run}:item#2`, `${run}:item#3`]);
    expect(effectsOf("loop")).toEqual(["loop item o-3 1", "loop item o-3 2", "loop item o-3 3"]);
    await waitFor(async () => (await scrape(baseUrl, 'jetfn_steps_total{function="loop",result="replayed"}')) === 3);
  });

  it("a result over steps.maxResultSize: a StepError naming function, step and size, and a dead letter saying so", async () => {
    const ack = await nats.js.publish("steps.big", JSON.stringify({ order: "o-4" }));
    const dead = await deadLetter("big", ack.seq);
    expect(dead.header.get("Jetfn-Reason")).toBe("step-too-large");
    expect(dead.header.get("Jetfn-Error")).toBe(
      "StepError: step fetch-report of function big: its result is 3013 bytes (2.9 KB) of JSON, over steps.maxResultSize 2048 bytes (2 KB)",
    );
    expect(dead.header.get("Jetfn-Deliveries")).toBe("1");
    expect(effectsOf("big")).toEqual(["big report o-4"]);
    await waitFor(async () => (await scrape(baseUrl, 'jetfn_dead_letters_total{function="big",reason="step-too-large"}')) === 1);
    expect(await scrape(baseUrl, 'jetfn_steps_total{function="big",result="failed"}')).toBe(1);
  });

  it("a result JSON would change (a Date): an error at the step, dead-lettered", async () => {
    const ack = await nats.js.publish("steps.dated", "{}");
    const dead = await deadLetter("dated", ack.seq);
    expect(dead.header.get("Jetfn-Reason")).toBe("step-not-json");
    expect(dead.header.get("Jetfn-Error")).toBe(
      "StepError: step stamp of function dated: the result.at is a Date (return date.toISOString()), which JSON does not read back as it was",
    );
  });

  it("two deliveries of one run at once: the step runs once, the other delivery gets its result", async () => {
    // Stored twice (the duplicate window is 100 ms): two messages with one Nats-Msg-Id, one run.
    const first = await nats.js.publish("twice.slow", JSON.stringify({ order: "o-5" }), { msgID: "ship-o-5" });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const second = await nats.js.publish("twice.slow", JSON.stringify({ order: "o-5" }), { msgID: "ship-o-5" });
    expect(second.duplicate).toBe(false);
    expect(second.seq).not.toBe(first.seq);
    await waitFor(async () => {
      const info = await nats.jsm.consumers.info("TWICE", "jetfn_slow");
      return info.num_pending === 0 && info.num_ack_pending === 0 && info.delivered.stream_seq === second.seq;
    });
    // The second arrived while the first ran the step (800 ms), and did not run it again.
    expect(effectsOf("slow")).toEqual([`slow arrived ${first.seq}`, `slow arrived ${second.seq}`, "slow ship o-5"]);
    expect((await output("out.slow")).string()).toBe("shipped o-5");
    expect(await scrape(baseUrl, 'jetfn_invocations_total{function="slow",outcome="success"}')).toBe(2);
    expect(await scrape(baseUrl, 'jetfn_steps_total{function="slow",result="ran"}')).toBe(1);
    expect(await scrape(baseUrl, 'jetfn_steps_total{function="slow",result="replayed"}')).toBe(1);
  });

  it("a later message of a run that completed is acked as a duplicate, without running the handler", async () => {
    const drained = (seq: number) =>
      waitFor(async () => {
        const info = await nats.jsm.consumers.info("TWICE", "jetfn_slow");
        return info.num_pending === 0 && info.num_ack_pending === 0 && info.delivered.stream_seq === seq;
      });
    const first = await nats.js.publish("twice.slow", JSON.stringify({ order: "o-6" }), { msgID: "ship-o-6" });
    await drained(first.seq);
    await new Promise((resolve) => setTimeout(resolve, 150)); // past the duplicate window: stored again
    const second = await nats.js.publish("twice.slow", JSON.stringify({ order: "o-6" }), { msgID: "ship-o-6" });
    expect(second.duplicate).toBe(false);
    await drained(second.seq);
    // The handler ran for the first message only: one arrival, one shipment.
    expect(effectsOf("slow").filter((line) => line === "slow ship o-6")).toHaveLength(1);
    expect(effectsOf("slow")).toContain(`slow arrived ${first.seq}`);
    expect(effectsOf("slow")).not.toContain(`slow arrived ${second.seq}`);
    await waitFor(async () => (await scrape(baseUrl, 'jetfn_invocations_total{function="slow",outcome="duplicate"}')) === 1);
    const kv = await new Kvm(nats.nc).open(STEP_BUCKET);
    expect((await kv.get(completionRecordKey("slow", "ship-o-6")))?.json()).toMatchObject({ state: "completed" });
  });
});

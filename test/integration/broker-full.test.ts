/**
 * A full JetStream store must not dead-letter events whose handlers succeeded (issue 16,
 * part 2). A nats-server with a small `max_file_store`; events come in through the ingress
 * and run; while they run, a filler stream takes every byte left, and the store stays full
 * for 15 s (a minute with `npm run test:long`), far longer than the function's whole retry
 * schedule (3 attempts, 200 ms to 500 ms apart), then is freed. Every event completes exactly once with its output, the
 * handler runs once per event, nothing is dead-lettered; meanwhile the function pulls
 * nothing and says why, and the ingress answers 503, then 202 again.
 */
import { JetStreamApiError } from "@nats-io/jetstream";
import type { Msg, Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { type LogCapture, makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

/** How long the store stays full: the retry schedule would be spent many times over. */
const FULL_FOR_MS = Number(process.env.JETFN_TEST_FULL_FOR_MS) || 15_000;
const EVENTS = 12;

const nats = useNats({ configText: "jetstream { max_file_store: 4MB, max_memory_store: 256MB }\n" });
let host: Host;
let logs: LogCapture;
let baseUrl: string;
let ingress: string;
let calls: Subscription;
const runs: { id: string; deliveryCount: number }[] = [];

beforeAll(async () => {
  calls = nats.nc.subscribe("calls.shout", {
    callback: (_err: Error | null, msg: Msg) => {
      runs.push(msg.json<{ id: string; deliveryCount: number }>());
    },
  });
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: SHOUTIN, subjects: [shout.in] }
  - { name: SHOUTOUT, subjects: [shout.out] }
  - { name: CALLS, subjects: ["calls.>"], storage: memory }
functions:
  - name: shout
    handler: fns/shout.ts
    stream: SHOUTIN
    subjects: [shout.in]
    output: shout.out
    concurrency: 4
    timeout: 3s
    retry: { maxAttempts: 3, initialDelay: 200ms, maxDelay: 500ms }
routes:
  - { route: POST /shout, publish: shout.in }
`,
    },
    { fixtures: "broker-full" },
  );
  ({ host, logs, baseUrl } = await startHost(dir, nats.server.url, { JETFN_INGRESS_HOST: "127.0.0.1", JETFN_INGRESS_PORT: "0" }));
  ingress = `http://127.0.0.1:${host.ingressAddress!.port}`;
});

afterAll(async () => {
  await host?.shutdown();
  calls?.unsubscribe();
});

const post = (body: object) =>
  fetch(`${ingress}/shout`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** Publishes into a filler stream until the store refuses: every byte of max_file_store is taken. */
async function fillTheStore(): Promise<number> {
  await nats.jsm.streams.add({ name: "FILLER", subjects: ["filler.>"] });
  const chunk = new Uint8Array(128 * 1024);
  for (let n = 0; ; n++) {
    try {
      await nats.js.publish("filler.x", chunk);
    } catch (error) {
      expect(error).toBeInstanceOf(JetStreamApiError);
      expect((error as JetStreamApiError).code).toBe(10023); // insufficient resources
      return n;
    }
  }
}

async function functionStatus(): Promise<{ brokerHold?: { reason: string; since: string; waiting: number } }> {
  const all = (await (await fetch(`${baseUrl}/functions`)).json()) as {
    name: string;
    brokerHold?: { reason: string; since: string; waiting: number };
  }[];
  return all.find((f) => f.name === "shout")!;
}

const stored = async (stream: string) => (await nats.jsm.streams.info(stream)).state.messages;

it("waits out a full store: every event completes once with its output, none is dead-lettered", { timeout: 150_000 }, async () => {
  const ids = Array.from({ length: EVENTS }, (_, i) => `e${i}`);
  for (const id of ids) expect((await post({ id, ms: 2500 })).status).toBe(202);
  // Events in flight: the first ones run (2.5 s each) when the store fills up.
  await waitFor(() => runs.length >= 4, { message: "the first events running" });
  const chunks = await fillTheStore();
  expect(chunks).toBeGreaterThan(0);

  // Their outputs are refused: the function holds its pulls and says why.
  const hold = await waitFor(async () => (await functionStatus()).brokerHold, {
    message: "the broker's hold in /functions",
    timeout: 15_000,
  });
  expect(hold.reason).toBe("storage-full");
  const ready = await fetch(`${baseUrl}/readyz`);
  expect(ready.status).toBe(200);
  expect(await ready.text()).toMatch(/^ready\nshout: waiting for the broker \(storage-full\) since /);
  const status = await host.status();
  expect(status.functions.find((f) => f.name === "shout")?.brokerHold).toMatchObject({ reason: "storage-full" });
  const refused = await post({ id: "refused" });
  expect(refused.status).toBe(503);
  expect(refused.headers.get("content-type")).toContain("application/problem+json");

  // Full for a minute: nothing dead-lettered, no output stored, the hold still on.
  const outputsBefore = await stored("SHOUTOUT");
  const runsBefore = runs.length;
  const fullUntil = Date.now() + FULL_FOR_MS;
  while (Date.now() < fullUntil) {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(await stored("JETFN_DLQ")).toBe(0);
    expect(await stored("SHOUTOUT")).toBe(outputsBefore);
    expect((await functionStatus()).brokerHold).toMatchObject({ reason: "storage-full" });
  }
  // Nothing new started meanwhile, and nothing ran again.
  expect(runs.length).toBe(runsBefore);
  expect(await scrape(baseUrl, 'jetfn_output_failures_total{function="shout",reason="storage-full"}')).toBeGreaterThan(0);

  // Room again: the waiting outputs land, pulling resumes, the rest run.
  await nats.jsm.streams.purge("FILLER");
  await waitFor(async () => (await stored("SHOUTOUT")) === EVENTS, { message: `${EVENTS} outputs`, timeout: 30_000 });
  expect((await post({ id: "after" })).status).toBe(202);
  await waitFor(async () => (await stored("SHOUTOUT")) === EVENTS + 1, {
    message: "the output of the event posted after",
    timeout: 15_000,
  });

  const outputs: string[] = [];
  for (let seq = 1; seq <= EVENTS + 1; seq++) {
    const message = await nats.jsm.streams.getMessage("SHOUTOUT", { seq });
    outputs.push(message!.json<{ id: string }>().id);
  }
  expect(outputs.sort()).toEqual([...ids, "after"].sort());
  // Each handler ran once: a refused output was kept and sent again, not recomputed.
  expect(runs.map((r) => r.id).sort()).toEqual([...ids, "after"].sort());
  expect(await stored("JETFN_DLQ")).toBe(0);
  for (const reason of ["attempts-exhausted", "non-retryable"]) {
    expect(await scrape(baseUrl, `jetfn_dead_letters_total{function="shout",reason="${reason}"}`)).toBe(0);
  }
  expect((await functionStatus()).brokerHold).toBeUndefined();
  await waitFor(async () => (await nats.jsm.consumers.info("SHOUTIN", "jetfn_shout")).num_ack_pending === 0, {
    message: "every event acked",
  });
  // One line when the hold started, one when it ended: not one per retry.
  expect(logs.lines.filter((l) => l.function === "shout" && String(l.msg).startsWith("the broker refuses"))).toHaveLength(1);
  expect(logs.lines.filter((l) => l.function === "shout" && String(l.msg).startsWith("the broker takes"))).toHaveLength(1);
});

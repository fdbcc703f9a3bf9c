/**
 * A batch function's handler thread ending in the middle of a batch (isolation: worker):
 * the messages the handler settled before it ended stay settled; only the others are
 * delivered again (as a crash, with backoff), and run in a fresh thread.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host | undefined;
let baseUrl = "";

interface BatchRecord {
  rows: { n: number; deliveryCount: number }[];
}

async function rows(): Promise<{ n: number; deliveryCount: number }[]> {
  const info = await nats.jsm.streams.info("REC_CRASH");
  const found: { n: number; deliveryCount: number }[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage("REC_CRASH", { seq });
    if (message) found.push(...message.json<BatchRecord>().rows);
  }
  return found;
}

beforeAll(async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: JOBS_CRASH, subjects: ["crash.>"], storage: memory }
  - { name: REC_CRASH, subjects: ["rec.crash"], storage: memory }
functions:
  - name: crashing
    handler: fns/load.ts
    stream: JOBS_CRASH
    subjects: ["crash.jobs"]
    isolation: worker
    batch: { maxSize: 6, maxWait: 300ms }
    retry: { maxAttempts: 3, initialDelay: 100ms, jitter: false }
    config: { record: rec.crash }
`,
    },
    { fixtures: "batch" },
  );
  const started = await startHost(dir, nats.server.url);
  host = started.host;
  baseUrl = started.baseUrl;
});

afterAll(async () => {
  await host?.shutdown();
});

it("redelivers only the messages not yet settled when the handler's thread ends mid-batch", async () => {
  for (let n = 0; n < 6; n++) await nats.js.publish("crash.jobs", JSON.stringify({ n, crash: n === 3 }));
  await waitFor(async () => (await scrape(baseUrl, `jetfn_acks_total{function="crashing",action="ack"}`)) >= 6, {
    timeout: 15_000,
    message: "all six acked",
  });
  const seen = await rows();
  const deliveries = (n: number) => seen.filter((row) => row.n === n).map((row) => row.deliveryCount);
  // Acked by the handler before its thread ended: never delivered again.
  for (const n of [0, 1, 2]) expect(deliveries(n), `event ${n}`).toEqual([1]);
  // Unsettled when it ended: delivered again, and acked then.
  for (const n of [3, 4, 5]) expect(deliveries(n), `event ${n}`).toEqual([1, 2]);
  expect(await scrape(baseUrl, `jetfn_worker_restarts_total{function="crashing",reason="exit"}`)).toBe(1);
  expect(await scrape(baseUrl, `jetfn_invocations_total{function="crashing",outcome="crashed"}`)).toBe(3);
  expect(await scrape(baseUrl, `jetfn_invocations_total{function="crashing",outcome="success"}`)).toBe(6);
  await waitFor(async () => (await nats.jsm.consumers.info("JOBS_CRASH", "jetfn_crashing")).num_ack_pending === 0);
  expect((await nats.jsm.streams.info("JETFN_DLQ")).state.messages).toBe(0);
});

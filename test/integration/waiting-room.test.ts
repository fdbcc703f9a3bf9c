/**
 * A worker-isolated function holds a few deliveries beyond its concurrency, waiting in its
 * thread for a slot (runtime/isolation/worker-executor.ts, waitingRoom). Run in both
 * isolation modes: however deliveries wait, no more than `concurrency` handlers run at once,
 * and a handler's timeout counts its own run, never the wait before it.
 */
import type { Msg } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import type { Call } from "../fixtures/replay/record.ts";
import { maxOverlap } from "../support/overlap.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

// Each run takes 200 ms of a 300 ms timeout: a delivery that waited for a slot (up to 200 ms)
// and had its wait counted would time out.
const files = {
  "functions.yaml": `
streams:
  - { name: WR, subjects: ["wr.>"], storage: memory }
  - { name: WRCALLS, subjects: ["calls.>"], storage: memory }
functions:
  - { name: slow, handler: record.ts, stream: WR, subjects: [wr.slow], concurrency: 2, timeout: 300ms, config: { sleepMs: 200 } }
`,
};

const nats = useNats();
let host: Host;
const calls: Call[] = [];

beforeAll(async () => {
  nats.nc.subscribe("calls.slow", {
    callback: (_err: Error | null, msg: Msg) => {
      calls.push(msg.json<Call>());
    },
  });
  ({ host } = await startHost(makeProject(files, { fixtures: "replay" }), nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

it("runs at most `concurrency` at once, and times each run from its start, not from its wait", async () => {
  const events = 12;
  for (let id = 1; id <= events; id++) await nats.js.publish("wr.slow", JSON.stringify({ id }));
  await waitFor(() => calls.length === events, { message: "every event ran", timeout: 20_000 });
  expect(calls.map((c) => c.id).sort((a, b) => a - b)).toEqual(Array.from({ length: events }, (_, i) => i + 1));
  expect(maxOverlap(calls)).toBeLessThanOrEqual(2);
  // The handler tells of its run before it returns: the last one's settlement may come a moment later.
  const success = `jetfn_invocations_total{function="slow",outcome="success"} ${events}`;
  await waitFor(async () => (await host.metrics.registry.metrics()).includes(success), { message: "every run settled", timeout: 5000 });
  const text = await host.metrics.registry.metrics();
  expect(text).toContain('jetfn_invocations_total{function="slow",outcome="timeout"} 0');
  expect(text).toContain(`jetfn_messages_received_total{function="slow"} ${events}`);
});

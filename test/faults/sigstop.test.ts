/**
 * Bad-day scenario 6 (issue 22), unordered functions (an ordered one's SIGSTOPped owner is
 * in test/ordering/ordering.test.ts): one of two `jetfn start` replicas is SIGSTOPped with
 * runs in flight, for longer than the function's timeout and ack wait (8 s here, 30 s with
 * `npm run test:long`), then SIGCONTed. The other replica runs what the stopped one held
 * once the server delivers it again. What the stopped replica finishes late is not acked as
 * if it had run on time: across both replicas, successes settled equal the events, once
 * each (the stopped one's late runs end as timeouts, or as expired deliveries it settles
 * nothing of). Nothing is lost.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { killCliHosts, startCliHost } from "../support/cli.ts";
import { judge, type Published, readHistory } from "../support/history.ts";
import { makeProject, scrape, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const STOPPED_MS = Number(process.env.JETFN_TEST_STOP_MS) || 8000;
const EVENTS = 40;

const nats = useNats();
afterEach(killCliHosts);

it("a replica SIGSTOPped past its timeout and ack wait with runs in flight: its late runs are not acked as on time, nothing lost", async () => {
  const history = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-history-")), "history.jsonl");
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: STOP, subjects: ["stop.in"] }
functions:
  - name: work
    handler: fns/record.ts
    stream: STOP
    subjects: ["stop.in"]
    concurrency: 4
    timeout: 3s
    ackWait: 2s
    retry: { maxAttempts: 10, initialDelay: 100ms }
    config: { history: ${JSON.stringify(history)} }
`,
    },
    { fixtures: "bad-day" },
  );
  const config = path.join(dir, "functions.yaml");
  const env = { LOG_LEVEL: "warn" };
  const a = await startCliHost(config, nats.server.url, env);
  const b = await startCliHost(config, nats.server.url, env);
  const published: Published[] = [];
  for (let i = 0; i < EVENTS; i++) {
    await nats.js.publish("stop.in", JSON.stringify({ id: `e${i}`, ms: 1500 }));
    published.push({ id: `e${i}` });
  }
  const pidA = String(a.cli.child.pid);
  // Stop A while it runs events.
  const inFlight = () => {
    const lines = readHistory(history).filter((line) => line.replica === pidA);
    const ended = new Set(lines.filter((line) => line.kind === "end").map((line) => line.run));
    return lines.filter((line) => line.kind === "start" && !ended.has(line.run)).length;
  };
  await waitFor(() => inFlight() > 0, { timeout: 10_000, interval: 10, message: "A runs events" });
  a.cli.child.kill("SIGSTOP");
  const heldByA = inFlight();
  await new Promise((resolve) => setTimeout(resolve, STOPPED_MS));
  a.cli.child.kill("SIGCONT");

  await waitFor(() => judge(readHistory(history), published).lost.length === 0, {
    timeout: 60_000,
    interval: 250,
    message: "every event ran",
  });
  // Both replicas settled everything: nothing pending, nothing un-acked.
  await waitFor(
    async () => {
      const info = await nats.jsm.consumers.info("STOP", "jetfn_work");
      return info.num_pending === 0 && info.num_ack_pending === 0;
    },
    { timeout: 30_000, interval: 250, message: "the consumer drained" },
  );
  const successes =
    (await scrape(a.base, `jetfn_invocations_total{function="work",outcome="success"}`)) +
    (await scrape(b.base, `jetfn_invocations_total{function="work",outcome="success"}`));
  const timeoutsOnA = await scrape(a.base, `jetfn_invocations_total{function="work",outcome="timeout"}`);
  const verdict = judge(readHistory(history), published);
  console.log(
    "SIGSTOP:",
    JSON.stringify({
      stoppedMs: STOPPED_MS,
      heldByA,
      published: EVENTS,
      lost: verdict.lost.length,
      handlerRuns: verdict.succeeded,
      successesSettled: successes,
      timeoutsOnA,
    }),
  );
  expect(verdict.lost).toEqual([]);
  expect(heldByA).toBeGreaterThan(0);
  // Each event settled as a success once: A's late finishes were not acked as on time.
  expect(successes).toBe(EVENTS);
}, 120_000);

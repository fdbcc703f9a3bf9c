/**
 * A fleet-wide rate limit (`rateLimit: { limit: 50, period: 1s }`) on 3 `jetfn start`
 * processes, 1,000 events waiting: the fleet runs 45 to 55 a second over every 5-second
 * window, also after one replica is SIGKILLed mid-way (what it had pulled comes back after
 * a 7 s ack wait, within the run); nothing waits in ack pending. Each
 * run records when it started; the windows are read from those times.
 */
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { killCliHosts, startCliHost } from "../support/cli.ts";
import { makeProject, scrape, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
afterEach(killCliHosts);

const EVENTS = 1000;

async function runTimes(stream: string): Promise<number[]> {
  const info = await nats.jsm.streams.info(stream);
  const times: number[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage(stream, { seq });
    if (message) times.push(message.json<{ at: number }>().at);
  }
  return times.sort((a, b) => a - b);
}

it("3 replicas share limit 50/s: 45 to 55 runs a second over every 5 s, across a SIGKILL, nothing in ack pending", async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: JOBS, subjects: ["jobs.>"], storage: memory }
  - { name: REC_RL, subjects: ["rec.rl"], storage: memory }
functions:
  - name: call-api
    handler: fns/record.ts
    stream: JOBS
    subjects: ["jobs.api"]
    concurrency: 20
    # What the killed replica had pulled comes back after the ack wait (timeout + 5 s), while the others still run.
    timeout: 2s
    rateLimit: { limit: 50, period: 1s }
    config: { record: rec.rl }
`,
    },
    { fixtures: "rate-limit" },
  );
  const config = path.join(dir, "functions.yaml");
  const env = { LOG_LEVEL: "warn" };
  const hosts = [
    await startCliHost(config, nats.server.url, env),
    await startCliHost(config, nats.server.url, env),
    await startCliHost(config, nats.server.url, env),
  ];
  for (let n = 0; n < EVENTS; n += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, i) => nats.js.publish("jobs.api", JSON.stringify({ n: n + i }))));
  }
  let maxAckPending = 0;
  const watch = setInterval(() => {
    nats.jsm.consumers
      .info("JOBS", "jetfn_call_api")
      .then((info) => (maxAckPending = Math.max(maxAckPending, info.num_ack_pending)))
      .catch(() => {});
  }, 200);
  try {
    await waitFor(async () => (await runTimes("REC_RL")).length >= 400, { timeout: 20_000, interval: 250 });
    hosts[2]!.cli.child.kill("SIGKILL");
    await waitFor(async () => (await runTimes("REC_RL")).length >= EVENTS, { timeout: 30_000, interval: 250, message: "every event ran" });
  } finally {
    clearInterval(watch);
  }

  const times = await runTimes("REC_RL");
  const first = times[0]!;
  const last = times.at(-1)!;
  // 1,000 at 50 a second: about 20 s (less a burst of 5).
  expect((last - first) / 1000).toBeGreaterThan(18);
  const counts: number[] = [];
  for (let start = first; start + 5000 <= last; start += 250) counts.push(times.filter((t) => t >= start && t < start + 5000).length);
  const perSecond = Array.from(
    { length: Math.ceil((last - first) / 1000) },
    (_, i) => times.filter((t) => t >= first + i * 1000 && t < first + (i + 1) * 1000).length,
  );
  const shown = `runs per 5 s window: min ${Math.min(...counts)}, max ${Math.max(...counts)}; per second: ${perSecond.join(" ")}`;
  expect(Math.min(...counts), shown).toBeGreaterThanOrEqual(225);
  expect(Math.max(...counts), shown).toBeLessThanOrEqual(275);
  // What waits for a permit waits in the stream: at most what the fleet's pulls were granted.
  expect(maxAckPending).toBeLessThanOrEqual(3 * 4 * 5);
  // Every replica took part, and each says it was held back.
  const survivors = hosts.slice(0, 2);
  for (const { base } of survivors) {
    expect(await scrape(base, `jetfn_rate_limited_seconds_total{function="call-api"}`)).toBeGreaterThan(0);
  }
  const functions = (await (await fetch(`${survivors[0]!.base}/functions`)).json()) as { rateLimit?: Record<string, unknown> }[];
  expect(functions[0]!.rateLimit).toMatchObject({ limit: 50, periodMs: 1000, burst: 5 });
});

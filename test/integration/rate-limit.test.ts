/**
 * Rate limits on a real nats-server (the fleet-wide one across 3 processes is in
 * test/e2e/rate-limit.test.ts): per key (`rateLimit: { key }`), two customers flooding at
 * once each run at their own limit (10 a second), 20 a second together, and a third
 * customer's few events behind them are not starved; a RetryAfterError holds the whole
 * function off for its delay.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
const hosts: Host[] = [];
afterEach(async () => {
  for (const host of hosts.splice(0)) await host.shutdown();
});

interface Run {
  n: number;
  customer: string;
  at: number;
}

async function runs(): Promise<Run[]> {
  const info = await nats.jsm.streams.info("REC_RK");
  const found: Run[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage("REC_RK", { seq });
    if (message) found.push(message.json<Run>());
  }
  return found.sort((a, b) => a.at - b.at);
}

/** The most runs in any `ms`-long window. */
function busiest(times: readonly number[], ms: number): number {
  let most = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[i]! - times[j]! >= ms) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

describe("rate limit", () => {
  it("runs each key at its own limit: two flooding customers 10 a second each, a third not starved behind them", async () => {
    const dir = makeProject(
      {
        "functions.yaml": `
streams:
  - { name: JOBS_RK, subjects: ["rk.>"], storage: memory }
  - { name: REC_RK, subjects: ["rec.rk"], storage: memory }
functions:
  - name: per-customer
    handler: fns/record.ts
    stream: JOBS_RK
    subjects: ["rk.jobs"]
    concurrency: 8
    rateLimit: { limit: 10, period: 1s, burst: 1, key: customer }
    config: { record: rec.rk }
`,
      },
      { fixtures: "rate-limit" },
    );
    const started = await startHost(dir, nats.server.url);
    hosts.push(started.host);
    for (let n = 0; n < 60; n++) {
      await nats.js.publish("rk.jobs", JSON.stringify({ n, customer: "a" }));
      await nats.js.publish("rk.jobs", JSON.stringify({ n, customer: "b" }));
    }
    const quietPublishedAt = Date.now();
    for (let n = 0; n < 3; n++) await nats.js.publish("rk.jobs", JSON.stringify({ n, customer: "c" }));

    await waitFor(async () => (await runs()).length >= 123, { timeout: 30_000, interval: 250, message: "every event ran" });
    const all = await runs();
    const of = (customer: string) => all.filter((run) => run.customer === customer).map((run) => run.at);
    for (const customer of ["a", "b"]) {
      const times = of(customer);
      expect(times).toHaveLength(60);
      // 60 at 10 a second: about 6 s, and never more than 10 (plus the burst of 1) in a second.
      expect(times.at(-1)! - times[0]!).toBeGreaterThan(5000);
      expect(busiest(times, 1000), customer).toBeLessThanOrEqual(11);
    }
    // Both at once: about 20 a second together.
    const both = [...of("a"), ...of("b")].sort((x, y) => x - y);
    expect(busiest(both, 1000)).toBeGreaterThanOrEqual(16);
    expect(busiest(both, 1000)).toBeLessThanOrEqual(22);
    // The third customer's events, published behind 120 others, ran long before those drained.
    const c = of("c");
    expect(c).toHaveLength(3);
    expect(c.at(-1)! - quietPublishedAt).toBeLessThan(4000);
    expect(Math.max(...of("a"), ...of("b")) - quietPublishedAt).toBeGreaterThan(4500);
    // Nothing spent an attempt waiting, and the host says it was held back.
    const counts = new Map<string, number>();
    for (const run of all) counts.set(`${run.customer}:${run.n}`, (counts.get(`${run.customer}:${run.n}`) ?? 0) + 1);
    expect([...counts.values()].every((count) => count === 1)).toBe(true);
    expect(await scrape(started.baseUrl, `jetfn_rate_limited_seconds_total{function="per-customer"}`)).toBeGreaterThan(0);
    expect((await nats.jsm.streams.info("JETFN_DLQ")).state.messages).toBe(0);
  });

  it("a RetryAfterError holds the whole function off for its delay, on every event", async () => {
    const dir = makeProject(
      {
        "functions.yaml": `
streams:
  - { name: JOBS_RA, subjects: ["ra.>"], storage: memory }
  - { name: REC_RK, subjects: ["rec.rk"], storage: memory }
functions:
  - name: slowed
    handler: fns/record.ts
    stream: JOBS_RA
    subjects: ["ra.jobs"]
    rateLimit: { limit: 100, period: 1s }
    config: { record: rec.rk }
`,
      },
      { fixtures: "rate-limit" },
    );
    await nats.jsm.streams.purge("REC_RK").catch(() => {});
    const started = await startHost(dir, nats.server.url);
    hosts.push(started.host);
    const refusedFrom = Date.now();
    await nats.js.publish("ra.jobs", JSON.stringify({ n: 0, customer: "first", retryAfterMs: 3000 }));
    await waitFor(async () => (await scrape(started.baseUrl, `jetfn_invocations_total{function="slowed",outcome="error"}`)) >= 1, {
      timeout: 10_000,
      interval: 50,
    });
    const publishedAt = Date.now();
    for (let n = 1; n <= 10; n++) await nats.js.publish("ra.jobs", JSON.stringify({ n, customer: "later" }));
    await waitFor(async () => (await runs()).length >= 11, { timeout: 15_000, interval: 100, message: "all ran" });
    const all = await runs();
    // Nothing ran while the API said to wait: the retried event, and every event after it.
    for (const run of all) expect(run.at - refusedFrom, `${run.customer} ${run.n}`).toBeGreaterThanOrEqual(2900);
    expect(Math.min(...all.filter((run) => run.customer === "later").map((run) => run.at)) - publishedAt).toBeGreaterThan(1000);
  });
});

/**
 * A batch function with a rate limit on a real nats-server: each event takes one permit
 * before it joins a batch. For the whole function, no more events run per second than the
 * limit allows; per key, each key runs at its own limit, and an event handed back while its
 * key waits spends no attempt.
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

interface Ran {
  n: number;
  deliveryCount: number;
  at: number;
}

/** Each event the function ran, with when its batch ran. */
async function ran(stream: string): Promise<{ rows: Ran[]; sizes: number[] }> {
  const info = await nats.jsm.streams.info(stream);
  const rows: Ran[] = [];
  const sizes: number[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage(stream, { seq });
    if (!message) continue;
    const batch = message.json<{ rows: { n: number; deliveryCount: number }[]; at: number }>();
    sizes.push(batch.rows.length);
    for (const row of batch.rows) rows.push({ ...row, at: batch.at });
  }
  return { rows, sizes };
}

/** The most events run in any `ms`-long window. */
function busiest(times: readonly number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= ms) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

function yaml(name: string, rateLimit: string, maxAttempts = 1): string {
  return `
streams:
  - { name: JOBS_${name}, subjects: ["${name.toLowerCase()}.>"], storage: memory }
  - { name: REC_${name}, subjects: ["rec${name.toLowerCase()}"], storage: memory }
functions:
  - name: limited
    handler: fns/load.ts
    stream: JOBS_${name}
    subjects: ["${name.toLowerCase()}.jobs"]
    batch: { maxSize: 10, maxWait: 200ms }
    rateLimit: ${rateLimit}
    retry: { maxAttempts: ${maxAttempts} }
    config: { record: rec${name.toLowerCase()} }
`;
}

describe("batch functions with a rate limit", () => {
  it("runs at most the limit's events a second, a permit per event, in batches", async () => {
    const dir = makeProject({ "functions.yaml": yaml("BRL", "{ limit: 20, period: 1s, burst: 5 }") }, { fixtures: "batch" });
    const started = await startHost(dir, nats.server.url);
    hosts.push(started.host);
    for (let n = 0; n < 60; n++) await nats.js.publish("brl.jobs", JSON.stringify({ n }));
    await waitFor(async () => (await scrape(started.baseUrl, `jetfn_acks_total{function="limited",action="ack"}`)) >= 60, {
      timeout: 20_000,
      interval: 200,
      message: "all 60 acked",
    });
    const { rows, sizes } = await ran("REC_BRL");
    expect(rows.map((row) => row.n).sort((a, b) => a - b)).toEqual([...Array(60).keys()]);
    const times = rows.map((row) => row.at);
    // 60 events at 20 a second (and a burst of 5): nearly 3 s. A batch runs up to maxWait
    // (200 ms) after its first event took its permit, so a second of batch runs holds at
    // most the permits of 1.2 s: 20 × 1.2 + 5.
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThan(2000);
    expect(busiest(times, 1000)).toBeLessThanOrEqual(29);
    // Still batches: more than one event each, on the whole.
    expect(sizes.length).toBeLessThan(60);
    expect(Math.max(...sizes)).toBeGreaterThan(1);
    expect(await scrape(started.baseUrl, `jetfn_rate_limited_seconds_total{function="limited"}`)).toBeGreaterThan(0);
  });

  it("runs each key at its own limit, and an event handed back while its key waits spends no attempt", async () => {
    const dir = makeProject({ "functions.yaml": yaml("BRK", "{ limit: 10, period: 1s, burst: 1, key: customer }") }, { fixtures: "batch" });
    const started = await startHost(dir, nats.server.url);
    hosts.push(started.host);
    for (let n = 0; n < 30; n++) {
      await nats.js.publish("brk.jobs", JSON.stringify({ n, customer: "a" }));
      await nats.js.publish("brk.jobs", JSON.stringify({ n: 100 + n, customer: "b" }));
    }
    await waitFor(async () => (await scrape(started.baseUrl, `jetfn_acks_total{function="limited",action="ack"}`)) >= 60, {
      timeout: 20_000,
      interval: 200,
      message: "all 60 acked",
    });
    const { rows } = await ran("REC_BRK");
    for (const [customer, from] of [
      ["a", 0],
      ["b", 100],
    ] as const) {
      const own = rows.filter((row) => row.n >= from && row.n < from + 100);
      expect(
        own.map((row) => row.n).sort((x, y) => x - y),
        customer,
      ).toEqual([...Array(30).keys()].map((k) => from + k));
      const times = own.map((row) => row.at);
      expect(Math.max(...times) - Math.min(...times), customer).toBeGreaterThan(2000);
      // 10 × 1.2 + 1 (see above).
      expect(busiest(times, 1000), customer).toBeLessThanOrEqual(13);
    }
    // Handed back many times while their key waited, yet with maxAttempts 1 none was dead-lettered.
    expect(await scrape(started.baseUrl, `jetfn_acks_total{function="limited",action="nak"}`)).toBeGreaterThan(0);
    expect((await nats.jsm.streams.info("JETFN_DLQ")).state.messages).toBe(0);
  });

  it("a RetryAfterError thrown for a batch holds the whole function off for its delay", async () => {
    const dir = makeProject({ "functions.yaml": yaml("BRA", "{ limit: 100, period: 1s }", 3) }, { fixtures: "batch" });
    const started = await startHost(dir, nats.server.url);
    hosts.push(started.host);
    const refusedFrom = Date.now();
    await nats.js.publish("bra.jobs", JSON.stringify({ n: 0, retryAfterMs: 2500 }));
    await waitFor(async () => (await scrape(started.baseUrl, `jetfn_invocations_total{function="limited",outcome="error"}`)) >= 1, {
      timeout: 10_000,
      interval: 50,
    });
    for (let n = 1; n <= 10; n++) await nats.js.publish("bra.jobs", JSON.stringify({ n }));
    await waitFor(async () => (await scrape(started.baseUrl, `jetfn_acks_total{function="limited",action="ack"}`)) >= 11, {
      timeout: 15_000,
      interval: 100,
      message: "all ran",
    });
    const { rows } = await ran("REC_BRA");
    const later = rows.filter((row) => (row.deliveryCount === 1 && row.n > 0) || (row.n === 0 && row.deliveryCount === 2));
    expect(later.map((row) => row.n).sort((a, b) => a - b)).toEqual([...Array(11).keys()]);
    // Nothing ran while the API said to wait: the retried event, and every event after it.
    for (const row of later) expect(row.at - refusedFrom, `event ${row.n}`).toBeGreaterThanOrEqual(2400);
  });
});

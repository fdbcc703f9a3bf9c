/**
 * Debounced functions (`debounce:`) on a real nats-server: a burst of events for one key
 * runs the handler once, with the last, across two hosts; a key that never goes quiet runs
 * once `maxWait` has passed; a failed run is retried with its event. The handler records
 * each run on a subject the test reads.
 */
import { headers as natsHeaders } from "@nats-io/transport-node";
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
  key: string;
  n: number;
  subject: string;
  attempt: number;
  tenant: string | null;
  at: number;
}

function project(name: string, debounce: string, extra = ""): string {
  const lower = name.toLowerCase();
  return makeProject(
    {
      "functions.yaml": `
streams:
  - { name: EV_${name}, subjects: ["upd.${lower}.>"], storage: memory }
  - { name: REC_${name}, subjects: ["rec.${lower}"], storage: memory }
functions:
  - name: latest-${lower}
    handler: fns/record.ts
    stream: EV_${name}
    subjects: ["upd.${lower}.>"]
    debounce: ${debounce}
    config: { record: rec.${lower} }
${extra}`,
    },
    { fixtures: "debounce" },
  );
}

async function runs(name: string): Promise<Run[]> {
  const info = await nats.jsm.streams.info(`REC_${name}`);
  const found: Run[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage(`REC_${name}`, { seq });
    if (message) found.push(message.json<Run>());
  }
  return found;
}

async function start(dir: string): Promise<string> {
  const started = await startHost(dir, nats.server.url);
  hosts.push(started.host);
  return started.baseUrl;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("debounce", () => {
  it("a burst of 100 events for one key runs once, with the last, on two hosts; each key on its own", async () => {
    const dir = project("DA", "{ key: key, period: 2s }");
    const urls = [await start(dir), await start(dir)];
    const h = natsHeaders();
    h.set("tenant", "t-1");
    await Promise.all(
      Array.from({ length: 100 }, (_, n) => nats.js.publish(`upd.da.${n % 3}`, JSON.stringify({ key: "a", n }), { headers: h })),
    );
    for (let n = 0; n < 10; n++) await nats.js.publish("upd.da.b", JSON.stringify({ key: "b", n }));

    await waitFor(async () => (await runs("DA")).length >= 2, { timeout: 10_000, interval: 200, message: "both keys ran" });
    await sleep(3000); // a period and more: no other run comes
    const all = await runs("DA");
    const a = all.filter((run) => run.key === "a");
    const b = all.filter((run) => run.key === "b");
    expect(b).toEqual([expect.objectContaining({ n: 9, subject: "upd.da.b", attempt: 1, tenant: null })]);
    expect(a).toHaveLength(1);
    // The last of key a as the stream holds it (the publishes raced each other), with its subject and header.
    const newestA = await lastOf("EV_DA", "a");
    expect(a[0]).toMatchObject({ n: newestA.n, subject: newestA.subject, attempt: 1, tenant: "t-1" });

    let debounced = 0;
    for (const url of urls) debounced += await scrape(url, `jetfn_debounced_total{function="latest-da"}`);
    expect(debounced).toBe(99 + 9);
    // Nothing waits in the function's consumer: the events were acked as they were taken.
    const info = await nats.jsm.consumers.info("EV_DA", "jetfn_latest_da");
    expect(info.num_ack_pending + info.num_pending).toBe(0);
    // The fires are gone from their work queue once run or found stale.
    await waitFor(async () => (await nats.jsm.streams.info("JETFN_DEBOUNCE")).state.messages === 0, { timeout: 5000, interval: 200 });
  });

  it("a key that never goes quiet runs once maxWait has passed; a failed run is retried with its event", async () => {
    const dir = project("DB", "{ key: key, period: 2s, maxWait: 3s }", "    retry: { initialDelay: 100ms, maxDelay: 100ms }");
    const url = await start(dir);
    const started = Date.now();
    let lastSentAt = 0;
    for (let n = 0; n < 24; n++) {
      await nats.js.publish("upd.db.c", JSON.stringify({ key: "c", n, failFirst: true }));
      lastSentAt = Date.now();
      await sleep(250);
    }
    await waitFor(async () => (await runs("DB")).some((run) => run.n === 23), { timeout: 10_000, interval: 200, message: "the last ran" });
    const all = await runs("DB");
    // Events every 250 ms for 6 s never leave 2 s quiet: maxWait (3 s after a window's first) ran them meanwhile.
    expect(all[0]!.at).toBeLessThan(lastSentAt);
    expect(all[0]!.at - started).toBeLessThan(3000 + 2500);
    expect(all.length).toBeGreaterThanOrEqual(2);
    expect(all.length).toBeLessThanOrEqual(4);
    // Each run failed once, and its retry ran the same event.
    for (const run of all) expect(run.attempt).toBe(2);
    const ns = all.map((run) => run.n);
    expect([...ns].sort((x, y) => x - y)).toEqual(ns);
    expect(ns.at(-1)).toBe(23);
    expect(await scrape(url, `jetfn_debounced_total{function="latest-db"}`)).toBe(24 - all.length);
  });
});

/** The newest event of `key` in `stream`: its `n` and subject. */
async function lastOf(stream: string, key: string): Promise<{ n: number; subject: string }> {
  const info = await nats.jsm.streams.info(stream);
  for (let seq = info.state.last_seq; seq >= info.state.first_seq; seq--) {
    const message = await nats.jsm.streams.getMessage(stream, { seq });
    const data = message?.json<{ key: string; n: number }>();
    if (message && data?.key === key) return { n: data.n, subject: message.subject };
  }
  throw new Error(`no event of key ${key} in ${stream}`);
}

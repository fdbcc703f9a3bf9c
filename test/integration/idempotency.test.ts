/**
 * Idempotency by business key (`idempotency: { key, ttl }`) against a real nats-server and
 * in-process hosts, in both isolation modes (see vitest.config.ts). Runs are counted in an
 * effect log the handler appends to, never by jetfn's own metrics.
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host;
let other: Host;
let baseUrl: string;
let otherUrl: string;
let effects: string;

const STREAMS = `
streams:
  - { name: IDEM, subjects: ["idem.>"], storage: memory }
  # A short duplicate window: an output published again 300 ms later is stored again, and can be seen.
  - { name: IDEM_OUT, subjects: ["paid.>"], storage: memory, duplicateWindow: 100ms }
`;

beforeAll(async () => {
  effects = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-idempotency-")), "effects.log");
  const defaults = (hostName: string) => `
defaults:
  timeout: 5s
  retry: { maxAttempts: 3, initialDelay: 100ms, maxDelay: 500ms, jitter: false }
  config: { effects: ${JSON.stringify(effects)}, host: ${hostName} }
`;
  const yaml = `${defaults("a")}${STREAMS}
functions:
  - { name: pay, handler: fns/pay.ts, stream: IDEM, subjects: [idem.pay], output: paid.pay, idempotency: { key: order } }
  - { name: brief, handler: fns/pay.ts, stream: IDEM, subjects: [idem.brief], idempotency: { key: "header:Order-Id", ttl: 1s } }
  - name: shared
    handler: fns/pay.ts
    stream: IDEM
    subjects: [idem.shared]
    idempotency: { key: order }
    config: { effects: ${JSON.stringify(effects)}, host: a, runMs: 500 }
`;
  // A second host whose consumer of the same function gets every event too: each event is
  // delivered on both hosts at once.
  const otherYaml = `${defaults("b")}${STREAMS}
functions:
  - name: shared
    handler: fns/pay.ts
    stream: IDEM
    subjects: [idem.shared]
    durable: shared_b
    idempotency: { key: order }
    config: { effects: ${JSON.stringify(effects)}, host: b, runMs: 500 }
`;
  ({ host, baseUrl } = await startHost(makeProject({ "functions.yaml": yaml }, { fixtures: "idempotency" }), nats.server.url));
  ({ host: other, baseUrl: otherUrl } = await startHost(
    makeProject({ "functions.yaml": otherYaml }, { fixtures: "idempotency" }),
    nats.server.url,
  ));
});

afterAll(async () => {
  await Promise.all([host?.shutdown(), other?.shutdown()]);
});

/** The runs of one function, as the effect log has them: `<order> <n> <host>`. */
function runsOf(fn: string): string[] {
  if (!existsSync(effects)) return [];
  return readFileSync(effects, "utf8")
    .split("\n")
    .filter((line) => line.startsWith(`${fn} pay `))
    .map((line) => line.slice(`${fn} pay `.length));
}

async function drained(durable: string, seq: number): Promise<void> {
  await waitFor(
    async () => {
      const info = await nats.jsm.consumers.info("IDEM", durable);
      return info.num_pending === 0 && info.num_ack_pending === 0 && info.delivered.stream_seq >= seq;
    },
    { message: `${durable} acked everything up to ${seq}` },
  );
}

async function outputsOf(order: string) {
  const info = await nats.jsm.streams.info("IDEM_OUT");
  const found = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage("IDEM_OUT", { seq }).catch(() => null);
    if (message && message.json<{ paid: string }>().paid === order) found.push(message);
  }
  return found;
}

describe("idempotency by business key", () => {
  it("a second event with the same key is acked without running, and the first run's output is its output", async () => {
    const first = await nats.js.publish("idem.pay", JSON.stringify({ order: "o-1", n: 1 }));
    await drained("jetfn_pay", first.seq);
    await new Promise((resolve) => setTimeout(resolve, 300)); // past IDEM_OUT's duplicate window
    // Another message (its own sequence and Nats-Msg-Id), the same business key.
    const second = await nats.js.publish("idem.pay", JSON.stringify({ order: "o-1", n: 2 }), { msgID: "retry-of-o-1" });
    await drained("jetfn_pay", second.seq);
    expect(runsOf("pay")).toEqual(["o-1 1 a"]);
    await waitFor(async () => (await scrape(baseUrl, 'jetfn_invocations_total{function="pay",outcome="duplicate"}')) === 1);
    expect(await scrape(baseUrl, 'jetfn_invocations_total{function="pay",outcome="success"}')).toBe(1);
    // Published again under the first run's id: the same body, the same Nats-Msg-Id.
    const outputs = await outputsOf("o-1");
    expect(outputs.map((message) => message.json())).toEqual([
      { paid: "o-1", n: 1 },
      { paid: "o-1", n: 1 },
    ]);
    expect(outputs.map((message) => message.header.get("Nats-Msg-Id"))).toEqual([`pay:IDEM:${first.seq}`, `pay:IDEM:${first.seq}`]);
  });

  it("different keys both run, and events without a key each run", async () => {
    await nats.js.publish("idem.pay", JSON.stringify({ order: "o-2", n: 1 }));
    await nats.js.publish("idem.pay", JSON.stringify({ order: "o-3", n: 1 }));
    await nats.js.publish("idem.pay", JSON.stringify({ n: 10 }));
    const last = await nats.js.publish("idem.pay", JSON.stringify({ n: 11 }));
    await drained("jetfn_pay", last.seq);
    // Concurrently: in any order.
    expect(runsOf("pay").slice(1).sort()).toEqual(["o-2 1 a", "o-3 1 a", "undefined 10 a", "undefined 11 a"]);
  });

  it("a run that fails gives its key back: its retry runs, and only then are later events duplicates", async () => {
    const first = await nats.js.publish("idem.pay", JSON.stringify({ order: "o-4", n: 1, fail: true }));
    await drained("jetfn_pay", first.seq);
    const second = await nats.js.publish("idem.pay", JSON.stringify({ order: "o-4", n: 2 }));
    await drained("jetfn_pay", second.seq);
    // The first attempt ran and failed, its retry ran and succeeded; the later event did not run.
    expect(runsOf("pay").filter((run) => run.startsWith("o-4 "))).toEqual(["o-4 1 a", "o-4 1 a"]);
    expect((await outputsOf("o-4")).map((message) => message.json())).toContainEqual({ paid: "o-4", n: 1 });
  });

  it("a header key: the same key after its ttl runs again", async () => {
    const keyed = (order: string) => {
      const h = natsHeaders();
      h.set("Order-Id", order);
      return { headers: h };
    };
    const first = await nats.js.publish("idem.brief", JSON.stringify({ order: "h-1", n: 1 }), keyed("h-1"));
    await drained("jetfn_brief", first.seq);
    const again = await nats.js.publish("idem.brief", JSON.stringify({ order: "h-1", n: 2 }), keyed("h-1"));
    await drained("jetfn_brief", again.seq);
    expect(runsOf("brief")).toEqual(["h-1 1 a"]);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // the ttl is 1s
    const later = await nats.js.publish("idem.brief", JSON.stringify({ order: "h-1", n: 3 }), keyed("h-1"));
    await drained("jetfn_brief", later.seq);
    expect(runsOf("brief")).toEqual(["h-1 1 a", "h-1 3 a"]);
  });

  it("two events with one key at once, each delivered on two hosts: one run", async () => {
    // Four deliveries of one key at once (two events, each on both hosts' consumers); each run takes 500 ms.
    await nats.js.publish("idem.shared", JSON.stringify({ order: "s-1", n: 1 }));
    const last = await nats.js.publish("idem.shared", JSON.stringify({ order: "s-1", n: 2 }));
    await drained("jetfn_shared", last.seq);
    await drained("shared_b", last.seq);
    expect(runsOf("shared")).toHaveLength(1);
    const duplicates = async () =>
      (await scrape(baseUrl, 'jetfn_invocations_total{function="shared",outcome="duplicate"}')) +
      (await scrape(otherUrl, 'jetfn_invocations_total{function="shared",outcome="duplicate"}'));
    await waitFor(async () => (await duplicates()) === 3, { message: "three deliveries acked as duplicates" });
  });
});

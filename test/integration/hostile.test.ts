/**
 * Hostile input and slow handlers: nothing crashes, nothing is lost, dead letters carry
 * the original bytes, and heartbeats keep a long invocation from being redelivered.
 */
import { headers, type Msg, type Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import type { Seen } from "../fixtures/hostile/echo.ts";
import { MAX_PAYLOAD } from "../fixtures/hostile/limits.ts";
import { makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

/** What echo.ts saw, as it published it to calls.echo. */
const seen: Seen[] = [];

/** The handlers are in test/fixtures/hostile/. */
const files = {
  "functions.yaml": `
streams:
  - { name: HX, subjects: ["hx.>"], storage: memory }
  - { name: HXOUT, subjects: ["hxout.>"], storage: memory }
  - { name: HXCALLS, subjects: ["calls.>"], storage: memory }
defaults:
  retry: { maxAttempts: 1 }
functions:
  - { name: strict, handler: strict.ts, stream: HX, subjects: [hx.strict] }
  - { name: echo, handler: echo.ts, stream: HX, subjects: [hx.echo] }
  - { name: big, handler: big.ts, stream: HX, subjects: [hx.big], encoding: binary, output: hxout.big }
  - { name: huge, handler: huge.ts, stream: HX, subjects: [hx.huge], output: hxout.huge }
  - { name: nothing, handler: nothing.ts, stream: HX, subjects: [hx.nothing] }
  - { name: slow, handler: slow.ts, stream: HX, subjects: [hx.slow], ackWait: 1s, timeout: 10s, retry: { maxAttempts: 5 } }
`,
};

let host: Host;
let baseUrl: string;
let calls: Subscription;

const nats = useNats({ configText: `max_payload: ${MAX_PAYLOAD}\n` });

beforeAll(async () => {
  calls = nats.nc.subscribe("calls.echo", {
    callback: (_err: Error | null, msg: Msg) => {
      seen.push(msg.json<Seen>());
    },
  });
  ({ host, baseUrl } = await startHost(makeProject(files, { fixtures: "hostile" }), nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
  calls?.unsubscribe();
});

async function deadLetter(fn: string, seq: number) {
  return waitFor(
    async () => {
      const msg = await nats.jsm.streams.getMessage("JETFN_DLQ", { last_by_subj: `jetfn.dlq.${fn}` });
      return msg && msg.header.get("Jetfn-Stream-Seq") === String(seq) ? msg : null;
    },
    { message: `dead letter of ${fn} seq ${seq}` },
  );
}

const metric = (series: string) => scrape(baseUrl, series);

describe("hostile input", () => {
  it("dead-letters 10,000-deep JSON that fails its schema, byte for byte", async () => {
    const deep = `{"a":${"[".repeat(10_000)}${"]".repeat(10_000)}}`;
    const { seq } = await nats.js.publish("hx.strict", deep);
    const dead = await deadLetter("strict", seq);
    expect(new TextDecoder().decode(dead.data)).toBe(deep);
    expect(dead.header.get("Jetfn-Reason")).toBe("invalid");
  });

  it("dead-letters invalid UTF-8 under json encoding as the bytes received", async () => {
    const bytes = Uint8Array.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]);
    const { seq } = await nats.js.publish("hx.echo", bytes);
    const dead = await deadLetter("echo", seq);
    expect([...dead.data]).toEqual([...bytes]);
    expect(dead.header.get("Jetfn-Error")).toBe("payload is not valid UTF-8");
  });

  it("passes __proto__ keys through as data, polluting nothing", async () => {
    const h = headers();
    h.set("__proto__", "header-value");
    await nats.js.publish("hx.echo", '{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted2":"yes"}},"id":1}', {
      headers: h,
    });
    const event = await waitFor(() => seen.find((s) => s.keys.includes("id")));
    expect(event.keys).toEqual(["__proto__", "constructor", "id"]);
    expect(event.headerKeys).toContain("__proto__");
    expect(event.polluted).toBe(false); // where the handler ran (a worker thread, or this process)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted2).toBeUndefined();
  });

  it("handles an 8 MB payload the server allows", async () => {
    const payload = new Uint8Array(8 * 1024 * 1024).fill(7);
    await nats.js.publish("hx.big", payload);
    const out = await waitFor(() => nats.jsm.streams.getMessage("HXOUT", { last_by_subj: "hxout.big" }), { timeout: 20_000 });
    expect(out.json()).toEqual({ size: payload.length });
  });

  it("dead-letters a return value larger than the server's max_payload instead of retrying it forever", async () => {
    const { seq } = await nats.js.publish("hx.huge", "{}");
    const dead = await deadLetter("huge", seq);
    expect(dead.header.get("Jetfn-Error")).toBe(
      `output of ${MAX_PAYLOAD + 1} bytes exceeds the server's max_payload (${MAX_PAYLOAD} bytes, headers included)`,
    );
    expect(dead.header.get("Jetfn-Reason")).toBe("non-retryable");
  });

  it("survives a handler that throws undefined", async () => {
    const { seq } = await nats.js.publish("hx.nothing", "{}");
    const dead = await deadLetter("nothing", seq);
    expect(dead.header.get("Jetfn-Error")).toBe("non-error thrown: undefined");
    expect(host.state).toBe("running");
  });
});

describe("heartbeats", () => {
  it("keeps a handler that runs 3x the ack wait from being redelivered", async () => {
    await nats.js.publish("hx.slow", "{}");
    const out = await waitFor(() => nats.jsm.streams.getMessage("HXOUT", { last_by_subj: "hxout.slow" }), { timeout: 15_000 });
    expect(out.json()).toEqual({ deliveryCount: 1 });
    await waitFor(async () => (await nats.jsm.consumers.info("HX", "jetfn_slow")).num_ack_pending === 0);
    const info = await nats.jsm.consumers.info("HX", "jetfn_slow");
    expect(info.num_redelivered).toBe(0);
    expect(info.delivered.consumer_seq).toBe(1);
    const beats = await metric('jetfn_acks_total{function="slow",action="working"}');
    console.log(`slow handler: 3000 ms with a 1000 ms ack wait: 1 delivery, ${beats} working() heartbeats, 0 redeliveries`);
    expect(beats).toBeGreaterThanOrEqual(4);
  });
});

/**
 * The ingress listener, driven by real HTTP requests against a host on a real nats-server:
 * routes that publish (202, 400, 401, 404, 405, 413, 415, Idempotency-Key), routes that
 * invoke a function (200, 400, 422, 503, 504, 500), metrics, hostile clients, and 503 while
 * NATS is down.
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { createHost, type LogCapture, makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
const TOKEN = "s3cret-token-4711";
let host: Host;
let logs: LogCapture;
let baseUrl: string;
let ingress: string;
let port: number;

beforeAll(async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: ING, subjects: ["ing.>"] }
functions:
  - { name: quote, handler: fns/quote.ts, stream: ING, subjects: [ing.quote], timeout: 1s }
  - { name: count, handler: fns/count.ts, stream: ING, subjects: [ing.count] }
routes:
  - { route: POST /orders, publish: ing.orders.created, schema: "fns/schemas/order.ts#Order", auth: bearer }
  - { route: POST /orders/:id/cancel, publish: "ing.orders.{id}.cancelled" }
  - { route: DELETE /orders/:id/cancel, publish: "ing.orders.{id}.uncancelled" }
  - { route: POST /quote/:id, invoke: quote }
  - { route: PUT /notes, publish: ing.notes, encoding: text }
`,
    },
    { fixtures: "ingress" },
  );
  ({ host, logs, baseUrl } = await startHost(dir, nats.server.url, {
    JETFN_INGRESS_HOST: "127.0.0.1",
    JETFN_INGRESS_PORT: "0",
    JETFN_INGRESS_TOKENS: `other-token,${TOKEN}`,
    JETFN_INGRESS_MAX_BODY: "4KB",
    JETFN_INGRESS_READ_TIMEOUT: "1s",
  }));
  port = host.ingressAddress!.port;
  ingress = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  await host?.shutdown();
});

const order = { orderId: "o-1", customerId: "c-1", amount: 42 };

function post(path: string, body: unknown, headers: Record<string, string> = {}, method = "POST"): Promise<Response> {
  return fetch(`${ingress}${path}`, {
    method,
    headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}`, ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** The stored message at `seq` of stream ING. */
async function stored(seq: number) {
  const message = await nats.jsm.streams.getMessage("ING", { seq });
  if (!message) throw new Error(`no message ${seq} in ING`);
  return message;
}

async function messages(subject: string): Promise<number> {
  const info = await nats.jsm.streams.info("ING", { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

/** Sends raw bytes on a fresh connection; resolves with what came back once the server closed it. */
function raw(write: (socket: net.Socket) => void, timeoutMs = 10_000): Promise<{ text: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(port, "127.0.0.1");
    let text = "";
    socket.on("data", (chunk) => (text += chunk.toString("latin1")));
    socket.on("error", () => {});
    socket.on("close", () => resolve({ text, ms: Date.now() - started }));
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(text.slice(0, 200))}`));
    });
    socket.on("connect", () => write(socket));
  });
}

describe("routes that publish", () => {
  it("answers 202 with the stream's ack once the event is stored", async () => {
    const before = await messages("ing.orders.created");
    const res = await post("/orders", order);
    expect(res.status).toBe(202);
    const ack = (await res.json()) as { stream: string; seq: number; duplicate: boolean };
    expect(ack).toEqual({ stream: "ING", seq: expect.any(Number), duplicate: false });
    const message = await stored(ack.seq);
    expect(message.subject).toBe("ing.orders.created");
    expect(message.json()).toEqual(order);
    expect(await messages("ing.orders.created")).toBe(before + 1);
  });

  it("stores one message for one Idempotency-Key, and says the second was a duplicate", async () => {
    const key = `order-${Date.now()}`;
    const first = (await (await post("/orders", order, { "idempotency-key": key })).json()) as { seq: number; duplicate: boolean };
    const second = await post("/orders", order, { "idempotency-key": key });
    expect(second.status).toBe(202);
    expect(await second.json()).toEqual({ stream: "ING", seq: first.seq, duplicate: true });
    expect((await stored(first.seq)).header.get("Nats-Msg-Id")).toBe(key);
  });

  it("answers 400 problem+json for a body that is not JSON or fails the schema, and publishes nothing", async () => {
    const before = await messages("ing.orders.created");
    const notJson = await post("/orders", "{nope");
    expect(notJson.status).toBe(400);
    expect(notJson.headers.get("content-type")).toBe("application/problem+json");
    expect(await notJson.json()).toMatchObject({ status: 400, title: "Bad Request", detail: expect.stringMatching(/not valid JSON/) });

    const invalid = await post("/orders", { orderId: "", amount: -1 });
    expect(invalid.status).toBe(400);
    const problem = (await invalid.json()) as { errors: { path: string; message: string }[] };
    expect(problem.errors.map((e) => e.path).sort()).toEqual(["amount", "customerId", "orderId"]);
    expect(problem.errors.every((e) => e.message.length > 0)).toBe(true);

    expect((await post("/orders", "")).status).toBe(400);
    expect(await messages("ing.orders.created")).toBe(before);
  });

  it("answers 401 with WWW-Authenticate for a missing or wrong token, and never logs a token", async () => {
    const missing = await post("/orders", order, { authorization: "" });
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe('Bearer realm="jetfn"');
    const wrong = await post("/orders", order, { authorization: "Bearer s3cret-token-4712" });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("www-authenticate")).toContain('error="invalid_token"');
    // Routes without auth take no token.
    expect((await post("/orders/o-9/cancel", {}, { authorization: "" })).status).toBe(202);
    const written = JSON.stringify(logs.lines);
    expect(written).not.toContain(TOKEN);
    expect(written).not.toContain("s3cret-token-4712");
  });

  it("answers 404 for an unknown path and 405 with Allow for a wrong method", async () => {
    const unknown = await post("/nothing-here", order);
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get("content-type")).toBe("application/problem+json");
    const wrongMethod = await post("/orders/o-1/cancel", {}, {}, "PUT");
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("DELETE, POST");
  });

  it("answers 415 for a content type the route does not take", async () => {
    expect((await post("/orders", JSON.stringify(order), { "content-type": "text/plain" })).status).toBe(415);
    expect((await post("/notes", "a note", { "content-type": "application/json" }, "PUT")).status).toBe(415);
    const note = await post("/notes", "a note, in text", { "content-type": "text/plain; charset=utf-8" }, "PUT");
    expect(note.status).toBe(202);
    const { seq } = (await note.json()) as { seq: number };
    expect(new TextDecoder().decode((await stored(seq)).data)).toBe("a note, in text");
  });

  it("fills path parameters into the subject, and refuses one that is not a single token", async () => {
    const res = await post("/orders/o-7/cancel", { reason: "changed mind" });
    expect(res.status).toBe(202);
    const { seq } = (await res.json()) as { seq: number };
    expect((await stored(seq)).subject).toBe("ing.orders.o-7.cancelled");
    expect((await post("/orders/o.7/cancel", {})).status).toBe(400);
    expect((await post("/orders/o%2A/cancel", {})).status).toBe(400);
  });

  it("answers 413 past JETFN_INGRESS_MAX_BODY without reading the rest of the body", async () => {
    const big = await post("/orders", JSON.stringify({ ...order, pad: "x".repeat(5000) }));
    expect(big.status).toBe(413);
    // Declares 50 MB, sends 10 bytes: the answer comes at once and the connection closes.
    const { text, ms } = await raw((socket) =>
      socket.write(
        `POST /orders/o-1/cancel HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 52428800\r\n\r\n{"a":"bbbb`,
      ),
    );
    expect(text).toMatch(/^HTTP\/1\.1 413 /);
    expect(ms).toBeLessThan(900); // well before the 1 s read timeout: not waiting for the body
  });

  it("counts requests by route template and status, never by raw path", async () => {
    await post("/orders/o-55/cancel", {});
    expect(await scrape(baseUrl, 'jetfn_ingress_requests_total{route="POST /orders/:id/cancel",status="202"}')).toBeGreaterThanOrEqual(1);
    expect(await scrape(baseUrl, 'jetfn_ingress_requests_total{route="POST /orders",status="401"}')).toBe(2);
    expect(await scrape(baseUrl, 'jetfn_ingress_requests_total{route="unmatched",status="404"}')).toBeGreaterThanOrEqual(1);
    expect(await scrape(baseUrl, 'jetfn_ingress_request_duration_seconds_count{route="POST /orders"}')).toBeGreaterThanOrEqual(4);
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    expect(text).not.toContain("o-55");
  });
});

describe("routes that invoke a function", () => {
  const quote = (body: unknown, id = "q-1") => post(`/quote/${id}`, body);

  it("answers 200 with the return value; ctx says subject = the route, seq 0, first delivery", async () => {
    const res = await quote({ sku: "A-1", qty: 4 });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({ sku: "A-1", total: 10, subject: "POST /quote/:id", seq: 0, deliveryCount: 1, id: "q-1" });
    const text = await quote({ sku: "B", qty: 2, mode: "text" });
    expect(text.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(await text.text()).toBe("2 x B");
    expect(await (await quote({ sku: "B", qty: 2, mode: "nothing" })).json()).toBeNull();
    // Nothing went through the stream.
    expect(await messages("ing.quote")).toBe(0);
  });

  it("answers 400 with the function schema's errors", async () => {
    const res = await quote({ sku: 5, qty: 0 });
    expect(res.status).toBe(400);
    const problem = (await res.json()) as { errors: { path: string }[] };
    expect(problem.errors.map((e) => e.path).sort()).toEqual(["qty", "sku"]);
  });

  it("answers 422 for a NonRetryableError, 503 with Retry-After for a RetryAfterError, 504 on timeout, 500 otherwise", async () => {
    const rejected = await quote({ sku: "Z-9", qty: 1, mode: "reject" });
    expect(rejected.status).toBe(422);
    expect(await rejected.json()).toMatchObject({ status: 422, detail: "sku Z-9 is discontinued" });

    const later = await quote({ sku: "A", qty: 1, mode: "later" });
    expect(later.status).toBe(503);
    expect(later.headers.get("retry-after")).toBe("3");

    const started = Date.now();
    const slow = await quote({ sku: "A", qty: 1, mode: "slow" });
    expect(slow.status).toBe(504);
    expect(Date.now() - started).toBeLessThan(5000);

    const failed = await quote({ sku: "A", qty: 1, mode: "fail" });
    expect(failed.status).toBe(500);
    const body = await failed.text();
    expect(body).not.toContain("hunter2"); // the handler's own message stays in the log
    expect(body).toContain("function quote failed");

    expect(await scrape(baseUrl, 'jetfn_invocations_total{function="quote",outcome="timeout"}')).toBe(1);
  });
});

describe("hostile clients", () => {
  it("answers slow-loris, 10,000 headers, deep JSON and invalid UTF-8 with a 4xx or a close, while consumers keep running", async () => {
    // Consumers at work throughout.
    const events = 200;
    const published = (async () => {
      for (let n = 0; n < events; n++) await nats.js.publish("ing.count", JSON.stringify({ n }));
    })();

    // 20 slow-loris clients: headers, then a body that trickles.
    const loris = Array.from({ length: 20 }, () =>
      raw((socket) => {
        socket.write("POST /orders/o-1/cancel HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{");
        const drip = setInterval(() => socket.writable && socket.write(" "), 200);
        socket.on("close", () => clearInterval(drip));
      }),
    );
    const headers = raw((socket) => {
      let text = "POST /orders/o-1/cancel HTTP/1.1\r\nHost: x\r\n";
      for (let i = 0; i < 10_000; i++) text += `X-H${i}: v\r\n`;
      socket.write(`${text}\r\n`);
    });
    const deep = await post("/orders/o-1/cancel", `${"[".repeat(100_000)}${"]".repeat(100_000)}`.slice(0, 4000));
    const badUtf8 = await fetch(`${ingress}/orders/o-1/cancel`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    });

    expect(deep.status).toBe(400);
    expect(((await deep.json()) as { detail: string }).detail).toMatch(/deeper than 64/);
    expect(badUtf8.status).toBe(400);
    expect(((await badUtf8.json()) as { detail: string }).detail).toMatch(/UTF-8/);
    expect((await headers).text).toMatch(/^HTTP\/1\.1 431 /);
    for (const { text, ms } of await Promise.all(loris)) {
      expect(text === "" || /^HTTP\/1\.1 408 /.test(text)).toBe(true);
      expect(ms).toBeLessThan(5000);
    }

    await published;
    await waitFor(async () => (await scrape(baseUrl, 'jetfn_invocations_total{function="count",outcome="success"}')) === events, {
      timeout: 15_000,
      message: "every consumer event ran",
    });
    expect((await fetch(`${baseUrl}/healthz`)).status).toBe(200);
    expect((await post("/orders", order)).status).toBe(202);
  });
});

describe("while NATS is unreachable", () => {
  it("answers 503 with Retry-After, publishes nothing, and takes events again once NATS is back", async () => {
    await nats.server.stop();
    try {
      await waitFor(async () => (await post("/orders", order)).status === 503, { timeout: 10_000, message: "503 while NATS is down" });
      const res = await post("/orders", order, { "idempotency-key": "while-down" });
      expect(res.status).toBe(503);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    } finally {
      await nats.server.restart();
    }
    await waitFor(async () => (await post("/orders", order)).status === 202, { timeout: 20_000, message: "202 once NATS is back" });
    // The refused request was not buffered and sent later.
    const info = await waitFor(() => nats.jsm.streams.info("ING"), { message: "the test's client back" });
    const ids: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const id = (await stored(seq)).header?.get("Nats-Msg-Id");
      if (id) ids.push(id);
    }
    expect(ids.length).toBeGreaterThan(0);
    expect(ids).not.toContain("while-down");
  });
});

describe("start-up", () => {
  it("refuses to start bearer routes without JETFN_INGRESS_TOKENS", async () => {
    const dir = makeProject(
      {
        "functions.yaml": `
functions:
  - { name: count, handler: fns/count.ts, stream: ING, subjects: [ing.count] }
routes:
  - { route: POST /orders, publish: ing.orders.created, auth: bearer }
`,
      },
      { fixtures: "ingress" },
    );
    await expect(createHost(dir, nats.server.url)).rejects.toThrow(
      "environment JETFN_INGRESS_TOKENS: must be set: POST /orders has auth: bearer",
    );
  });
});

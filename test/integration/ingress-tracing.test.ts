/**
 * One trace from an HTTP request through every function downstream: the ingress's SERVER
 * span continues the request's traceparent, its PRODUCER span's traceparent travels with the
 * event, and the consumer's span is its child. An invoke route's call is a child span too.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { OtlpReceiver, type ReceivedSpan } from "../support/otlp-receiver.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const SERVER = 2;
const PRODUCER = 4;
const CONSUMER = 5;
const INTERNAL = 1;

const nats = useNats();
let receiver: OtlpReceiver;
let host: Host;
let baseUrl: string;

beforeAll(async () => {
  receiver = await OtlpReceiver.start();
  process.env.OTEL_BSP_SCHEDULE_DELAY = "50";
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: IT, subjects: ["it.>"], storage: memory }
functions:
  - { name: count, handler: fns/count.ts, stream: IT, subjects: [it.orders] }
  - { name: quote, handler: fns/quote.ts, stream: IT, subjects: [it.quote] }
routes:
  - { route: POST /orders, publish: it.orders }
  - { route: POST /quote/:id, invoke: quote }
`,
    },
    { fixtures: "ingress" },
  );
  ({ host, baseUrl } = await startHost(dir, nats.server.url, {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    JETFN_INGRESS_HOST: "127.0.0.1",
    JETFN_INGRESS_PORT: "0",
  }));
});

afterAll(async () => {
  await host?.shutdown();
  await receiver?.close();
});

it("runs one trace from the HTTP request through the function the event reaches", async () => {
  const traceId = "0af7651916cd43dd8448eb211c80319c";
  const clientSpan = "b7ad6b7169203331";
  const ingress = `http://127.0.0.1:${host.ingressAddress!.port}`;
  const headers = { "content-type": "application/json", traceparent: `00-${traceId}-${clientSpan}-01` };
  expect((await fetch(`${ingress}/orders`, { method: "POST", headers, body: JSON.stringify({ n: 1 }) })).status).toBe(202);
  expect((await fetch(`${ingress}/quote/q-1`, { method: "POST", headers, body: JSON.stringify({ sku: "A", qty: 1 }) })).status).toBe(200);
  await waitFor(async () =>
    (await (await fetch(`${baseUrl}/metrics`)).text()).includes('jetfn_invocations_total{function="count",outcome="success"} 1'),
  );
  await host.shutdown(); // flushes the exporter

  const spans = receiver.spans.filter((s) => s.traceId === traceId);
  const one = (name: string): ReceivedSpan => {
    const found = spans.filter((s) => s.name === name);
    expect(found, name).toHaveLength(1);
    return found[0]!;
  };
  const server = one("POST /orders");
  const send = one("send it.orders");
  const consume = one("process it.orders");
  expect(server).toMatchObject({ kind: SERVER, parentSpanId: clientSpan });
  expect(server.attributes).toMatchObject({ "http.request.method": "POST", "http.route": "/orders", "http.response.status_code": 202 });
  expect(send).toMatchObject({ kind: PRODUCER, parentSpanId: server.spanId });
  expect(consume).toMatchObject({ kind: CONSUMER, parentSpanId: send.spanId });

  const quoteServer = one("POST /quote/:id");
  const call = one("invoke quote");
  expect(quoteServer).toMatchObject({ kind: SERVER, parentSpanId: clientSpan });
  expect(quoteServer.attributes).toMatchObject({ "url.path": "/quote/q-1", "http.response.status_code": 200 });
  expect(call).toMatchObject({ kind: INTERNAL, parentSpanId: quoteServer.spanId });
});

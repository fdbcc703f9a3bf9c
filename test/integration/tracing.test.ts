/**
 * One trace across functions: a publisher's traceparent continues through two chained
 * functions (output, ctx.publish, a span the handler makes itself), exported over OTLP/HTTP
 * to a receiver in the test; a failure's log line is found by its trace id.
 */
import { headers } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { OtlpReceiver, type ReceivedSpan } from "../support/otlp-receiver.ts";
import { type LogCapture, makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const PRODUCER = 4;
const CONSUMER = 5;
const ERROR = 2;

let receiver: OtlpReceiver;
let host: Host;
let logs: LogCapture;
let dir: string;

const nats = useNats();

beforeAll(async () => {
  receiver = await OtlpReceiver.start();
  process.env.OTEL_BSP_SCHEDULE_DELAY = "50"; // read by the SDK's batch processor
  dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: TR, subjects: ["tr.>"], storage: memory }
functions:
  - { name: first, handler: first.ts, stream: TR, subjects: [tr.in], output: tr.middle }
  - name: second
    handler: second.ts
    stream: TR
    subjects: [tr.middle]
    retry: { maxAttempts: 3, initialDelay: 50ms, jitter: false }
`,
    },
    { fixtures: "tracing" },
  );
  ({ host, logs } = await startHost(dir, nats.server.url, {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_SERVICE_NAME: "jetfn-under-test",
  }));
});

afterAll(async () => {
  await host?.shutdown();
  await receiver?.close();
});

it("continues the publisher's trace through both functions, with the right parents, kinds and attributes", async () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const publisherSpanId = "00f067aa0ba902b7";
  const h = headers();
  h.set("traceparent", `00-${traceId}-${publisherSpanId}-01`);
  const { seq } = await nats.js.publish("tr.in", JSON.stringify({ order: "o-7" }), { headers: h });
  await waitFor(() => nats.jsm.streams.getMessage("TR", { last_by_subj: "tr.out" }));
  await host.shutdown(); // flushes the batch processor

  const spans = receiver.spans.filter((s) => s.traceId === traceId);
  const one = (predicate: (s: ReceivedSpan) => boolean, what: string): ReceivedSpan => {
    const found = spans.filter(predicate);
    expect(found, what).toHaveLength(1);
    return found[0]!;
  };
  const first = one((s) => s.name === "process tr.in", "first's consumer span");
  const output = one((s) => s.name === "send tr.middle", "first's output producer span");
  const secondTries = spans.filter((s) => s.name === "process tr.middle");
  const charge = one((s) => s.name === "charge card", "the handler's own span");
  const published = one((s) => s.name === "send tr.out", "second's ctx.publish producer span");

  expect(first).toMatchObject({ kind: CONSUMER, parentSpanId: publisherSpanId, serviceName: "jetfn-under-test" });
  expect(first.attributes).toMatchObject({
    "messaging.system": "nats",
    "messaging.destination.name": "tr.in",
    "messaging.consumer.group.name": "jetfn_first",
    "messaging.message.id": String(seq),
    "messaging.message.body.size": 15,
    "jetfn.function": "first",
    "jetfn.delivery_count": 1,
    "jetfn.settlement": "ack",
  });
  expect(output).toMatchObject({ kind: PRODUCER, parentSpanId: first.spanId });
  // Both deliveries of the second function (a failure, then a success) continue the trace.
  expect(secondTries).toHaveLength(2);
  for (const attempt of secondTries) expect(attempt).toMatchObject({ kind: CONSUMER, parentSpanId: output.spanId });
  const [failed, succeeded] = [...secondTries].sort(
    (a, b) => Number(a.attributes["jetfn.delivery_count"]) - Number(b.attributes["jetfn.delivery_count"]),
  );
  expect(failed!.status.code).toBe(ERROR);
  expect(failed!.events.map((e) => e.name)).toContain("exception");
  expect(failed!.attributes["jetfn.settlement"]).toBe("nak");
  expect(succeeded!.attributes["jetfn.settlement"]).toBe("ack");
  expect(charge.parentSpanId).toBe(succeeded!.spanId);
  expect(published).toMatchObject({ kind: PRODUCER, parentSpanId: charge.spanId });

  // The output message itself carries the producer span as its parent.
  const middle = await nats.jsm.streams.getMessage("TR", { last_by_subj: "tr.middle" });
  expect(middle!.header.get("traceparent")).toBe(`00-${traceId}-${output.spanId}-01`);

  // The failure's log line is found by its trace id, and names the failed span.
  const line = logs.find((l) => l.msg === "delivery failed" && l.trace_id === traceId);
  expect(line).toMatchObject({ function: "second", span_id: failed!.spanId, error: "payment gateway hiccup", action: "nak" });
});

it("keeps exporting for a host started after another stopped in the same process (jetfn dev reloads)", async () => {
  const again = await startHost(dir, nats.server.url, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
  try {
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    const h = headers();
    h.set("traceparent", `00-${traceId}-b7ad6b7169203331-01`);
    await nats.js.publish("tr.in", JSON.stringify({ order: "o-8" }), { headers: h });
    await waitFor(() => receiver.spans.some((s) => s.traceId === traceId && s.name === "process tr.in"), {
      message: "the second host's spans reach the collector",
    });
  } finally {
    await again.host.shutdown();
  }
});

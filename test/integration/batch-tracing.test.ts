/**
 * A batch's span: one CONSUMER span `process batch` per batch, in a trace of its own, linked
 * to each message's incoming trace context; what the handler publishes is its child.
 */
import { headers } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { OtlpReceiver } from "../support/otlp-receiver.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

let receiver: OtlpReceiver;
let host: Host | undefined;

const nats = useNats();

beforeAll(async () => {
  receiver = await OtlpReceiver.start();
  process.env.OTEL_BSP_SCHEDULE_DELAY = "50"; // read by the SDK's batch processor
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: BTR, subjects: ["btr.>"], storage: memory }
functions:
  - name: traced-batch
    handler: fns/load.ts
    stream: BTR
    subjects: [btr.in]
    batch: { maxSize: 3, maxWait: 5s }
    config: { record: btr.rec }
`,
    },
    { fixtures: "batch" },
  );
  ({ host } = await startHost(dir, nats.server.url, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }));
});

afterAll(async () => {
  await host?.shutdown();
  await receiver?.close();
});

it("opens one span for the batch, linked to each message's trace, parent of what the handler publishes", async () => {
  const traces = ["5bf92f3577b34da6a3ce929d0e0e4731", "5bf92f3577b34da6a3ce929d0e0e4732", "5bf92f3577b34da6a3ce929d0e0e4733"];
  for (const [n, traceId] of traces.entries()) {
    const h = headers();
    h.set("traceparent", `00-${traceId}-00f067aa0ba902b${n}-01`);
    await nats.js.publish("btr.in", JSON.stringify({ n }), { headers: h });
  }
  const batchSpan = await waitFor(() => receiver.spans.find((span) => span.name === "process batch"), { message: "the batch's span" });
  expect(batchSpan.kind).toBe(5);
  expect(batchSpan.attributes["messaging.batch.message_count"]).toBe(3);
  expect(batchSpan.attributes["jetfn.function"]).toBe("traced-batch");
  expect(traces).not.toContain(batchSpan.traceId);
  const links = batchSpan.links;
  expect(links.map((link) => link.traceId).sort()).toEqual(traces);
  expect(links.map((link) => link.spanId).sort()).toEqual(["00f067aa0ba902b0", "00f067aa0ba902b1", "00f067aa0ba902b2"]);
  const published = await waitFor(() => receiver.spans.find((span) => span.parentSpanId === batchSpan.spanId), {
    message: "the handler's publish under the batch's span",
  });
  expect(published.traceId).toBe(batchSpan.traceId);
  expect(published.kind).toBe(4);
});

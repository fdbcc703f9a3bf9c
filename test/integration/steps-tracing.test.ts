/**
 * A span per step: `step <name>`, child of the delivery's span, with `jetfn.step.replayed`;
 * spans the step's function makes are its children, in a worker thread as in the host's.
 */
import { headers } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { OtlpReceiver, type ReceivedSpan } from "../support/otlp-receiver.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

let receiver: OtlpReceiver;
let host: Host;

const nats = useNats();

beforeAll(async () => {
  receiver = await OtlpReceiver.start();
  process.env.OTEL_BSP_SCHEDULE_DELAY = "50"; // read by the SDK's batch processor
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: TRS, subjects: ["trs.>"], storage: memory }
functions:
  - { name: traced, handler: traced.ts, stream: TRS, subjects: [trs.in], retry: { maxAttempts: 3, initialDelay: 50ms, jitter: false } }
`,
    },
    { fixtures: "steps-tracing" },
  );
  ({ host } = await startHost(dir, nats.server.url, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }));
});

afterAll(async () => {
  await host?.shutdown();
  await receiver?.close();
});

it("opens `step charge` under each delivery's span: run on the first, replayed on the retry", async () => {
  const traceId = "5bf92f3577b34da6a3ce929d0e0e4737";
  const h = headers();
  h.set("traceparent", `00-${traceId}-00f067aa0ba902b8-01`);
  await nats.js.publish("trs.in", "{}", { headers: h });
  const spans = (): ReceivedSpan[] => receiver.spans.filter((s) => s.traceId === traceId);
  await waitFor(
    () => spans().filter((s) => s.name === "process trs.in").length === 2 && spans().filter((s) => s.name === "step charge").length === 2,
    {
      message: "both deliveries' spans and step spans exported",
    },
  );
  const deliveries = spans()
    .filter((s) => s.name === "process trs.in")
    .sort((a, b) => Number(a.attributes["jetfn.delivery_count"]) - Number(b.attributes["jetfn.delivery_count"]));
  const steps = spans().filter((s) => s.name === "step charge");
  const ran = steps.find((s) => s.attributes["jetfn.step.replayed"] === false);
  const replayed = steps.find((s) => s.attributes["jetfn.step.replayed"] === true);
  expect(ran?.parentSpanId).toBe(deliveries[0]!.spanId);
  expect(replayed?.parentSpanId).toBe(deliveries[1]!.spanId);
  expect(ran?.attributes["jetfn.step.key"]).toMatch(/^traced:TRS:\d+:charge$/);
  const own = spans().filter((s) => s.name === "call gateway");
  expect(own).toHaveLength(1);
  expect(own[0]!.parentSpanId).toBe(ran!.spanId);
});

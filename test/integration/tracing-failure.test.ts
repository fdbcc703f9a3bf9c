/**
 * A trace collector that is down: spans are dropped with one warn line, and the host goes
 * on processing as if nothing happened.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { freePort } from "../support/free-port.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
import { client, type LogCapture, makeProject, startHost } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

let server: NatsServer;
let host: Host;
let logs: LogCapture;

beforeAll(async () => {
  server = await startNatsServer();
  process.env.OTEL_BSP_SCHEDULE_DELAY = "20";
  process.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE = "5";
  process.env.OTEL_EXPORTER_OTLP_TIMEOUT = "1000"; // the exporter gives up (and retries end) sooner
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: TF, subjects: ["tf.>"], storage: memory }
functions:
  - { name: echo, handler: echo.ts, stream: TF, subjects: [tf.in], output: tf.out }
`,
    },
    { fixtures: "tracing-failure" },
  );
  const nobody = await freePort(); // nothing listens there
  ({ host, logs } = await startHost(dir, server.url, { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${nobody}` }));
});

afterAll(async () => {
  await host?.shutdown();
  await server?.stop();
});

it("logs the failed export once and keeps processing", async () => {
  const { nc, js, jsm } = await client(server.url);
  try {
    for (let n = 1; n <= 30; n++) await js.publish("tf.in", JSON.stringify({ n }));
    await waitFor(async () => (await jsm.streams.info("TF", { subjects_filter: "tf.out" })).state.subjects?.["tf.out"] === 30, {
      message: "all 30 processed",
      timeout: 20_000,
    });
    await waitFor(() => logs.find((l) => l.msg === "exporting traces failed; spans are dropped until the collector answers"), {
      message: "the export failure is logged",
    });
    expect(logs.lines.filter((l) => String(l.msg).startsWith("exporting traces failed"))).toHaveLength(1);
    expect(host.ready()).toBe(true);
  } finally {
    await nc.close();
  }
});

/**
 * The broker goes away under a running host: readiness follows the connection, and the
 * pull loop resumes by itself once the server is back.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
import { client, type LogCapture, makeProject, startHost } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

let server: NatsServer;
let host: Host;
let logs: LogCapture;
let baseUrl: string;

beforeAll(async () => {
  server = await startNatsServer();
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: R, subjects: ["r.>"] }
functions:
  - { name: echo, handler: echo.ts, stream: R, subjects: [r.in], output: r.out }
`,
    },
    { fixtures: "reconnect" },
  );
  ({ host, logs, baseUrl } = await startHost(dir, server.url));
});

afterAll(async () => {
  await host?.shutdown();
  await server?.stop();
});

const readyz = async () => (await fetch(`${baseUrl}/readyz`)).status;

it("is not ready while the server is down, and processes again once it is back", async () => {
  await waitFor(async () => (await readyz()) === 200);
  await server.kill();
  await waitFor(async () => (await readyz()) === 503, { message: "503 while disconnected" });
  await server.restart();
  await waitFor(async () => (await readyz()) === 200, { message: "ready again after reconnect", timeout: 30_000 });
  const { nc, js, jsm } = await client(server.url);
  try {
    const { seq } = await js.publish("r.in", JSON.stringify({ n: 42 }));
    const out = await waitFor(() => jsm.streams.getMessage("R", { last_by_subj: "r.out" }), { timeout: 20_000 });
    expect(out.json()).toEqual({ n: 42 });
    expect(out.header.get("Nats-Msg-Id")).toBe(`echo:R:${seq}`);
    expect(logs.find((l) => l.msg === "disconnected from NATS")).toBeDefined();
    expect(logs.find((l) => l.msg === "reconnected to NATS")).toBeDefined();
  } finally {
    await nc.close();
  }
});

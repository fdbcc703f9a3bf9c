/**
 * The consumer lag gauges follow the server: polled from consumer info on an interval,
 * they rise while messages wait and fall back to 0 once they are processed.
 */
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { GATE_SUBJECT, type Gate } from "../fixtures/consumer-lag/gated.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
import { client, makeProject, scrape, startHost } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

/** Holds test/fixtures/consumer-lag/gated.ts until opened: answered to its requests on GATE_SUBJECT. */
const gate: Gate = { open: false };

let server: NatsServer;
/** Answers the gate's requests. */
let gatekeeper: NatsConnection;
let host: Host;
let baseUrl: string;

beforeAll(async () => {
  server = await startNatsServer();
  ({ nc: gatekeeper } = await client(server.url));
  gatekeeper.subscribe(GATE_SUBJECT, {
    callback: (_err: Error | null, msg: Msg) => {
      msg.respond(JSON.stringify(gate));
    },
  });
  const dir = makeProject(
    {
      "functions.yaml": `
defaults:
  config: { natsUrl: ${JSON.stringify(server.url)} }
streams:
  - { name: LAG, subjects: ["lag.>"], storage: memory }
functions:
  - { name: gated, handler: gated.ts, stream: LAG, subjects: [lag.in], concurrency: 1 }
`,
    },
    { fixtures: "consumer-lag" },
  );
  ({ host, baseUrl } = await startHost(dir, server.url));
});

afterAll(async () => {
  gate.open = true;
  await host?.shutdown();
  await gatekeeper?.close();
  await server?.stop();
});

const gauge = (name: string) => scrape(baseUrl, `${name}{function="gated"}`);

it("reports pending and ack-pending messages as they change", async () => {
  const { nc, js } = await client(server.url);
  try {
    for (let i = 0; i < 5; i++) await js.publish("lag.in", "{}");
    // One runs; in worker mode a second waits in the function's thread for the slot.
    const held = host.config.functions[0]!.isolation === "worker" ? 2 : 1;
    await waitFor(
      async () =>
        (await gauge("jetfn_consumer_pending_messages")) === 5 - held && (await gauge("jetfn_consumer_ack_pending_messages")) === held,
      {
        message: `${5 - held} waiting, ${held} in flight`,
      },
    );
    const fns = host.functions() as { name: string; pending: number; ackPending: number }[];
    expect(fns[0]).toMatchObject({ name: "gated", pending: 5 - held, ackPending: held });
    gate.open = true;
    await waitFor(
      async () => (await gauge("jetfn_consumer_pending_messages")) === 0 && (await gauge("jetfn_consumer_ack_pending_messages")) === 0,
      {
        message: "all processed",
      },
    );
  } finally {
    await nc.close();
  }
});

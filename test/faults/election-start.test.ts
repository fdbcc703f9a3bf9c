/**
 * A host started while its cluster has no JetStream meta leader (two of three nodes down,
 * as after a node's fault in the chaos run) waits it out: not ready, saying why, and starts
 * once JetStream answers, instead of exiting with "JetStream system temporarily unavailable".
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { isJetStreamUnavailable } from "../../runtime/nats/broker-failures.ts";
import { type NatsCluster, startNatsCluster } from "../support/nats-server.ts";
import { createHost, makeProject } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

let cluster: NatsCluster;

beforeAll(async () => {
  cluster = await startNatsCluster(3);
});

afterAll(async () => {
  await cluster?.stop();
});

it("a host started with no meta leader waits, not ready, and starts once JetStream answers", async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: ELECT, subjects: ["elect.>"], storage: file, replicas: 1 }
  - { name: SEEN, subjects: ["seen.>"], storage: file, replicas: 1 }
functions:
  - { name: e, handler: fn.ts, stream: ELECT, subjects: [elect.e] }
`,
    },
    { fixtures: "provision" },
  );
  const [node0, node1, node2] = cluster.servers;
  await Promise.all([node1!.stop(), node2!.stop()]);
  // The node left alone takes a few seconds to see it has no meta leader any more.
  const alone = await connect({ servers: node0!.url });
  try {
    const jsm = await jetstreamManager(alone, { checkAPI: false, timeout: 1000 });
    await waitFor(() => jsm.getAccountInfo().then(() => false, isJetStreamUnavailable), {
      timeout: 30_000,
      message: "the node left alone says JetStream is unavailable",
    });
  } finally {
    await alone.close();
  }
  const { host, logs } = await createHost(dir, node0!.url);
  const starting = host.start();
  try {
    await waitFor(() => logs.find((line) => String(line.msg).includes("JetStream cannot answer for now")) !== undefined, {
      timeout: 30_000,
      message: "the host says it waits for JetStream",
    });
    expect(host.ready()).toBe(false);
    await Promise.all([node1!.restart(), node2!.restart()]);
    await starting;
    expect(host.ready()).toBe(true);
  } finally {
    await host.shutdown();
    await starting.catch(() => {});
  }
});

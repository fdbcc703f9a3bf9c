/**
 * Bad-day scenario 2 (issue 22): one node of a 3-node cluster cut off from the other two (its
 * routes blackholed; the node itself runs on, and clients still reach it), with a jetfn host
 * attached to it. On the minority side JetStream cannot answer: the host must move to a node
 * of the majority and go on running events there, and nothing is lost. Prints its figures.
 * Up to a minute or so: it runs in `npm run test:long`, not in `npm test`.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { judge, type Published, readHistory } from "../support/history.ts";
import { type NatsCluster, startNatsCluster } from "../support/nats-server.ts";
import { makeProject, startHost } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

/** The cut lasts this long at least, and until the host went on on the majority's side. */
const CUT_MS = 15_000;

let cluster: NatsCluster;
let host: Host;
let nc: NatsConnection;
const history = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-history-")), "history.jsonl");

beforeAll(async () => {
  cluster = await startNatsCluster(3, { partitionable: true });
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: MINOR, subjects: ["minor.in"], replicas: 3 }
functions:
  - name: work
    handler: fns/record.ts
    stream: MINOR
    subjects: ["minor.in"]
    concurrency: 8
    timeout: 5s
    config: { history: ${JSON.stringify(history)} }
`,
    },
    { fixtures: "bad-day" },
  );
  // NATS_URL lists every node, as a cluster's clients should: the client never drops those.
  ({ host } = await startHost(dir, cluster.urls.join(",")));
}, 60_000);

/** The node the host is connected to now. */
async function hostNode(): Promise<number> {
  const server = (await host.status()).server;
  const index = cluster.servers.findIndex((node) => server?.endsWith(`:${node.port}`));
  if (index < 0) throw new Error(`the host's server ${server} is none of the cluster's`);
  return index;
}

afterAll(async () => {
  await host?.shutdown();
  await nc?.close();
  await cluster?.stop();
});

it("a host attached to a node cut off from the majority moves to the majority and goes on; nothing lost", async () => {
  // The node the host is on is the one cut off; the test publishes through the other two.
  const attached = await hostNode();
  nc = await connect({ servers: cluster.urls.filter((_, i) => i !== attached), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  const js = jetstream(nc, { timeout: 2000 });
  const published: Published[] = [];
  let publishing = true;
  const publisher = (async () => {
    for (let i = 0; publishing; i++) {
      const id = `e${i}`;
      for (;;) {
        try {
          await js.publish("minor.in", JSON.stringify({ id, ms: 20 }), { msgID: id });
          break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100)); // an election under way
        }
      }
      published.push({ id });
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
  })();
  await waitFor(() => readHistory(history).some((line) => line.kind === "end"), { timeout: 15_000, message: "runs before the cut" });

  cluster.cutOff!(attached);
  const cutAt = Date.now();
  // The host leaves the cut-off node for one of the majority's.
  // nats-server itself takes a while to see a silent partition (the cut node's consumer
  // leader went on answering for up to 20 s in these runs); the host moves 10 s after that.
  const movedTo = await waitFor(
    async () => {
      const node = await hostNode().catch(() => attached);
      return node !== attached ? node : undefined;
    },
    { timeout: 60_000, interval: 250, message: "the host moved to another node" },
  );
  const movedAfterMs = Date.now() - cutAt;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, cutAt + CUT_MS - Date.now())));
  // Whether events ran on the majority's side before the heal depends on the cluster's own
  // recovery (a silent partition takes nats-server a while to notice): a figure, not a test.
  const ranDuringCut = readHistory(history).some((line) => line.kind === "end" && line.at > cutAt + movedAfterMs);
  cluster.mend!();
  await new Promise((resolve) => setTimeout(resolve, 2000));
  publishing = false;
  await publisher;

  await waitFor(() => judge(readHistory(history), published).lost.length === 0, {
    timeout: 60_000,
    interval: 500,
    message: "every event ran",
  });
  const verdict = judge(readHistory(history), published);
  console.log(
    "minority node:",
    JSON.stringify({
      published: verdict.published,
      lost: verdict.lost.length,
      duplicates: verdict.duplicates,
      attached,
      movedTo,
      movedAfterMs,
      ranDuringCut,
      cutMs: CUT_MS,
    }),
  );
  expect(verdict.lost).toEqual([]);
}, 120_000);

/**
 * Durable steps on a 3-node JetStream cluster, with the node leading the step bucket
 * (`JETFN_STEPS`, as replicated as the host's streams: 3) SIGKILLed while handlers with two
 * steps run. While no leader answers, steps cannot be claimed or recorded: a claim that
 * fails fails its invocation, which is retried, and a result already computed is written
 * again in place until the new leader takes it (how many invocations failed depends on how
 * fast the election is; the test prints it). Nothing is lost (every event is acked, every step ran) and no step's
 * side effect happens twice, counted in an effect log the handler appends to.
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { type NatsCluster, startNatsCluster } from "../support/nats-server.ts";
import { makeProject, scrape, startHost } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

let cluster: NatsCluster;
let host: Host;
let baseUrl: string;
let nc: NatsConnection;
let jsm: JetStreamManager;
let effects: string;

beforeAll(async () => {
  cluster = await startNatsCluster(3);
  nc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  jsm = await jetstreamManager(nc);
  effects = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-steps-cluster-")), "effects.log");
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: SC, subjects: ["sc.>"], replicas: 3 }
functions:
  - name: order
    handler: fns/reserve-charge.ts
    stream: SC
    subjects: [sc.orders]
    concurrency: 16
    timeout: 5s
    retry: { maxAttempts: 30, initialDelay: 250ms, maxDelay: 1s, jitter: false }
    config: { effects: ${JSON.stringify(effects)}, betweenMs: 40 }
`,
    },
    { fixtures: "steps-cluster" },
  );
  ({ host, baseUrl } = await startHost(dir, cluster.urls.join(",")));
}, 60_000);

afterAll(async () => {
  await host?.shutdown();
  await nc?.close();
  await cluster?.stop();
});

function effectLines(): string[] {
  return existsSync(effects) ? readFileSync(effects, "utf8").split("\n").filter(Boolean) : [];
}

it("loses nothing and runs no step twice across the death of the step bucket's leader", async () => {
  const events = 400;
  const js = jetstream(nc);
  for (let n = 0; n < events; n++) await js.publish("sc.orders", JSON.stringify({ order: `o-${n}` }));
  await waitFor(() => effectLines().filter((line) => line.startsWith("order charge ")).length >= 60, {
    timeout: 20_000,
    message: "some runs done before the kill",
  });
  const bucket = await jsm.streams.info("KV_JETFN_STEPS");
  expect(bucket.config.num_replicas).toBe(3);

  const leader = await waitFor(async () => (await jsm.streams.info("KV_JETFN_STEPS")).cluster?.leader, { timeout: 10_000 });
  const victim = cluster.servers[Number(leader.replace("node", ""))]!;
  const before = effectLines().length;
  await victim.kill();
  await waitFor(
    async () => {
      const info = await jsm.consumers.info("SC", "jetfn_order").catch(() => undefined);
      return info !== undefined && info.num_pending === 0 && info.num_ack_pending === 0;
    },
    { timeout: 40_000, interval: 250, message: "every event acked after the bucket's leader died" },
  );
  const newLeader = await waitFor(async () => (await jsm.streams.info("KV_JETFN_STEPS")).cluster?.leader, { timeout: 10_000 });
  await victim.restart();

  const lines = effectLines();
  const counts = new Map<string, number>();
  for (const line of lines) counts.set(line, (counts.get(line) ?? 0) + 1);
  const twice = [...counts].filter(([, count]) => count > 1);
  const failed = await scrape(baseUrl, 'jetfn_invocations_total{function="order",outcome="error"}');
  console.log(
    "steps across a KV leader's death:",
    JSON.stringify({ killedNode: leader, effectsBeforeKill: before, effects: lines.length, failedInvocations: failed, twice }),
  );
  // Every step of every event ran, each once.
  expect(twice).toEqual([]);
  for (let n = 0; n < events; n++) {
    expect(counts.get(`order reserve o-${n}`)).toBe(1);
    expect(counts.get(`order charge o-${n}`)).toBe(1);
  }
  // Killed mid-run, and another node leads the bucket now. Invocations that failed meanwhile
  // (a claim the bucket did not answer) were retried: none went to the dead letters.
  expect(before).toBeLessThan(events * 2);
  expect(newLeader).not.toBe(leader);
  expect(await scrape(baseUrl, 'jetfn_acks_total{function="order",action="term"}')).toBe(0);
}, 90_000);

/**
 * The chaos run (issue 22, scenario 7): three `jetfn start` replicas and a 3-node JetStream
 * cluster under steady load, while a seeded random schedule applies the bad-day suite's
 * faults one after another: a replica's link blackholed or slowed, a replica SIGKILLed,
 * SIGTERMed or SIGSTOPped (then started or continued again), a node cut off from the others
 * or SIGKILLed (then healed or restarted). At the end the history checker judges the whole
 * run: nothing lost, per-key order held, no two runs of a key at once; duplicates counted.
 *
 *   npm run chaos -- --minutes 10 [--seed 42]      (CHAOS_SECONDS / CHAOS_SEED underneath;
 *                                                  `npm test` runs it for 60 s with seed 1)
 *
 * Each replica reaches the cluster through fault proxies of its own (one per node), and lists
 * all three in its NATS_URL. The load: 100 events a second, half to an unordered function,
 * half to an ordered one (20 keys), published straight to the cluster with message ids (a
 * publish retried across an election is stored once).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, expect, it } from "vitest";
import { type CliProcess, killCliHosts, startCliHost } from "../support/cli.ts";
import { FaultProxy } from "../support/fault-proxy.ts";
import { judge, type Published, readHistory } from "../support/history.ts";
import { type NatsCluster, startNatsCluster } from "../support/nats-server.ts";
import { makeProject } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

/** 60 s in `npm test`; `npm run chaos -- --minutes N` sets it. */
const SECONDS = Number(process.env.CHAOS_SECONDS) || 60;
const SEED = Number(process.env.CHAOS_SEED) || 1;
const RATE = 100;
const KEYS = 20;

/** mulberry32: a small seeded generator, so a run's schedule can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Replica {
  host: { cli: CliProcess; base: string };
  readonly proxies: FaultProxy[];
}

let cluster: NatsCluster | undefined;
let nc: NatsConnection | undefined;
const proxies: FaultProxy[] = [];

afterAll(async () => {
  await killCliHosts();
  await nc?.close();
  await Promise.all(proxies.map((proxy) => proxy.close()));
  await cluster?.stop();
});

it(
  `survives ${SECONDS} s of random faults (seed ${SEED}): nothing lost, order held`,
  async () => {
    const next = random(SEED);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const between = (min: number, max: number) => Math.round(min + next() * (max - min));

    cluster = await startNatsCluster(3, { partitionable: true });
    nc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    const history = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-chaos-")), "history.jsonl");
    const dir = makeProject(
      {
        "functions.yaml": `
streams:
  - { name: CHAOS, subjects: ["chaos.>"], replicas: 3 }
functions:
  - name: work
    handler: fns/record.ts
    stream: CHAOS
    subjects: ["chaos.work"]
    concurrency: 16
    timeout: 5s
    retry: { maxAttempts: 1000, initialDelay: 200ms, maxDelay: 2s }
    config: { history: ${JSON.stringify(history)} }
  - name: ledger
    handler: fns/record.ts
    stream: CHAOS
    subjects: ["chaos.ledger"]
    concurrency: 16
    timeout: 5s
    retry: { maxAttempts: 1000, initialDelay: 200ms, maxDelay: 2s }
    ordering: { key: key, partitions: 4, leaseTtl: 3s }
    config: { history: ${JSON.stringify(history)} }
`,
      },
      { fixtures: "bad-day" },
    );
    const config = path.join(dir, "functions.yaml");
    const env = { LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? "warn" };
    const replicas: Replica[] = [];
    // A replica started again just after a node's fault waits out the cluster's election.
    const started: CliProcess[] = [];
    const start = async (own: FaultProxy[]) => {
      const host = await startCliHost(config, own.map((proxy) => proxy.url).join(","), env, 90_000);
      started.push(host.cli);
      return host;
    };
    for (let r = 0; r < 3; r++) {
      const own = await Promise.all(cluster.servers.map((node) => FaultProxy.start({ port: node.port })));
      proxies.push(...own);
      replicas.push({ host: await start(own), proxies: own });
    }

    // The load.
    const js = jetstream(nc, { timeout: 2000 });
    const published: Published[] = [];
    let publishing = true;
    const load = (async () => {
      const began = Date.now();
      for (let n = 0; publishing; n++) {
        const ordered = n % 2 === 1;
        const event = ordered ? { id: `l${n}`, key: `acct-${n % KEYS}`, ms: 30 } : { id: `w${n}`, ms: 30 };
        for (;;) {
          try {
            await js.publish(ordered ? "chaos.ledger" : "chaos.work", JSON.stringify(event), { msgID: event.id });
            break;
          } catch {
            await sleep(200); // an election, a node down: the same message id again
          }
        }
        published.push(ordered ? { id: event.id, key: event.key! } : { id: event.id });
        const due = began + ((n + 1) / RATE) * 1000;
        if (due > Date.now()) await sleep(due - Date.now());
      }
    })();

    // The faults, one at a time, each undone before the next.
    const applied: string[] = [];
    const until = Date.now() + SECONDS * 1000;
    await sleep(3000);
    while (Date.now() < until - 5000) {
      const r = between(0, 2);
      const replica = replicas[r]!;
      const node = between(0, 2);
      const lasting = between(3000, 8000);
      const fault = pick(["partition", "slow", "kill", "term", "stop", "cut-node", "kill-node"] as const);
      applied.push(`${fault}(${fault.endsWith("node") ? `node${node}` : `replica${r}`}, ${lasting} ms)`);
      switch (fault) {
        case "partition":
          for (const proxy of replica.proxies) proxy.blackhole();
          await sleep(lasting);
          for (const proxy of replica.proxies) proxy.heal();
          break;
        case "slow":
          for (const proxy of replica.proxies) proxy.shape({ latencyMs: 200 });
          await sleep(lasting);
          for (const proxy of replica.proxies) proxy.shape({});
          break;
        case "kill":
        case "term":
          replica.host.cli.child.kill(fault === "kill" ? "SIGKILL" : "SIGTERM");
          await replica.host.cli.exited;
          await sleep(lasting / 4);
          replica.host = await start(replica.proxies);
          break;
        case "stop":
          replica.host.cli.child.kill("SIGSTOP");
          await sleep(lasting);
          replica.host.cli.child.kill("SIGCONT");
          break;
        case "cut-node":
          cluster.cutOff!(node);
          await sleep(lasting);
          cluster.mend!();
          break;
        case "kill-node":
          await cluster.servers[node]!.kill();
          await sleep(lasting / 2);
          await cluster.servers[node]!.restart();
          break;
      }
      await sleep(between(1000, 3000));
    }
    publishing = false;
    await load;

    await waitFor(() => judge(readHistory(history), published).lost.length === 0, {
      timeout: 120_000,
      interval: 1000,
      message: "every event ran",
    }).catch(() => undefined);
    const verdict = judge(readHistory(history), published);
    const table = [
      "| seed | seconds | faults | published | lost | duplicates | order violations | overlapping runs |",
      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      `| ${SEED} | ${SECONDS} | ${applied.length} | ${verdict.published} | ${verdict.lost.length} | ${verdict.duplicates} | ${verdict.orderViolations.length} | ${verdict.overlaps.length} |`,
    ].join("\n");
    console.log(`chaos run, faults in order: ${applied.join(", ")}\n\n${table}\n`);
    if (verdict.lost.length > 0 || verdict.orderViolations.length > 0) {
      // What to look at afterwards: every replica's log (each start its own), and the consumers' state.
      for (const [n, cli] of started.entries()) writeFileSync(path.join(path.dirname(history), `replica-start-${n}.log`), cli.output());
      const jsm = await jetstreamManager(nc);
      const consumers = [];
      for await (const stream of jsm.streams.list()) {
        for await (const info of jsm.consumers.list(stream.config.name)) {
          const { name, num_pending, num_ack_pending, num_waiting, delivered, ack_floor } = info;
          consumers.push({
            stream: stream.config.name,
            name,
            num_pending,
            num_ack_pending,
            num_waiting,
            delivered,
            ack_floor,
            state: stream.state,
          });
        }
      }
      writeFileSync(path.join(path.dirname(history), "consumers.json"), JSON.stringify(consumers, null, 2));
      console.log(`replica logs and consumers' state in ${path.dirname(history)}`);
    }
    if (verdict.orderViolations.length > 0) console.log(verdict.orderViolations.slice(0, 10).join("\n"));
    if (verdict.overlaps.length > 0) console.log(verdict.overlaps.slice(0, 10).join("\n"));
    expect(verdict.lost).toEqual([]);
    expect(verdict.orderViolations).toEqual([]);
    // A replica SIGSTOPped with an ordered event running may run on beside the next owner once
    // it wakes (docs/ordering.md: not guaranteed under a stall); any other overlap is a fault.
    if (!applied.some((fault) => fault.startsWith("stop("))) expect(verdict.overlaps).toEqual([]);
  },
  (SECONDS + 240) * 1000,
);

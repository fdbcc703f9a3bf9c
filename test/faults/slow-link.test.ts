/**
 * Bad-day scenario 3 (issue 22): a `jetfn start` host behind a slow link to its broker (the
 * fault proxy of test/support/fault-proxy.ts; this kernel has no netem). With 200 ms each
 * way, runs longer than the ack wait are kept alive by heartbeats that cross the slow link;
 * with 1 Mbit/s, 4 KB events squeeze through. Either way: nothing lost, nothing run twice,
 * and nothing redelivered by the server (counted from the consumer). Each prints its figures.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { killCliHosts, startCliHost } from "../support/cli.ts";
import { FaultProxy } from "../support/fault-proxy.ts";
import { judge, type Published, readHistory } from "../support/history.ts";
import { makeProject, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let proxy: FaultProxy;
beforeAll(async () => {
  proxy = await FaultProxy.start({ port: Number(new URL(nats.server.url).port) });
});
afterAll(() => proxy?.close());
afterEach(killCliHosts);

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

/** Starts a host behind the proxy whose `slow` function records into a fresh history file. */
async function hostBehindProxy(name: string, ackWait: string): Promise<string> {
  const history = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-history-")), "history.jsonl");
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: ${name}, subjects: ["${name.toLowerCase()}.in"] }
functions:
  - name: slow
    handler: fns/record.ts
    stream: ${name}
    subjects: ["${name.toLowerCase()}.in"]
    concurrency: 8
    ackWait: ${ackWait}
    timeout: 10s
    config: { history: ${JSON.stringify(history)} }
`,
    },
    { fixtures: "bad-day" },
  );
  await startCliHost(path.join(dir, "functions.yaml"), proxy.url, { LOG_LEVEL: "warn" });
  return history;
}

async function publishAll(subject: string, count: number, job: (i: number) => Record<string, unknown>) {
  const published: Published[] = [];
  const sentAt = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const id = `e${i}`;
    sentAt.set(id, Date.now());
    await nats.js.publish(subject, JSON.stringify({ id, ...job(i) }));
    published.push({ id });
  }
  return { published, sentAt };
}

describe("a slow link between host and broker", () => {
  it("200 ms each way: runs longer than the ack wait are kept alive, nothing lost, nothing redelivered", async () => {
    proxy.shape({});
    const history = await hostBehindProxy("SLA", "1s");
    proxy.shape({ latencyMs: 200 });
    const { published, sentAt } = await publishAll("sla.in", 24, () => ({ ms: 1500 }));
    await waitFor(async () => judge(readHistory(history), published).lost.length === 0, {
      timeout: 30_000,
      interval: 250,
      message: "all ran",
    });
    const verdict = judge(readHistory(history), published);
    const info = await nats.jsm.consumers.info("SLA", "jetfn_slow");
    const starts = readHistory(history)
      .filter((line) => line.kind === "start")
      .map((line) => line.at - sentAt.get(line.id)!)
      .sort((a, b) => a - b);
    console.log(
      "slow link 200 ms:",
      JSON.stringify({
        ...verdict,
        lost: verdict.lost.length,
        redelivered: info.num_redelivered,
        startP50: percentile(starts, 50),
        startP99: percentile(starts, 99),
      }),
    );
    expect(verdict.lost).toEqual([]);
    expect(verdict.duplicates).toBe(0);
    expect(info.num_redelivered).toBe(0);
    // Each run waited at least a pull's round trip over the link.
    expect(starts[0]).toBeGreaterThanOrEqual(200);
  });

  it("1 Mbit/s: 4 KB events squeeze through, nothing lost, nothing redelivered", async () => {
    proxy.shape({});
    const history = await hostBehindProxy("SLB", "2s");
    proxy.shape({ bytesPerSecond: 125_000 });
    const started = Date.now();
    const { published } = await publishAll("slb.in", 100, () => ({ ms: 20, pad: "x".repeat(4000) }));
    await waitFor(async () => judge(readHistory(history), published).lost.length === 0, {
      timeout: 30_000,
      interval: 250,
      message: "all ran",
    });
    const seconds = (Date.now() - started) / 1000;
    const verdict = judge(readHistory(history), published);
    const info = await nats.jsm.consumers.info("SLB", "jetfn_slow");
    console.log(
      "slow link 1 Mbit/s:",
      JSON.stringify({ ...verdict, lost: verdict.lost.length, redelivered: info.num_redelivered, seconds }),
    );
    expect(verdict.lost).toEqual([]);
    expect(verdict.duplicates).toBe(0);
    expect(info.num_redelivered).toBe(0);
    // 400 KB at 125 KB/s: the link, not the host, set the pace.
    expect(seconds).toBeGreaterThanOrEqual(3);
  });
});

/**
 * Bad-day scenario 1 (issue 22), unordered and synchronous-call functions (the ordered one
 * is test/ordering/partition.test.ts): a `jetfn start` host reaches its broker through the
 * fault proxy, which blackholes the link for 15 s (no FIN, no RST: the sockets go quiet)
 * while events keep coming and a caller keeps calling, then heals. The host says it is not
 * ready while cut off, and is ready and answering calls again within 10 s of the heal;
 * every event published runs to success (the history checker's verdict: nothing lost,
 * duplicates counted). Prints its figures.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { killCliHosts, startCliHost } from "../support/cli.ts";
import { FaultProxy } from "../support/fault-proxy.ts";
import { judge, type Published, readHistory } from "../support/history.ts";
import { makeProject, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const PARTITIONED_MS = 15_000;

const nats = useNats();
let proxy: FaultProxy;
beforeAll(async () => {
  proxy = await FaultProxy.start({ port: Number(new URL(nats.server.url).port) });
});
afterAll(() => proxy?.close());
afterEach(killCliHosts);

async function ready(base: string): Promise<boolean> {
  return (await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined))?.status === 200;
}

/** A synchronous call of `work` over NATS: whether it answered in time. */
async function called(): Promise<boolean> {
  try {
    const reply = await nats.nc.request("jetfn.invoke.work", JSON.stringify({ id: "call", ms: 0 }), { timeout: 1000 });
    return !reply.headers?.hasError;
  } catch {
    return false;
  }
}

it("cut off 15 s and healed: not ready while cut off, ready and answering calls within 10 s of the heal, nothing lost", async () => {
  const history = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-history-")), "history.jsonl");
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: PART, subjects: ["part.in"] }
functions:
  - name: work
    handler: fns/record.ts
    stream: PART
    subjects: ["part.in"]
    invoke: true
    concurrency: 8
    timeout: 5s
    config: { history: ${JSON.stringify(history)} }
`,
    },
    { fixtures: "bad-day" },
  );
  const host = await startCliHost(path.join(dir, "functions.yaml"), proxy.url, { LOG_LEVEL: "warn" });
  expect(await called()).toBe(true);

  // Events keep coming, straight to the broker, before, during and after the cut.
  const published: Published[] = [];
  let publishing = true;
  const publisher = (async () => {
    for (let i = 0; publishing; i++) {
      const id = `e${i}`;
      await nats.js.publish("part.in", JSON.stringify({ id, ms: 200 }));
      published.push({ id });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  await waitFor(() => readHistory(history).some((line) => line.kind === "end"), { timeout: 10_000, message: "runs before the cut" });

  proxy.blackhole();
  const cutAt = Date.now();
  const notReady = await waitFor(async () => ((await ready(host.base)) ? undefined : Date.now() - cutAt), {
    timeout: PARTITIONED_MS,
    interval: 250,
    message: "not ready while cut off",
  });
  const callsWhileCut = await called();
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, cutAt + PARTITIONED_MS - Date.now())));
  proxy.heal();
  const healedAt = Date.now();
  const readyAgain = await waitFor(async () => ((await ready(host.base)) ? Date.now() - healedAt : undefined), {
    timeout: 10_000,
    interval: 100,
    message: "ready within 10 s of the heal",
  });
  const answering = await waitFor(async () => ((await called()) ? Date.now() - healedAt : undefined), {
    timeout: 10_000,
    interval: 100,
    message: "answering calls within 10 s of the heal",
  });
  await new Promise((resolve) => setTimeout(resolve, 2000));
  publishing = false;
  await publisher;

  await waitFor(() => judge(readHistory(history), published).lost.length === 0, {
    timeout: 30_000,
    interval: 250,
    message: "every event ran",
  });
  const verdict = judge(readHistory(history), published);
  const figures = {
    published: verdict.published,
    lost: verdict.lost.length,
    duplicates: verdict.duplicates,
    notReadyAfterMs: notReady,
    callAnsweredWhileCut: callsWhileCut,
    readyAfterHealMs: readyAgain,
    answeringAfterHealMs: answering,
  };
  console.log("partition, unordered and sync calls:", JSON.stringify(figures));
  expect(verdict.lost).toEqual([]);
  expect(callsWhileCut).toBe(false);
  // Duplicates only of what was in flight at the cut (concurrency 8).
  expect(verdict.duplicates).toBeLessThanOrEqual(8);
}, 90_000);

/**
 * Bad-day scenario 5 (issue 22): a rolling restart, as Kubernetes does a deploy. Three
 * `jetfn start` replicas under a steady 2,000 events a second (half to an unordered
 * function, half to an ordered one keyed by account); each replica in turn is sent SIGTERM,
 * waited for, and started again before the next. The history checker's verdict: nothing
 * lost, duplicates counted (a SIGTERM drains: none expected), no ordered key out of order
 * and no two runs of a key at once. Prints its figures.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { killCliHosts, startCliHost } from "../support/cli.ts";
import { judge, type Published, readHistory } from "../support/history.ts";
import { makeProject, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const RATE = 2000;
/** Events published at once: each of a different key, so a key's events are stored in publish order. */
const BATCH = 20;
const KEYS = 40;

const nats = useNats();
afterEach(killCliHosts);

it(`3 replicas restarted one after another under ${RATE} events a second: nothing lost, no key out of order`, async () => {
  const history = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-history-")), "history.jsonl");
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: ROLL, subjects: ["roll.>"] }
functions:
  - name: work
    handler: fns/record.ts
    stream: ROLL
    subjects: ["roll.work"]
    concurrency: 32
    config: { history: ${JSON.stringify(history)} }
  - name: ledger
    handler: fns/record.ts
    stream: ROLL
    subjects: ["roll.ledger"]
    concurrency: 32
    ordering: { key: key, partitions: 6, leaseTtl: 3s }
    config: { history: ${JSON.stringify(history)} }
`,
    },
    { fixtures: "bad-day" },
  );
  const config = path.join(dir, "functions.yaml");
  const env = { LOG_LEVEL: "warn" };
  const hosts = [
    await startCliHost(config, nats.server.url, env),
    await startCliHost(config, nats.server.url, env),
    await startCliHost(config, nats.server.url, env),
  ];

  const published: Published[] = [];
  let publishing = true;
  const publisher = (async () => {
    const started = Date.now();
    for (let n = 0; publishing; n += BATCH) {
      await Promise.all(
        Array.from({ length: BATCH }, (_, i) => {
          const index = n + i;
          const ordered = index % 2 === 1;
          const event = ordered ? { id: `l${index}`, key: `acct-${index % KEYS}` } : { id: `w${index}` };
          published.push(event);
          return nats.js.publish(ordered ? "roll.ledger" : "roll.work", JSON.stringify(event));
        }),
      );
      // Paced to RATE: the next batch when its time has come.
      const due = started + ((n + BATCH) / RATE) * 1000;
      if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
    }
  })();

  const restarts: number[] = [];
  await new Promise((resolve) => setTimeout(resolve, 2000));
  for (let i = 0; i < hosts.length; i++) {
    const begin = Date.now();
    hosts[i]!.cli.child.kill("SIGTERM");
    await hosts[i]!.cli.exited;
    hosts[i] = await startCliHost(config, nats.server.url, env);
    restarts.push(Date.now() - begin);
  }
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
    "rolling restart:",
    JSON.stringify({
      published: verdict.published,
      lost: verdict.lost.length,
      duplicates: verdict.duplicates,
      orderViolations: verdict.orderViolations.length,
      overlaps: verdict.overlaps.length,
      restartMs: restarts,
    }),
  );
  expect(verdict.lost).toEqual([]);
  expect(verdict.orderViolations).toEqual([]);
  expect(verdict.overlaps).toEqual([]);
}, 120_000);

/**
 * Warm at start (issue 21): the first JETFN_WARM_THREADS (4) `isolation: worker` functions of a
 * host start their handler thread before the host says it is ready, so their first events do
 * not wait for a thread to start; the others start theirs on their first event. A warmed
 * thread nothing used closes after the idle time, as any idle thread does. However many
 * threads are wanted at once, only as many start together as the machine has cores.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host;
let dir: string;
const NAMES = ["f1", "f2", "f3", "f4", "f5", "f6"];

beforeAll(async () => {
  dir = makeProject(
    {
      "functions.yaml": `
defaults: { isolation: worker }
streams:
  - { name: WARM, subjects: ["warm.>"], storage: memory }
functions:
${NAMES.map((name) => `  - { name: ${name}, handler: healthy.ts, stream: WARM, subjects: [warm.${name}] }`).join("\n")}
`,
    },
    { fixtures: "isolation" },
  );
  ({ host } = await startHost(dir, nats.server.url, {}, { isolation: { idleMs: 3000 } }));
});

afterAll(async () => {
  await host?.shutdown();
});

/** Each function's handler thread state, as `/functions` shows it. */
function threads(of = host): Record<string, unknown> {
  return Object.fromEntries(of.functions().map((fn) => [fn.name, (fn as { thread?: { state: string } }).thread?.state]));
}

it("starts the first four worker functions' threads before ready, the others' on their first event; unused ones close when idle", async () => {
  expect(host.ready()).toBe(true);
  expect(threads()).toEqual({ f1: "running", f2: "running", f3: "running", f4: "running", f5: "idle", f6: "idle" });

  await nats.js.publish("warm.f5", JSON.stringify({ n: 1 }));
  await waitFor(() => threads().f5 === "running");

  // Nothing used f1 to f4: after the idle time (3 s here), their threads close.
  await waitFor(() => ["f1", "f2", "f3", "f4"].every((name) => threads()[name] === "idle"), { timeout: 10_000 });
});

it("warms as many as JETFN_WARM_THREADS says: 1 here", async () => {
  const { host: other } = await startHost(dir, nats.server.url, { JETFN_WARM_THREADS: "1" });
  try {
    expect(threads(other)).toEqual({ f1: "running", f2: "idle", f3: "idle", f4: "idle", f5: "idle", f6: "idle" });
  } finally {
    await other.shutdown();
  }
});

it("starts as many handler threads at once as the machine has cores; the runs of the others wait their turn", async () => {
  const names = Array.from({ length: 6 }, (_, i) => `s${i}`);
  const project = makeProject(
    {
      "functions.yaml": `
defaults: { isolation: worker }
streams:
  - { name: STARTS, subjects: ["starts.>"], storage: memory }
functions:
${names.map((name) => `  - { name: ${name}, handler: slow-load.ts, stream: STARTS, subjects: [starts.${name}] }`).join("\n")}
`,
    },
    { fixtures: "thread-starts" },
  );
  const { host: other, baseUrl } = await startHost(project, nats.server.url, { JETFN_WARM_THREADS: "0" });
  // The host loaded each handler once before it started, to check it: not counted.
  const sent = Date.now();
  try {
    for (const name of names) await nats.js.publish(`starts.${name}`, JSON.stringify({ n: 1 }));
    const succeeded = async () => {
      const counts = await Promise.all(
        names.map((name) => scrape(baseUrl, `jetfn_invocations_total{function="${name}",outcome="success"}`)),
      );
      return counts.every((count) => count === 1);
    };
    await waitFor(succeeded, { timeout: 30_000 });
  } finally {
    await other.shutdown();
  }
  // Each thread's module load, as [began, ended]: at no moment did more than `cores` run.
  const loads = readFileSync(path.join(project, "loads.log"), "utf8")
    .trim()
    .split("\n")
    .map((line) => line.split(" ").map(Number) as [number, number])
    .filter(([began]) => began >= sent);
  expect(loads).toHaveLength(names.length);
  const most = Math.max(...loads.map(([began]) => loads.filter(([from, to]) => from <= began && began < to).length));
  expect(most).toBeLessThanOrEqual(availableParallelism());
});

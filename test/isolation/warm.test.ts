/**
 * Warm at start (issue 21): the first JETFN_WARM_THREADS (4) `isolation: worker` functions of a
 * host start their handler thread before the host says it is ready, so their first events do
 * not wait for a thread to start; the others start theirs on their first event. A warmed
 * thread nothing used closes after the idle time, as any idle thread does.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";
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

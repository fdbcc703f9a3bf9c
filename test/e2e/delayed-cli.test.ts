/**
 * Delayed events from the CLI, as a producer without jetfn's SDK would schedule them:
 * `jetfn publish --delay|--at`, `jetfn delayed list` and `jetfn delayed cancel`, with a
 * `jetfn start` host moving them; and the usage errors for a bad delay.
 */
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { killCliHosts, runCli, startCliHost } from "../support/cli.ts";
import { makeProject, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
afterEach(killCliHosts);

async function jetfn(args: string[]): Promise<{ code: number | string; output: string }> {
  const cli = runCli(args, { NATS_URL: nats.server.url });
  const code = await cli.exited;
  return { code, output: cli.output() };
}

it("publish --delay and --at schedule events, delayed list shows them, cancel keeps one from arriving", async () => {
  await nats.jsm.streams.add({ name: "DCLI", subjects: ["dcli.>"] });
  const dir = makeProject(
    { "functions.yaml": "functions:\n  - name: nothing\n    handler: fns/tick.ts\n    schedule: { cron: '0 0 1 1 *' }\n" },
    { fixtures: "schedule" },
  );
  await startCliHost(path.join(dir, "functions.yaml"), nats.server.url, { LOG_LEVEL: "warn" });

  // Due well after the next three CLI runs (each starts a Node process: about a second on a busy machine).
  const soon = await jetfn(["publish", "dcli.soon", '{"n":1}', "--delay", "8s", "--header", "X-Kind=soon"]);
  expect(soon.code).toBe(0);
  const soonAck = JSON.parse(soon.output) as { stream: string; id: string };
  expect(soonAck).toMatchObject({ stream: "JETFN_DELAYED", id: expect.stringMatching(/^\d+$/) });
  const laterAt = Date.now() + 9000;
  const later = JSON.parse((await jetfn(["publish", "dcli.later", '{"n":2}', "--at", new Date(laterAt).toISOString()])).output) as {
    id: string;
  };

  const list = await jetfn(["delayed", "list", "--json"]);
  expect(list.code).toBe(0);
  const listed = list.output
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { id: string; target: string; headers: Record<string, string> });
  expect(listed.map((event) => [event.id, event.target])).toEqual([
    [soonAck.id, "dcli.soon"],
    [later.id, "dcli.later"],
  ]);
  expect(listed[0]!.headers).toMatchObject({ "X-Kind": "soon" });

  const cancel = await jetfn(["delayed", "cancel", later.id]);
  expect(cancel.code).toBe(0);
  expect(cancel.output).toContain(`cancelled ${later.id}`);

  const arrived = await waitFor(() => nats.jsm.streams.getMessage("DCLI", { last_by_subj: "dcli.soon" }), {
    timeout: 15_000,
    interval: 100,
  });
  expect(arrived.json()).toEqual({ n: 1 });
  expect(arrived.header.get("X-Kind")).toBe("soon");
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, laterAt + 2000 - Date.now())));
  expect(await nats.jsm.streams.getMessage("DCLI", { last_by_subj: "dcli.later" })).toBeNull();
  expect((await jetfn(["delayed", "cancel", later.id])).code).toBe(1);
});

it("refuses a negative delay, one over a year, and both --delay and --at, with exit 2", async () => {
  for (const args of [
    ["--delay", "-5s"],
    ["--delay", "9000h"],
    ["--delay", "1s", "--at", "2030-01-01T00:00:00Z"],
  ]) {
    const result = await jetfn(["publish", "dcli.x", "{}", ...args]);
    expect(result.code, args.join(" ")).toBe(2);
    expect(result.output).toMatch(/jetfn: publish: /);
  }
});

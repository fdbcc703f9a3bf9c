/**
 * The CLI as a user runs it: `jetfn validate`, `jetfn publish`, and `jetfn start` stopped
 * by SIGTERM with work in flight.
 */
import path from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { afterEach, describe, expect, it } from "vitest";
import { killCliHosts, runCli, startCliHost } from "../support/cli.ts";
import { makeProject, REPO_ROOT, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const project = () =>
  makeProject(
    {
      "functions.yaml": `
streams:
  - { name: JOBS, subjects: ["jobs.>"] }
  - { name: DONE, subjects: ["done.>"] }
functions:
  - { name: work, handler: functions/work.ts, stream: JOBS, subjects: [jobs.work], concurrency: 4, timeout: 20s }
  - { name: stuck, handler: functions/stuck.ts, stream: JOBS, subjects: [jobs.stuck], timeout: 20s }
`,
    },
    { fixtures: "cli/start" },
  );

const nats = useNats();

afterEach(killCliHosts);

const startCli = (dir: string, env: Record<string, string> = {}) => startCliHost(path.join(dir, "functions.yaml"), nats.server.url, env);

async function inflight(base: string, fn: string): Promise<number> {
  const fns = (await (await fetch(`${base}/functions`)).json()) as { name: string; inflight: number }[];
  return fns.find((f) => f.name === fn)?.inflight ?? 0;
}

describe("jetfn validate", () => {
  it("accepts the shipped example", async () => {
    const cli = runCli(["validate"], {});
    expect(await cli.exited).toBe(0);
    expect(cli.output()).toContain("4 function(s), 1 stream(s), 1 route(s): ok");
  });

  it("exits 2 naming file, line and key of a bad functions.yaml", async () => {
    const dir = makeProject(
      { "functions.yaml": "functions:\n  - name: a\n    handler: a.ts\n    stream: S\n    subjects: [x]\n    timeout: ten\n" },
      { fixtures: "cli/validate" },
    );
    const cli = runCli(["validate"], { JETFN_CONFIG: path.join(dir, "functions.yaml") });
    expect(await cli.exited).toBe(2);
    expect(cli.output()).toMatch(/functions\.yaml:6:14 functions\[0\]\.timeout: expected a duration like 10s, got "ten"/);
  });

  it("exits 2 on a bad environment variable, naming it", async () => {
    const cli = runCli(["validate"], { JETFN_HTTP_PORT: "eighty" });
    expect(await cli.exited).toBe(2);
    expect(cli.output()).toContain("JETFN_HTTP_PORT");
  });

  it("exits 2 on an unknown command", async () => {
    const cli = runCli(["launch"], {});
    expect(await cli.exited).toBe(2);
    expect(cli.output()).toContain("unknown command: launch");
  });
});

describe("jetfn start and SIGTERM", () => {
  it("lets in-flight invocations finish, acks them, and exits 0", async () => {
    const { cli, base } = await startCli(project());
    await Promise.all([1, 2, 3, 4].map((id) => nats.js.publish("jobs.work", JSON.stringify({ id }))));
    await waitFor(async () => (await inflight(base, "work")) === 4, { message: "4 invocations in flight" });
    cli.child.kill("SIGTERM");
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 503, { message: "not ready while draining" });
    expect(await cli.exited).toBe(0);
    expect((await nats.jsm.streams.info("DONE")).state.messages).toBe(4);
    const info = await nats.jsm.consumers.info("JOBS", "jetfn_work");
    expect([info.num_pending, info.num_ack_pending, info.num_redelivered]).toEqual([0, 0, 0]);
    expect(cli.output()).toContain('"msg":"stopped"');
  });

  it("aborts and naks what outlives the grace period, so it is redelivered at once", async () => {
    const { cli, base } = await startCli(project(), { JETFN_SHUTDOWN_TIMEOUT: "300ms" });
    await nats.js.publish("jobs.stuck", JSON.stringify({ id: 5 }));
    await waitFor(async () => (await inflight(base, "stuck")) === 1);
    cli.child.kill("SIGTERM");
    expect(await cli.exited).toBe(0);
    expect(cli.output()).toContain("grace period over");
    // Nak'd, not left to its 25 s ack wait: the next pull gets it straight away.
    const consumer = await jetstream(nats.nc).consumers.get("JOBS", "jetfn_stuck");
    const started = Date.now();
    const again = await consumer.next({ expires: 10_000 });
    expect(again?.json()).toEqual({ id: 5 });
    expect(again?.info.deliverySequence).toBe(2); // the second delivery of that message
    // nats-server 2.9.10 leaves the delivery count of a nak without delay unchanged, so
    // a shutdown does not spend one of the message's attempts.
    expect(again?.info.deliveryCount).toBe(1);
    expect(Date.now() - started).toBeLessThan(5000);
    again?.ack();
  });

  it("exits at once on a second signal", async () => {
    const { cli, base } = await startCli(project());
    await nats.js.publish("jobs.stuck", JSON.stringify({ id: 6 }));
    await waitFor(async () => (await inflight(base, "stuck")) === 1);
    cli.child.kill("SIGTERM");
    await waitFor(() => cli.output().includes("signal received"));
    cli.child.kill("SIGTERM");
    expect(await cli.exited).toBe(1);
  });
});

describe("jetfn publish", () => {
  it("prints the PubAck and rejects invalid JSON with exit 2", async () => {
    const ok = runCli(["publish", "jobs.none", '{"a":1}'], { NATS_URL: nats.server.url });
    expect(await ok.exited).toBe(0);
    expect(JSON.parse(ok.output().trim())).toMatchObject({ stream: "JOBS", duplicate: false });
    const bad = runCli(["publish", "jobs.none", "{a:1}"], { NATS_URL: nats.server.url });
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain("not valid JSON");
  });
});

it("REPO_ROOT holds the shipped example", () => {
  expect(path.basename(path.join(REPO_ROOT, "functions.yaml"))).toBe("functions.yaml");
});

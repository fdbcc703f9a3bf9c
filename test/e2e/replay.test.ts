/**
 * `jetfn replay` and `jetfn dlq redrive --only` as an operator runs them, the day after an
 * incident: a bug dead-letters some events, the fix is deployed (the host restarted with a
 * changed config), and the function alone runs the past events again, once.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import type { JetStreamManager } from "@nats-io/jetstream";
import { headers, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Call } from "../fixtures/replay/record.ts";
import { type CliProcess, killCliHosts, runCli, startCliHost } from "../support/cli.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
import { client, makeProject } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const EVENTS = 100;
/** The events the bug fails: ids 5, 15, ..., 95. */
const BROKEN = Array.from({ length: 10 }, (_, i) => i * 10 + 5);

const yaml = (failIds: number[]) => `
streams:
  - { name: RP, subjects: ["rp.>"] }
  - { name: RPCALLS, subjects: ["calls.>"], storage: memory }
functions:
  - { name: picky, handler: record.ts, stream: RP, subjects: [rp.in], config: { failIds: [${failIds.join(", ")}] } }
  - { name: bystander, handler: record.ts, stream: RP, subjects: [rp.in] }
`;

let server: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
let configFile: string;
let host: CliProcess | undefined;
const calls: Record<"picky" | "bystander", Call[]> = { picky: [], bystander: [] };
const replays = (fn: "picky" | "bystander") => calls[fn].filter((c) => c.replay);

beforeAll(async () => {
  server = await startNatsServer();
  ({ nc, jsm } = await client(server.url));
  nc.subscribe("calls.>", {
    callback: (_err: Error | null, msg: Msg) => {
      calls[msg.subject.slice("calls.".length) as "picky" | "bystander"].push(msg.json<Call>());
    },
  });
  const dir = makeProject({ "functions.yaml": yaml(BROKEN) }, { fixtures: "replay" });
  configFile = path.join(dir, "functions.yaml");
  host = (await startCliHost(configFile, server.url)).cli;
});

afterAll(async () => {
  await killCliHosts();
  await nc?.close();
  await server?.stop();
});

async function jetfn(...args: string[]): Promise<{ code: number | string; output: string }> {
  const run = runCli(args, { NATS_URL: server.url, JETFN_CONFIG: configFile });
  const code = await run.exited;
  return { code, output: run.output() };
}

async function deadLetters(): Promise<number> {
  const info = await jsm.streams.info("JETFN_DLQ", { subjects_filter: "jetfn.dlq.picky" });
  return info.state.subjects?.["jetfn.dlq.picky"] ?? 0;
}

/** Nothing of picky's replays is left to run: none pending, none un-acked. */
async function replaysSettled(): Promise<void> {
  await waitFor(
    async () => {
      const info = await jsm.consumers.info("JETFN_REPLAY", "jetfn_replay_picky");
      return info.num_pending === 0 && info.num_ack_pending === 0;
    },
    { message: "picky's replays settled" },
  );
}

it("replays every event through the fixed function alone, once, and a second run re-runs nothing", async () => {
  const { js } = await client(server.url);
  for (let id = 1; id <= EVENTS; id++) {
    const h = headers();
    h.set("X-Note", `note ${id}`);
    expect((await js.publish("rp.in", JSON.stringify({ id }), { headers: h })).seq).toBe(id);
  }
  await waitFor(
    async () =>
      calls.picky.length === EVENTS - BROKEN.length && calls.bystander.length === EVENTS && (await deadLetters()) === BROKEN.length,
    {
      message: "90 run, 10 dead-lettered",
      timeout: 20_000,
    },
  );

  // Still broken: one event replayed under a key of its own fails again, and its dead
  // letter says it was a replay of RP:5.
  const probe = await jetfn("replay", "picky", "--from-seq", "5", "--until", "5", "--key", "probe");
  expect(probe.code, probe.output).toBe(0);
  expect(probe.output).toContain("replayed to picky (RP up to #5): read 1, published 1, duplicates skipped 0");
  await waitFor(async () => (await deadLetters()) === BROKEN.length + 1, { message: "the probe dead-lettered" });
  const letter = await jsm.streams.getMessage("JETFN_DLQ", { last_by_subj: "jetfn.dlq.picky" });
  expect(letter!.header.get("Jetfn-Replay-Of")).toBe("RP:5");
  expect(letter!.header.get("Jetfn-Subject")).toBe("rp.in");
  expect(letter!.header.get("Jetfn-Stream")).toBe("JETFN_REPLAY");
  expect(letter!.header.get("X-Note")).toBe("note 5");

  // The fix: the host restarted with the bug gone from its config.
  host!.child.kill("SIGTERM");
  expect(await host!.exited).toBe(0);
  writeFileSync(configFile, yaml([]));
  host = (await startCliHost(configFile, server.url)).cli;

  const dry = await jetfn("replay", "picky", "--from-seq", "1", "--dry-run");
  expect(dry.code, dry.output).toBe(0);
  expect(dry.output).toContain(`dry run: ${EVENTS} event(s) of RP would be replayed to picky (RP up to #${EVENTS}); nothing published`);

  const replay = await jetfn("replay", "picky", "--from-seq", "1");
  expect(replay.code, replay.output).toBe(0);
  expect(replay.output).toContain(`replayed to picky (RP up to #${EVENTS}): read ${EVENTS}, published ${EVENTS}, duplicates skipped 0`);
  await waitFor(() => replays("picky").length === EVENTS, { message: "all 100 replayed", timeout: 20_000 });
  await replaysSettled();
  const replayed = replays("picky").sort((a, b) => a.id - b.id);
  expect(replayed.map((c) => c.id)).toEqual(Array.from({ length: EVENTS }, (_, i) => i + 1)); // each once, the 10 included
  for (const call of replayed) {
    expect(call).toMatchObject({
      subject: "rp.in",
      replay: { of: { stream: "RP", seq: call.id } },
      note: `note ${call.id}`,
      replayOfHeader: `RP:${call.id}`,
    });
  }
  expect(calls.picky.filter((c) => !c.replay)).toHaveLength(EVENTS - BROKEN.length);
  expect(calls.bystander).toHaveLength(EVENTS);
  expect(replays("bystander")).toEqual([]);

  // The same replay again: every copy is a duplicate, so nothing is stored and nothing runs.
  const stored = (await jsm.streams.info("JETFN_REPLAY")).state.last_seq;
  const again = await jetfn("replay", "picky", "--from-seq", "1");
  expect(again.code, again.output).toBe(0);
  expect(again.output).toContain(`read ${EVENTS}, published 0, duplicates skipped ${EVENTS}`);
  expect((await jsm.streams.info("JETFN_REPLAY")).state.last_seq).toBe(stored);
  await replaysSettled();
  expect(replays("picky")).toHaveLength(EVENTS);
  expect(calls.bystander).toHaveLength(EVENTS);
  await js.publish("rp.in", JSON.stringify({ id: 0 })); // a live event still reaches both
  await waitFor(() => calls.bystander.length === EVENTS + 1 && calls.picky.some((c) => c.id === 0));
});

it("redrives dead letters to their function alone with dlq redrive --only, as replays of the original events", async () => {
  const before = { picky: replays("picky").length, bystander: calls.bystander.length };
  const redrive = await jetfn("dlq", "redrive", "picky", "--only");
  expect(redrive.code, redrive.output).toBe(0);
  expect(redrive.output).toContain(`${BROKEN.length + 1} dead letter(s) of picky sent back to picky alone`);
  expect(redrive.output).not.toContain("also receive");
  await waitFor(() => replays("picky").length === before.picky + BROKEN.length + 1, { message: "the dead letters ran again" });
  await replaysSettled();
  const redriven = replays("picky")
    .slice(before.picky)
    .sort((a, b) => a.id - b.id);
  // The probe's dead letter (a replay of RP:5) is a replay of RP:5 again.
  expect(redriven.map((c) => c.id)).toEqual([...BROKEN, 5].sort((a, b) => a - b));
  for (const call of redriven)
    expect(call).toMatchObject({ subject: "rp.in", replay: { of: { stream: "RP", seq: call.id } }, note: `note ${call.id}` });
  expect(calls.bystander).toHaveLength(before.bystander);
  expect(await deadLetters()).toBe(0);
});

it("exits 2 on usage errors and 1 when the server cannot be reached, naming the function and the server", async () => {
  const usage = async (...args: string[]) => {
    const run = await jetfn("replay", ...args);
    expect(run.code, run.output).toBe(2);
    return run.output;
  };
  expect(await usage()).toContain("replay needs the <function>");
  expect(await usage("nobody", "--from-seq", "1")).toContain("no function named nobody");
  expect(await usage("picky")).toContain("--from-seq <n> or --since <time|duration>");
  expect(await usage("picky", "--from-seq", "1", "--since", "1h")).toContain("one of them");
  expect(await usage("picky", "--from-seq", "0")).toContain("--from-seq expects a positive integer, got 0");
  expect(await usage("picky", "--since", "yesterday")).toContain("--since expects a time");
  expect(await usage("picky", "--from-seq", "1", "--subject", "other.in")).toContain(
    "--subject other.in is not within picky's subjects (rp.in)",
  );

  const since = await jetfn("replay", "picky", "--since", "1h", "--limit", "3", "--dry-run");
  expect(since.code, since.output).toBe(0);
  expect(since.output).toContain("dry run: 3 event(s) of RP would be replayed to picky (RP up to #3)");

  const down = runCli(["replay", "picky", "--from-seq", "1"], { NATS_URL: "nats://127.0.0.1:1", JETFN_CONFIG: configFile });
  expect(await down.exited).toBe(1);
  expect(down.output()).toContain("replay of picky at nats://127.0.0.1:1: cannot connect to NATS at nats://127.0.0.1:1");
});

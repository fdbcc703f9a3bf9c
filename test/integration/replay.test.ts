/**
 * Replays in a running host, in both isolation modes: what the handler sees of a replay's
 * copy (`ctx.subject`, `ctx.replay`, `ctx.seq`, headers), that no other function runs it,
 * and that replays and live events together stay within the function's concurrency.
 */
import type { Msg } from "@nats-io/transport-node";
import { headers } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { replayEvents } from "../../runtime/nats/replay-copies.ts";
import type { Call } from "../fixtures/replay/record.ts";
import { maxOverlap } from "../support/overlap.ts";
import { type LogCapture, makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const files = {
  "functions.yaml": `
streams:
  - { name: RI, subjects: ["ri.>"], storage: memory }
  - { name: RICALLS, subjects: ["calls.>"], storage: memory }
functions:
  - { name: seen, handler: record.ts, stream: RI, subjects: [ri.seen] }
  - { name: other, handler: record.ts, stream: RI, subjects: ["ri.*"] }
  - { name: narrow, handler: record.ts, stream: RI, subjects: [ri.narrow], concurrency: 2, config: { sleepMs: 100 } }
`,
};

const nats = useNats();
let host: Host;
let logs: LogCapture;
const calls: Record<string, Call[]> = {};

beforeAll(async () => {
  nats.nc.subscribe("calls.>", {
    callback: (_err: Error | null, msg: Msg) => {
      (calls[msg.subject.slice("calls.".length)] ??= []).push(msg.json<Call>());
    },
  });
  ({ host, logs } = await startHost(makeProject(files, { fixtures: "replay" }), nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

const fn = (name: string) => host.config.functions.find((f) => f.name === name)!;
const of = (name: string) => calls[name] ?? [];

it("runs a replay's copy in its function alone, with the original subject and ctx.replay", async () => {
  const h = headers();
  h.set("X-Note", "kept");
  const seqs: number[] = [];
  for (const id of [1, 2]) seqs.push((await nats.js.publish("ri.seen", JSON.stringify({ id }), { headers: h })).seq);
  await waitFor(() => of("seen").length === 2 && of("other").filter((c) => c.subject === "ri.seen").length === 2);
  for (const call of of("seen")) {
    expect(call.replay).toBeUndefined();
    expect(call.subject).toBe("ri.seen");
  }

  const counts = await replayEvents(nats, fn("seen"), { from: { seq: seqs[0]! } }, host.log);
  expect(counts).toMatchObject({ total: 2, read: 2, published: 2, duplicates: 0 });
  await waitFor(() => of("seen").length === 4, { message: "both replayed" });
  const replayed = of("seen")
    .slice(2)
    .sort((a, b) => a.id - b.id);
  expect(replayed).toMatchObject([
    { id: 1, subject: "ri.seen", replay: { of: { stream: "RI", seq: seqs[0] } }, note: "kept", replayOfHeader: `RI:${seqs[0]}` },
    { id: 2, subject: "ri.seen", replay: { of: { stream: "RI", seq: seqs[1] } }, note: "kept", replayOfHeader: `RI:${seqs[1]}` },
  ]);
  // ctx.seq is the copy's own sequence, in JETFN_REPLAY.
  const stored = (await nats.jsm.streams.info("JETFN_REPLAY")).state;
  expect(replayed.map((c) => c.seq).every((seq) => seq >= 1 && seq <= stored.last_seq)).toBe(true);
  // A work queue: copies are gone once run.
  await waitFor(async () => (await nats.jsm.streams.info("JETFN_REPLAY", { subjects_filter: "jetfn.replay.seen" })).state.messages === 0);
  expect(of("other").filter((c) => c.replay)).toEqual([]);
  expect(logs.find((l) => l.msg === "created consumer" && l.durable === "jetfn_replay_seen")).toMatchObject({ stream: "JETFN_REPLAY" });
});

it("keeps replays and live events together within the function's concurrency", async () => {
  const live = 40;
  const seqs: number[] = [];
  for (let id = 1; id <= live; id++) seqs.push((await nats.js.publish("ri.narrow", JSON.stringify({ id }))).seq);
  const counts = await replayEvents(nats, fn("narrow"), { from: { seq: seqs[0]! }, limit: 10 }, host.log);
  expect(counts).toMatchObject({ read: 10, published: 10 });
  await waitFor(() => of("narrow").length === live + 10, { message: "live events and replays ran", timeout: 20_000 });
  const runs = of("narrow");
  // Replays started while live events were still waiting: the two loops shared the room.
  const lastLive = Math.max(...runs.filter((c) => !c.replay).map((c) => c.start));
  expect(runs.filter((c) => c.replay).some((c) => c.start < lastLive)).toBe(true);
  expect(maxOverlap(runs)).toBeLessThanOrEqual(2);
});

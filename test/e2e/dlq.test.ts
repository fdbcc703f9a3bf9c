/**
 * `jetfn dlq list` and `jetfn dlq redrive` as an operator runs them: see the dead letters,
 * fix the handler, send them back, watch them succeed.
 */
import path from "node:path";
import { headers, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { FIXED_SUBJECT, type Fix, type Succeeded } from "../fixtures/dlq/fragile.ts";
import { runCli } from "../support/cli.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
import { client, makeProject, startHost } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

/**
 * The fix switch, answered to test/fixtures/dlq/fragile.ts's requests on FIXED_SUBJECT, and
 * what got through, as fragile.ts published it to calls.fragile.
 */
const state: { fixed: boolean; succeeded: Succeeded[] } = { fixed: false, succeeded: [] };

let server: NatsServer;
/** Answers fragile.ts and collects what it publishes. */
let control: NatsConnection;
let host: Host;
let configFile: string;

beforeAll(async () => {
  server = await startNatsServer();
  ({ nc: control } = await client(server.url));
  control.subscribe(FIXED_SUBJECT, {
    callback: (_err: Error | null, msg: Msg) => {
      msg.respond(JSON.stringify({ fixed: state.fixed } satisfies Fix));
    },
  });
  control.subscribe("calls.fragile", {
    callback: (_err: Error | null, msg: Msg) => {
      state.succeeded.push(msg.json<Succeeded>());
    },
  });
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: DL, subjects: ["dl.>"], storage: memory }
  - { name: DLCALLS, subjects: ["calls.>"], storage: memory }
functions:
  - { name: fragile, handler: fragile.ts, stream: DL, subjects: [dl.in], config: { natsUrl: ${JSON.stringify(server.url)} } }
  - { name: audit, handler: audit.ts, stream: DL, subjects: [dl.in] }
`,
    },
    { fixtures: "dlq" },
  );
  configFile = path.join(dir, "functions.yaml");
  ({ host } = await startHost(dir, server.url));
});

afterAll(async () => {
  await host?.shutdown();
  await control?.close();
  await server?.stop();
});

async function cli(...args: string[]) {
  const run = runCli(["dlq", ...args], { NATS_URL: server.url, JETFN_CONFIG: configFile });
  const code = await run.exited;
  return { code, output: run.output() };
}

it("lists dead letters, and redrives one, then the rest, to a fixed handler", async () => {
  const { nc, js, jsm } = await client(server.url);
  try {
    const h = headers();
    h.set("X-Note", "kept");
    for (const n of [1, 2, 3]) await js.publish("dl.in", JSON.stringify({ n }), { headers: h });
    await waitFor(async () => (await jsm.streams.info("JETFN_DLQ")).state.messages === 3);

    const listed = await cli("list", "fragile");
    expect(listed.code).toBe(0);
    const lines = listed.output.trim().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(
      /^JETFN_DLQ#1 fragile dl\.in \(DL#1\) \S+ deliveries=1 non-retryable: NonRetryableError: bug in fragile, event 1$/,
    );

    const json = await cli("list", "--json", "--limit", "2");
    const letters = json.output
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { dlqSeq: number; streamSeq: number; reason: string });
    expect(letters.map((l) => [l.dlqSeq, l.streamSeq, l.reason])).toEqual([
      [1, 1, "non-retryable"],
      [2, 2, "non-retryable"],
    ]);

    state.fixed = true;
    const one = await cli("redrive", "fragile", "--seq", "2");
    expect(one.code).toBe(0);
    expect(one.output).toContain("redriven JETFN_DLQ#2 fragile dl.in (DL#2)");
    expect(one.output).toContain("note: audit also receive these subjects and will see them again");
    await waitFor(() => state.succeeded.length === 1);
    expect(state.succeeded[0]).toEqual({ body: '{"n":2}', note: "kept" }); // original bytes and headers
    expect((await cli("list", "fragile")).output.trim().split("\n")).toHaveLength(2);

    const rest = await cli("redrive", "fragile");
    expect(rest.output).toContain("2 dead letter(s) of fragile sent back");
    await waitFor(() => state.succeeded.length === 3);
    expect(state.succeeded.map((s) => s.body).sort()).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
    expect((await cli("list", "fragile")).output.trim()).toBe("");
    expect((await jsm.streams.info("JETFN_DLQ")).state.messages).toBe(0);
  } finally {
    await nc.close();
  }
});

it("exits 2 on usage errors", async () => {
  expect((await cli("redrive")).code).toBe(2);
  expect((await cli("list", "nobody")).output).toContain("no function named nobody");
  expect((await cli("prune")).output).toContain("unknown dlq action: prune");
});

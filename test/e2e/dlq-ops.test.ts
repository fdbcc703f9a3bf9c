/**
 * `jetfn dlq show`, `jetfn dlq purge` and `dlq list --reason/--since` as an operator runs
 * them, on dead letters a running host wrote: one a handler rejected, one whose body is not
 * JSON (`undecodable`). Bodies come back byte for byte.
 */
import { execFileSync, spawn } from "node:child_process";
import path from "node:path";
import { headers } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { runCli } from "../support/cli.ts";
import { makeProject, REPO_ROOT, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host | undefined;
let configFile: string;

beforeAll(async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: ORD, subjects: ["ord.>"], storage: memory }
functions:
  - { name: reject, handler: reject.ts, stream: ORD, subjects: [ord.reject] }
  - { name: other, handler: reject.ts, stream: ORD, subjects: [ord.other] }
  - { name: listed, handler: reject.ts, stream: ORD, subjects: [ord.listed] }
  - { name: purged, handler: reject.ts, stream: ORD, subjects: [ord.purged] }
`,
    },
    { fixtures: "dlq-ops" },
  );
  configFile = path.join(dir, "functions.yaml");
  ({ host } = await startHost(dir, nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

const env = () => ({ NATS_URL: nats.server.url, JETFN_CONFIG: configFile });

async function dlq(...args: string[]) {
  const run = runCli(["dlq", ...args], env());
  const code = await run.exited;
  return { code, output: run.output() };
}

/** How many dead letters of `fn` the JETFN_DLQ stream holds. */
async function stored(fn: string): Promise<number> {
  const subject = `jetfn.dlq.${fn}`;
  const info = await nats.jsm.streams.info("JETFN_DLQ", { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

/** Publishes `bodies` to ord.<fn> and waits until all are dead letters of `fn`. */
async function deadLetter(fn: string, bodies: (string | Uint8Array)[], note?: string): Promise<void> {
  const before = await stored(fn);
  for (const body of bodies) {
    const h = headers();
    if (note) h.set("X-Note", note);
    await nats.js.publish(`ord.${fn}`, body, { headers: h });
  }
  await waitFor(async () => (await stored(fn)) === before + bodies.length, { message: `${bodies.length} dead letter(s) of ${fn}` });
}

interface Listed {
  dlqSeq: number;
  streamSeq: number;
  reason: string;
  error: string;
}

async function list(...args: string[]): Promise<Listed[]> {
  const { code, output } = await dlq("list", "--json", ...args);
  expect(code, output).toBe(0);
  return output.trim() === ""
    ? []
    : output
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as Listed);
}

/** A moment strictly between the dead letters written before and after it. */
async function boundary(): Promise<Date> {
  const at = new Date();
  await waitFor(() => Date.now() > at.getTime() + 2);
  return at;
}

const JSON_BODY = '{"id":"a-1","amount":12.5,"tags":["x","y"]}';
const BINARY_BODY = Uint8Array.from([...Array.from({ length: 16 }, (_, i) => i), ...new TextEncoder().encode("jetfn dlq"), 0xff]);

describe("jetfn dlq show", () => {
  it("prints every header, the failure, the origin, and the body as pretty JSON or a hex dump; --json has the exact bytes", async () => {
    await deadLetter("reject", [JSON_BODY], "kept");
    await deadLetter("reject", [BINARY_BODY]);
    const letters = await list("reject");
    const rejected = letters.find((l) => l.reason === "non-retryable")!;
    const undecodable = letters.find((l) => l.reason === "undecodable")!;
    expect([rejected, undecodable].every(Boolean)).toBe(true);

    const text = await dlq("show", "reject", String(rejected.dlqSeq));
    expect(text.code, text.output).toBe(0);
    expect(text.output).toContain(`dead letter JETFN_DLQ#${rejected.dlqSeq} of reject\n`);
    expect(text.output).toContain("  failure     non-retryable: NonRetryableError: rejected order a-1\n");
    expect(text.output).toContain(`  original    ord.reject, stream ORD seq ${rejected.streamSeq}\n`);
    expect(text.output).toContain("  deliveries  1\n");
    expect(text.output).toMatch(/\n {2}failed at {3}\d{4}-\d\d-\d\dT[\d:.]+Z\n/);
    for (const header of [
      "X-Note: kept",
      "Jetfn-Function: reject",
      "Jetfn-Subject: ord.reject",
      "Jetfn-Stream: ORD",
      "Jetfn-Reason: non-retryable",
    ]) {
      expect(text.output).toContain(`\n  ${header}\n`);
    }
    expect(text.output).toContain(`\n  Nats-Msg-Id: dlq:reject:ORD:${rejected.streamSeq}\n`);
    expect(text.output).toContain(
      `\nbody: ${JSON_BODY.length} bytes, JSON (pretty-printed)\n{\n  "id": "a-1",\n  "amount": 12.5,\n  "tags": [\n    "x",\n    "y"\n  ]\n}\n`,
    );

    const json = await dlq("show", "reject", String(rejected.dlqSeq), "--json");
    expect(json.code, json.output).toBe(0);
    const shown = JSON.parse(json.output) as {
      body: string;
      json: unknown;
      headers: Record<string, string[]>;
      reason: string;
      subject: string;
      deliveries: number;
    };
    expect(Buffer.from(shown.body, "base64").toString("utf8")).toBe(JSON_BODY); // byte for byte
    expect(shown.json).toEqual(JSON.parse(JSON_BODY));
    expect(shown.headers["X-Note"]).toEqual(["kept"]);
    expect(shown.headers["Jetfn-Reason"]).toEqual(["non-retryable"]);
    expect([shown.reason, shown.subject, shown.deliveries]).toEqual(["non-retryable", "ord.reject", 1]);

    const binary = await dlq("show", "reject", String(undecodable.dlqSeq));
    expect(binary.code, binary.output).toBe(0);
    expect(binary.output).toContain("  failure     undecodable: ");
    // As `xxd` prints it.
    expect(binary.output).toContain(
      "\nbody: 26 bytes, not JSON (hex)\n" +
        "00000000: 0001 0203 0405 0607 0809 0a0b 0c0d 0e0f  ................\n" +
        "00000010: 6a65 7466 6e20 646c 71ff                 jetfn dlq.\n",
    );
    const binaryJson = JSON.parse((await dlq("show", "reject", String(undecodable.dlqSeq), "--json")).output) as Record<string, unknown>;
    expect(new Uint8Array(Buffer.from(binaryJson.body as string, "base64"))).toEqual(BINARY_BODY);
    expect(binaryJson).not.toHaveProperty("json");
  });

  it("exits 1 naming the function and the server for an unknown sequence or another function's dead letter; 2 on bad usage", async () => {
    await deadLetter("other", ['{"id":"o-1"}']);
    const [others] = await list("other");

    const missing = await dlq("show", "reject", "99999");
    expect(missing.code).toBe(1);
    expect(missing.output).toContain(`jetfn: function reject on ${nats.server.url}: no dead letter JETFN_DLQ#99999`);

    const elsewhere = await dlq("show", "reject", String(others!.dlqSeq));
    expect(elsewhere.code).toBe(1);
    expect(elsewhere.output).toContain(
      `jetfn: function reject on ${nats.server.url}: JETFN_DLQ#${others!.dlqSeq} is not a dead letter of reject (it is on jetfn.dlq.other: a dead letter of other)`,
    );

    expect((await dlq("show", "reject")).code).toBe(2);
    const bad = await dlq("show", "reject", "first");
    expect(bad.code).toBe(2);
    expect(bad.output).toContain("--seq expects a positive integer, got first");
    expect((await dlq("show", "nobody", "1")).output).toContain("no function named nobody");

    const down = runCli(["dlq", "show", "reject", "1"], { ...env(), NATS_URL: "nats://127.0.0.1:1" });
    expect(await down.exited).toBe(1);
    expect(down.output()).toContain("jetfn: function reject: cannot connect to NATS at nats://127.0.0.1:1");
  });
});

describe("jetfn dlq list --reason --since", () => {
  it("filters by Jetfn-Reason and by failure time", async () => {
    await deadLetter("listed", ['{"id":"l-1"}', '{"id":"l-2"}']);
    const between = await boundary();
    await deadLetter("listed", ['{"id":"l-3"}', "not json"]);

    // Each listing is its own `jetfn dlq` process; they do not depend on each other.
    const [all, undecodable, rejected, crashed, since, lastHour, future, combined, limited, everyUndecodable, badReason, badSince] =
      await Promise.all([
        list("listed"),
        list("listed", "--reason", "undecodable"),
        list("listed", "--reason", "non-retryable"),
        list("listed", "--reason", "crashed"),
        list("listed", "--since", between.toISOString()),
        list("listed", "--since", "1h"),
        list("listed", "--since", new Date(Date.now() + 60_000).toISOString()),
        list("listed", "--since", between.toISOString(), "--reason", "non-retryable"),
        list("listed", "--reason", "non-retryable", "--limit", "2"),
        // Without a function: every function's, filtered alike.
        list("--reason", "undecodable"),
        dlq("list", "--reason", "broken"),
        dlq("list", "--since", "yesterday"),
      ]);
    expect(all.length).toBe(4);
    expect(undecodable.map((l) => l.reason)).toEqual(["undecodable"]);
    expect(rejected.map((l) => l.error).sort()).toEqual([
      "NonRetryableError: rejected order l-1",
      "NonRetryableError: rejected order l-2",
      "NonRetryableError: rejected order l-3",
    ]);
    expect(crashed).toEqual([]);
    expect(since.map((l) => l.reason).sort()).toEqual(["non-retryable", "undecodable"]);
    expect(since.find((l) => l.reason === "non-retryable")?.error).toBe("NonRetryableError: rejected order l-3");
    expect(lastHour).toHaveLength(4);
    expect(future).toEqual([]);
    // Filters combine, and --limit counts what matched.
    expect(combined.map((l) => l.error)).toEqual(["NonRetryableError: rejected order l-3"]);
    expect(limited).toHaveLength(2);
    expect(everyUndecodable.every((l) => l.reason === "undecodable")).toBe(true);
    expect(everyUndecodable.length).toBeGreaterThanOrEqual(1);

    expect(badReason.code).toBe(2);
    expect(badReason.output).toContain(
      "--reason expects one of non-retryable, attempts-exhausted, undecodable, invalid, crashed, step-too-large, step-not-json, got broken",
    );
    expect(badSince.code).toBe(2);
    expect(badSince.output).toContain('--since expected an ISO date like 2024-05-01T14:30:00Z or a duration like 2h, got "yesterday"');
  });
});

const hasScript = (() => {
  try {
    execFileSync("script", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

/** `jetfn dlq <args>` on a pseudo-terminal (util-linux `script`), answering `answer` to its question. */
async function dlqOnTerminal(answer: string, ...args: string[]): Promise<{ code: number | string; output: string }> {
  const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  const command = [process.execPath, path.join(REPO_ROOT, "bin/jetfn.js"), "dlq", ...args].map(quote).join(" ");
  const child = spawn("script", ["-qec", command, "/dev/null"], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", TERM: "dumb", ...env() },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  await waitFor(() => output.includes("[y/N]"), { message: `the question, got: ${output}` });
  child.stdin.write(`${answer}\n`);
  const code = await exited;
  return { code, output };
}

describe("jetfn dlq purge", () => {
  it("removes the given sequences, or those that failed before a time, and needs --yes without a terminal", async () => {
    await deadLetter("purged", ['{"id":"p-1"}', '{"id":"p-2"}', '{"id":"p-3"}']);
    const between = await boundary();
    await deadLetter("purged", ['{"id":"p-4"}', '{"id":"p-5"}']);
    const otherBefore = await stored("other");
    const all = await list("purged");
    expect(all).toHaveLength(5);

    const unconfirmed = await dlq("purge", "purged");
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.output.trim()).toBe(
      "jetfn: dlq purge purged: removing dead letters needs --yes when there is no terminal to confirm on",
    );
    expect(await stored("purged")).toBe(5);

    const unknown = await dlq("purge", "purged", "--seq", String(all[0]!.dlqSeq), "--seq", "99999", "--yes");
    expect(unknown.code).toBe(1);
    expect(unknown.output).toContain(`jetfn: function purged on ${nats.server.url}: no dead letter JETFN_DLQ#99999`);
    expect(await stored("purged")).toBe(5);

    // One from the middle: deleted by sequence.
    const p2 = all.find((l) => l.error.endsWith("p-2"))!;
    const one = await dlq("purge", "purged", "--seq", String(p2.dlqSeq), "--yes");
    expect(one.code, one.output).toBe(0);
    expect(one.output).toContain("removed 1 dead letter(s) of purged from JETFN_DLQ");
    expect((await list("purged")).map((l) => l.error.slice(-3))).toEqual(expect.arrayContaining(["p-1", "p-3", "p-4", "p-5"]));
    expect(await stored("purged")).toBe(4);

    // The older ones: p-1 and p-3, not p-4 and p-5.
    const older = await dlq("purge", "purged", "--before", between.toISOString(), "--yes");
    expect(older.code, older.output).toBe(0);
    expect(older.output).toContain("removed 2 dead letter(s) of purged");
    expect((await list("purged")).map((l) => l.error.slice(-3)).sort()).toEqual(["p-4", "p-5"]);

    const none = await dlq("purge", "purged", "--before", "1h", "-y");
    expect(none.code).toBe(0);
    expect(none.output).toContain("no dead letters of purged matched; 0 removed");

    const all2 = await dlq("purge", "purged", "--yes");
    expect(all2.output).toContain("removed 2 dead letter(s) of purged");
    expect(await stored("purged")).toBe(0);
    expect(await stored("other")).toBe(otherBefore); // another function's dead letters stay

    const nameless = await dlq("purge", "--yes");
    expect(nameless.code).toBe(2);
    expect(nameless.output).toContain("dlq purge needs the function whose dead letters to remove");
    expect((await dlq("purge", "purged", "--before", "soon", "--yes")).code).toBe(2);
    expect((await dlq("purge", "purged", "--json")).output).toContain("dlq purge: Unknown option '--json'");
  });

  it("asks on a terminal, showing how many, and removes only after a yes", async () => {
    if (!hasScript) throw new Error("script (util-linux) not on PATH: install bsdutils — tests never skip");
    await deadLetter("purged", ['{"id":"t-1"}', '{"id":"t-2"}']);

    const declined = await dlqOnTerminal("n", "purge", "purged");
    expect(declined.output).toContain(
      `Remove 2 dead letter(s) of purged from JETFN_DLQ on ${nats.server.url}? This cannot be undone. [y/N]`,
    );
    expect(declined.output).toContain("nothing removed");
    expect(declined.code).toBe(1);
    expect(await stored("purged")).toBe(2);

    const accepted = await dlqOnTerminal("y", "purge", "purged");
    expect(accepted.code, accepted.output).toBe(0);
    expect(accepted.output).toContain("removed 2 dead letter(s) of purged");
    expect(await stored("purged")).toBe(0);
  });
});

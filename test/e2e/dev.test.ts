/**
 * `jetfn new` and `jetfn dev` as a developer uses them: scaffold a function, run in dev
 * mode, edit the handler and see the new version serve; a broken edit is reported and the
 * running version keeps serving.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { runCli, type CliProcess } from "../support/cli.ts";
import { freePort } from "../support/free-port.ts";
import { startNatsServer, type NatsServer } from "../support/nats-server.ts";
import { client, makeProject } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const YAML = `# my functions
defaults:
  retry: { maxAttempts: 3, backoff: exponential, initialDelay: 100ms }
streams:
  - name: SHOP   # the shop's events
    subjects: ["shop.>"]
  - name: OUT
    subjects: ["out.>"]
functions:
  - name: existing
    handler: functions/existing.ts
    stream: SHOP
    subjects: ["shop.existing"]
`;

let server: NatsServer;
const running: CliProcess[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterEach(async () => {
  for (const cli of running.splice(0)) {
    cli.child.kill("SIGKILL");
    await cli.exited;
  }
});

afterAll(async () => {
  await server?.stop();
});

const project = () => makeProject({ "functions.yaml": YAML }, { fixtures: "dev" });

describe("jetfn new", () => {
  it("writes a handler and its yaml entry, leaving the rest of the file as it was, and the result validates", async () => {
    const dir = project();
    const env = { JETFN_CONFIG: path.join(dir, "functions.yaml") };
    const created = runCli(["new", "ship-order", "--subject", "shop.paid"], env);
    expect(await created.exited).toBe(0);
    expect(created.output()).toContain("added ship-order");
    // The new entry is the whole diff: comments, `["shop.>"]` and the one-line retry map stay.
    expect(readFileSync(path.join(dir, "functions.yaml"), "utf8")).toBe(
      `${YAML}  - name: ship-order\n    handler: functions/ship-order.ts\n    stream: SHOP\n    subjects:\n      - shop.paid\n`,
    );
    expect(readFileSync(path.join(dir, "functions/ship-order.ts"), "utf8")).toContain("defineFunction");
    const validate = runCli(["validate"], env);
    expect(await validate.exited).toBe(0);
    expect(validate.output()).toContain("2 function(s)");
  });

  it("refuses a duplicate, an existing file, or a subject no stream captures (exit 2)", async () => {
    const dir = project();
    const env = { JETFN_CONFIG: path.join(dir, "functions.yaml") };
    const again = runCli(["new", "existing", "--subject", "shop.x"], env);
    expect(await again.exited).toBe(2);
    expect(again.output()).toContain("a function named existing already exists");
    const nowhere = runCli(["new", "lost", "--subject", "elsewhere.x"], env);
    expect(await nowhere.exited).toBe(2);
    expect(nowhere.output()).toContain("no stream declared in functions.yaml captures elsewhere.x");
    expect(readFileSync(path.join(dir, "functions.yaml"), "utf8")).toBe(YAML);
  });
});

describe("jetfn dev", () => {
  it("reloads on an edit, and keeps serving through a broken one", async () => {
    const dir = project();
    const handler = path.join(dir, "functions/greet.ts");
    writeFileSync(handler, 'export default async (e: { n: number }, ctx: import("jetfn").FunctionContext) => { await ctx.publish("out.greet", { n: e.n, version: 1 }); };\n');
    writeFileSync(
      path.join(dir, "functions.yaml"),
      `${YAML}  - { name: greet, handler: functions/greet.ts, stream: SHOP, subjects: ["shop.greet"] }\n`,
    );
    const port = await freePort();
    const dev = runCli(["dev"], {
      NATS_URL: server.url,
      JETFN_CONFIG: path.join(dir, "functions.yaml"),
      JETFN_HTTP_HOST: "127.0.0.1",
      JETFN_HTTP_PORT: String(port),
    });
    running.push(dev);
    const { nc, js, jsm } = await client(server.url);
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, { timeout: 20_000 });
      const versionOf = async (n: number) => {
        await js.publish("shop.greet", JSON.stringify({ n }));
        const out = await waitFor(async () => {
          const msg = await jsm.streams.getMessage("OUT", { last_by_subj: "out.greet" });
          return msg?.json<{ n: number }>().n === n ? msg : null;
        });
        return out.json<{ version: number }>().version;
      };
      expect(await versionOf(1)).toBe(1);

      writeFileSync(handler, readFileSync(handler, "utf8").replace("version: 1", "version: 2"));
      await waitFor(() => dev.output().includes('"msg":"reloaded"'), { timeout: 20_000 });
      expect(await versionOf(2)).toBe(2);

      writeFileSync(handler, "export default async () => { const x = ; };\n");
      await waitFor(() => dev.output().includes("change not loaded, still running the previous version"), { timeout: 20_000 });
      expect(dev.output()).toMatch(/"error":"functions\/greet\.ts:1:\d+: Unexpected /);
      expect(await versionOf(3)).toBe(2);
    } finally {
      await nc.close();
    }
    dev.child.kill("SIGTERM");
    expect(await dev.exited).toBe(0);
  });
});

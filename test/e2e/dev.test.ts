/**
 * `jetfn new` and `jetfn dev` as a developer uses them: scaffold a function, run in dev
 * mode, save the handler, a file it imports and functions.yaml in every way editors save,
 * and see each new version serve the next event; a broken save is reported as `jetfn
 * validate` reports it and the running version keeps serving.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type CliProcess, runCli } from "../support/cli.ts";
import { freePort } from "../support/free-port.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
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
  /** The handler: it publishes which version of itself (its own number, lib/mark.ts, yaml's `tag`) handled an event. */
  const greet = (version: number): string =>
    `import type { FunctionContext } from "jetfn";
import { mark } from "./lib/mark.ts";
export default async (e: { n: number }, ctx: FunctionContext) => {
  await ctx.publish("out.greet", { n: e.n, version: [${version}, mark, ctx.config.tag].join("") });
};
`;
  const greetYaml = (more = "", stream = "SHOP"): string =>
    `${YAML}  - { name: greet, handler: functions/greet.ts, stream: ${stream}, subjects: ["shop.greet"]${more} }\n`;

  /** The ways a file gets saved: editors write in place, or write a temporary file and rename it over (atomic save, `sed -i`). */
  const inPlace = (file: string, text: string): void => writeFileSync(file, text);
  const renamedOver = (file: string, text: string): void => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  const deletedAndCreated = (file: string, text: string): void => {
    rmSync(file);
    writeFileSync(file, text);
  };

  it("sees every save however it is written, keeps serving through a broken one, and ignores what it writes itself", {
    timeout: 240_000,
  }, async () => {
    const dir = project();
    const config = path.join(dir, "functions.yaml");
    const handler = path.join(dir, "functions/greet.ts");
    const markFile = path.join(dir, "functions/lib/mark.ts");
    mkdirSync(path.dirname(markFile));
    writeFileSync(markFile, 'export const mark = "";\n');
    writeFileSync(handler, greet(1));
    writeFileSync(config, greetYaml());
    const port = await freePort();
    const dev = runCli(["dev"], {
      NATS_URL: server.url,
      JETFN_CONFIG: config,
      JETFN_HTTP_HOST: "127.0.0.1",
      JETFN_HTTP_PORT: String(port),
    });
    running.push(dev);
    const { nc, js, jsm } = await client(server.url);
    const lines = (): Record<string, unknown>[] =>
      dev
        .output()
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    let n = 0;
    /** Publishes one event and returns the version that handled it. */
    const versionOf = async (): Promise<string> => {
      const id = ++n;
      await js.publish("shop.greet", JSON.stringify({ n: id }));
      const out = await waitFor(
        async () => {
          const msg = await jsm.streams.getMessage("OUT", { last_by_subj: "out.greet" });
          return msg?.json<{ n: number }>().n === id ? msg : null;
        },
        { timeout: 20_000, message: `event ${id} handled` },
      );
      return out.json<{ version: string }>().version;
    };
    /** Saves, then waits for the log line that ends the reload it causes. */
    const save = async (how: (file: string, text: string) => void, file: string, text: string, ending = "reloaded"): Promise<void> => {
      const from = lines().length;
      how(file, text);
      await waitFor(
        () =>
          lines()
            .slice(from)
            .some((line) => line.msg === ending),
        {
          timeout: 60_000,
          message: `"${ending}" after saving ${path.relative(dir, file)} (${how.name})\n${dev.output()}`,
        },
      );
    };
    try {
      await waitFor(() => dev.output().includes("dev mode: reloading on changes"), {
        timeout: 30_000,
        message: `dev started\n${dev.output()}`,
      });
      expect(await versionOf()).toBe("1");

      // A dozen saves of the handler, alternating; the fs.watch watcher went blind after the first rename.
      for (let version = 2; version <= 13; version++) {
        if (version === 8) {
          // Files written under the folder that are no source: none of these may reload.
          writeFileSync(path.join(dir, "dev.log"), "a log line\n");
          mkdirSync(path.join(dir, "node_modules/left-pad"), { recursive: true });
          writeFileSync(path.join(dir, "node_modules/left-pad/index.js"), "export default 1;\n");
          mkdirSync(path.join(dir, ".jetfn/build"), { recursive: true });
          writeFileSync(path.join(dir, ".jetfn/build/stray.json"), "{}\n");
          writeFileSync(path.join(dir, "functions/greet.test.ts"), "export {};\n");
        }
        await save(version % 2 === 0 ? inPlace : renamedOver, handler, greet(version));
        expect(await versionOf()).toBe(String(version));
      }
      // In a subfolder, by delete and create; then functions.yaml by rename.
      await save(deletedAndCreated, markFile, 'export const mark = "-lib";\n');
      expect(await versionOf()).toBe("13-lib");
      await save(renamedOver, config, greetYaml(", config: { tag: -yaml }"));
      expect(await versionOf()).toBe("13-lib-yaml");

      // A broken save: reported as `jetfn validate` reports it, and the running version keeps serving.
      await save(
        renamedOver,
        handler,
        "export default async () => { const x = ; };\n",
        "change not loaded, still running the previous version",
      );
      const validate = runCli(["validate"], { JETFN_CONFIG: config });
      expect(await validate.exited).toBe(2);
      const reported = lines().findLast((line) => line.msg === "change not loaded, still running the previous version");
      expect(reported?.error).toMatch(/^functions\/greet\.ts:1:\d+: Unexpected /);
      expect(`jetfn: ${String(reported?.error)}\n`).toBe(validate.output());
      expect(await versionOf()).toBe("13-lib-yaml");
      // The next good save is loaded.
      await save(inPlace, handler, greet(14));
      expect(await versionOf()).toBe("14-lib-yaml");

      // A save that validates but does not start (no such stream): the previous functions.yaml runs again.
      await save(inPlace, config, greetYaml(", config: { tag: -nope }", "NOPE"), "previous version running again");
      expect(
        lines().some(
          (line) => line.msg === "change not started, starting the previous functions.yaml again" && String(line.error).includes("NOPE"),
        ),
      ).toBe(true);
      expect(await versionOf()).toBe("14-lib-yaml");
      await save(renamedOver, config, greetYaml(", config: { tag: -end }"));
      expect(await versionOf()).toBe("14-lib-end");

      // Every reload was caused by a source file; none by a log, a dependency, a build, a test or a temporary file.
      const changed = lines().flatMap((line) => (line.msg === "change seen: reloading" ? (line.changed as string[]) : []));
      expect(new Set(changed)).toEqual(new Set(["functions/greet.ts", "functions/lib/mark.ts", "functions.yaml"]));
    } finally {
      await nc.close();
    }
    dev.child.kill("SIGTERM");
    expect(await dev.exited).toBe(0);
  });
});

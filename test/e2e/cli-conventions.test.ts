/**
 * The CLI's conventions as a user meets them: `--help` of every command exits 0 with its
 * usage, `--version` prints the version, an unknown option names the command and its
 * options (exit 2), and `jetfn new --route` makes a function that a plain HTTP request runs.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { COMMANDS } from "../../runtime/cli/commands.ts";
import { killCliHosts, runCli, startCliHost } from "../support/cli.ts";
import { freePort } from "../support/free-port.ts";
import { makeProject, REPO_ROOT, SHOP_YAML, scrape, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();

afterEach(killCliHosts);

async function jetfn(args: string[], env: Record<string, string> = {}): Promise<{ code: number | string; output: string }> {
  const cli = runCli(args, env);
  const code = await cli.exited;
  return { code, output: cli.output() };
}

describe("help and version", () => {
  it("jetfn <command> --help prints that command's usage and exits 0, for every command", async () => {
    // No functions.yaml and no server: help needs neither.
    const env = { JETFN_CONFIG: "/nonexistent/functions.yaml", NATS_URL: "nats://127.0.0.1:1" };
    const names = [...Object.keys(COMMANDS), "dlq"];
    const runs = await Promise.all(names.map((name) => jetfn([...name.split(" "), "--help"], env)));
    names.forEach((name, i) => {
      const run = runs[i]!;
      expect(run.code, `${name} --help: ${run.output}`).toBe(0);
      expect(run.output).toContain(`Usage: jetfn ${name}`);
    });
    const short = await jetfn(["publish", "-h"], env);
    expect(short.code).toBe(0);
    expect(short.output).toContain("-H, --header <k=v>");
  });

  it("jetfn --help and jetfn help print the overview, jetfn --version the version", async () => {
    for (const args of [["--help"], ["help"]]) {
      const run = await jetfn(args);
      expect(run.code).toBe(0);
      expect(run.output).toContain("Usage: jetfn <command> [options]");
      expect(run.output).toContain("new <name> --subject <subject> [--stream <stream>] [--route");
    }
    const { version } = JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as { version: string };
    const run = await jetfn(["--version"]);
    expect(run.code).toBe(0);
    expect(run.output).toBe(`${version}\n`);
  });
});

describe("an unknown option", () => {
  it("exits 2 naming the command and the options it takes", async () => {
    const publish = await jetfn(["publish", "jobs.x", "{}", "--msgid", "1"]);
    expect(publish.code).toBe(2);
    expect(publish.output).toContain(
      "jetfn: publish: Unknown option '--msgid'; publish takes --header (-H), --msg-id, --delay, --at and --help (-h)",
    );
    expect(publish.output).toContain("Usage: jetfn publish <subject> <json|@file>");

    const list = await jetfn(["dlq", "list", "--seq", "1"]);
    expect(list.code).toBe(2);
    expect(list.output).toContain(
      "jetfn: dlq list: Unknown option '--seq'; dlq list takes --limit, --json, --reason, --since and --help (-h)",
    );

    const start = await jetfn(["start", "--port", "80"]);
    expect(start.code).toBe(2);
    expect(start.output).toContain("jetfn: start: Unknown option '--port'; start takes no options but --help (-h)");
  });
});

describe("jetfn new --route", () => {
  it("adds a publishing route: a POST to the ingress is stored (202) and runs the new function", async () => {
    const dir = makeProject(
      {
        "functions.yaml": SHOP_YAML,
      },
      { fixtures: "dev" },
    );
    const configFile = path.join(dir, "functions.yaml");
    const created = await jetfn(["new", "ship-order", "--subject", "shop.paid", "--route", "POST /orders/:id/ship"], {
      JETFN_CONFIG: configFile,
    });
    expect(created.code, created.output).toBe(0);
    expect(created.output).toContain(`added the route POST /orders/:id/ship to routes: in ${configFile} (publish: shop.paid)`);
    expect(readFileSync(configFile, "utf8")).toContain("\nroutes:\n  - route: POST /orders/:id/ship\n    publish: shop.paid\n");

    const bad = await jetfn(["new", "refund", "--subject", "shop.refund", "--route", "POST refunds"], { JETFN_CONFIG: configFile });
    expect(bad.code).toBe(2);
    expect(bad.output).toContain('--route expected a method (GET, POST, PUT, PATCH, DELETE) and a path like "POST /orders"');

    const ingressPort = await freePort();
    const { base } = await startCliHost(configFile, nats.server.url, {
      JETFN_INGRESS_HOST: "127.0.0.1",
      JETFN_INGRESS_PORT: String(ingressPort),
    });
    const response = await fetch(`http://127.0.0.1:${ingressPort}/orders/o-7/ship`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: "o-7" }),
    });
    expect(response.status).toBe(202);
    expect(await response.json()).toMatchObject({ stream: "SHOP", duplicate: false });
    await waitFor(async () => (await scrape(base, 'jetfn_invocations_total{function="ship-order",outcome="success"}')) === 1, {
      message: "ship-order ran the event",
    });
  });
});

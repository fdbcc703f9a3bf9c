/**
 * What the Dockerfile does, without a Docker engine: its COPY and RUN steps replayed in a
 * clean folder (production install included), then its CMD started against a nats-server.
 * It proves the image's production dependencies are enough to bundle and run the functions.
 */
import { execSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runCli, type CliProcess } from "../support/cli.ts";
import { freePort } from "../support/free-port.ts";
import { startNatsServer, type NatsServer } from "../support/nats-server.ts";
import { client, REPO_ROOT } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

let server: NatsServer;
let app: string;
let cmd: CliProcess | undefined;

beforeAll(async () => {
  server = await startNatsServer();
  app = mkdtempSync(path.join(tmpdir(), "jetfn-image-"));
});

afterAll(async () => {
  cmd?.child.kill("SIGKILL");
  await server?.stop();
  rmSync(app, { recursive: true, force: true });
});

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
function instructions(): { op: string; args: string }[] {
  const text = readFileSync(path.join(REPO_ROOT, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"))
    .map((line) => {
      const [op = "", ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(" ") };
    });
}

it("installs, bundles and runs the shipped functions from the Dockerfile's steps", async () => {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" };
  let command: string[] = [];
  for (const { op, args } of instructions()) {
    if (op === "ENV") {
      const [key, value] = args.split("=");
      env[key!] = value!;
    } else if (op === "COPY") {
      const parts = args.split(/\s+/);
      const target = path.join(app, parts.pop()!);
      for (const source of parts) cpSync(path.join(REPO_ROOT, source), parts.length > 1 ? path.join(target, source) : target, { recursive: true });
    } else if (op === "RUN") {
      // BuildKit's cache mount only keeps npm's cache out of the image.
      execSync(args.replace(/--mount=\S+\s+/g, ""), { cwd: app, env, stdio: "pipe" });
    } else if (op === "CMD") {
      command = JSON.parse(args) as string[];
    }
  }
  expect(command.slice(0, 2)).toEqual(["node", "bin/jetfn.js"]);
  // Production install only: no test or build tooling in the image.
  expect(() => execSync("npm ls vitest typescript", { cwd: app, env, stdio: "pipe" })).toThrow();

  const port = await freePort();
  cmd = runCli(command.slice(2), { ...env, NATS_URL: server.url, JETFN_HTTP_HOST: "127.0.0.1", JETFN_HTTP_PORT: String(port), LOG_LEVEL: "debug" }, app);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, { timeout: 30_000 }).catch((error: Error) => {
    throw new Error(`${error.message}\n${cmd!.output()}`);
  });
  expect(cmd.output().match(/"reused":true/g)).toHaveLength(2); // the bundles made at build time

  const { nc, js } = await client(server.url);
  try {
    await js.publish("orders.created", JSON.stringify({ orderId: "o-1", customerId: "c-1", amount: 5 }));
    await waitFor(() => cmd!.output().includes("notified customer"), { timeout: 20_000 });
  } finally {
    await nc.close();
  }
  cmd.child.kill("SIGTERM");
  expect(await cmd.exited).toBe(0);
});

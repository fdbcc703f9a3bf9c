import type { ChildProcess } from "node:child_process";
import path from "node:path";
import { type SpawnedChild, spawnChild } from "../../runtime/child-process.ts";
import { freePort } from "./free-port.ts";
import { REPO_ROOT } from "./project.ts";
import { waitFor } from "./wait-for.ts";

/** A `jetfn` CLI process started as a user would start it. */
export interface CliProcess {
  readonly child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
}

/** Spawns `node bin/jetfn.js <args>` with `env` on top of a clean environment. */
export function runCli(args: string[], env: Record<string, string>, cwd = REPO_ROOT): CliProcess {
  return spawnCli(args, env, cwd).cli;
}

function spawnCli(args: string[], env: Record<string, string>, cwd: string): { cli: CliProcess; spawned: SpawnedChild } {
  const spawned = spawnChild(process.execPath, [path.join(REPO_ROOT, "bin/jetfn.js"), ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const child = spawned.process;
  let out = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const exited = spawned.exited.then(({ code, signal }) => code ?? signal ?? -1);
  return { cli: { child, output: () => out, exited }, spawned };
}

/**
 * `jetfn start` processes started by {@link startCliHost}; {@link killCliHosts} (in an
 * afterEach) makes sure a failed test leaves none consuming from the next test's consumers.
 */
const started: SpawnedChild[] = [];

/** Starts `jetfn start` on a free HTTP port and waits until `/readyz` answers 200. */
export async function startCliHost(
  configFile: string,
  natsUrl: string,
  env: Record<string, string> = {},
  readyWithinMs = 20_000,
): Promise<{ cli: CliProcess; base: string }> {
  const port = await freePort();
  const { cli, spawned } = spawnCli(
    ["start"],
    { NATS_URL: natsUrl, JETFN_CONFIG: configFile, JETFN_HTTP_HOST: "127.0.0.1", JETFN_HTTP_PORT: String(port), ...env },
    REPO_ROOT,
  );
  started.push(spawned);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, {
    timeout: readyWithinMs,
    message: "jetfn start became ready",
  }).catch((error: Error) => {
    throw new Error(`${error.message}\n${cli.output()}`);
  });
  return { cli, base };
}

/** SIGKILLs every CLI host still running. */
export async function killCliHosts(): Promise<void> {
  for (const host of started.splice(0)) await host.kill();
}

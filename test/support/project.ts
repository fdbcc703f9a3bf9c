import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll } from "vitest";
import { loadEnv } from "../../runtime/config/env.ts";
import { Host } from "../../runtime/host.ts";
import { startNatsServer, type NatsServer, type StartNatsServerOptions } from "./nats-server.ts";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * Writes a throwaway jetfn project (functions.yaml plus handler files). It lives under the
 * repo's git-ignored `.jetfn/`, so handlers resolve `zod` and other packages from the
 * repo's node_modules as the shipped functions do.
 */
export function makeProject(files: Record<string, string>): string {
  const base = path.join(REPO_ROOT, ".jetfn", "test-projects");
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(path.join(base, "p-"));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** Log lines a host wrote, parsed, for assertions. */
export class LogCapture {
  readonly lines: Record<string, unknown>[] = [];
  readonly stream = {
    write: (line: string): void => {
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  };
  find(predicate: (line: Record<string, unknown>) => boolean): Record<string, unknown> | undefined {
    return this.lines.find(predicate);
  }
}

/** Creates (validates, bundles, loads) a host in-process against `natsUrl`, without starting it. */
export async function createHost(
  dir: string,
  natsUrl: string,
  env: Record<string, string> = {},
): Promise<{ host: Host; logs: LogCapture }> {
  const logs = new LogCapture();
  const compiled = loadEnv({
    NATS_URL: natsUrl,
    JETFN_CONFIG: path.join(dir, "functions.yaml"),
    JETFN_HTTP_HOST: "127.0.0.1",
    JETFN_HTTP_PORT: "0",
    JETFN_SHUTDOWN_TIMEOUT: "5s",
    LOG_LEVEL: "debug",
    ...env,
  });
  const host = await Host.create({ env: compiled, logger: pino({ level: "debug" }, logs.stream), consumerPollMs: 200 });
  return { host, logs };
}

/** Creates and starts a host in-process against `natsUrl`, HTTP on a free port. */
export async function startHost(
  dir: string,
  natsUrl: string,
  env: Record<string, string> = {},
): Promise<{ host: Host; logs: LogCapture; baseUrl: string }> {
  const { host, logs } = await createHost(dir, natsUrl, env);
  await host.start();
  return { host, logs, baseUrl: `http://127.0.0.1:${host.httpAddress!.port}` };
}

/** A plain client for the test's side: publishing events, reading streams. */
export async function client(url: string): Promise<{ nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager }> {
  const nc = await connect({ servers: url });
  return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc) };
}

/**
 * The value of one series in a host's `/metrics`, e.g.
 * `jetfn_acks_total{function="ok",action="ack"}`; NaN when absent.
 */
export async function scrape(baseUrl: string, series: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const found = text.split("\n").find((line) => line.startsWith(`${series} `));
  return found ? Number(found.split(" ").pop()) : Number.NaN;
}

/** A private nats-server and a client on it, for one test file. */
export interface NatsFixture {
  server: NatsServer;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

/**
 * Starts a nats-server and connects to it before the file's tests, and stops both after
 * them (after every later-registered afterAll, such as a host's shutdown). The fields are
 * set once the file's beforeAll hooks ran.
 */
export function useNats(options?: StartNatsServerOptions): NatsFixture {
  const fixture = {} as NatsFixture;
  beforeAll(async () => {
    fixture.server = await startNatsServer(options);
    Object.assign(fixture, await client(fixture.server.url));
  });
  afterAll(async () => {
    await fixture.nc?.close();
    await fixture.server?.stop();
  });
  return fixture;
}

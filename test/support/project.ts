import { cpSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll } from "vitest";
import { parseDocument, YAMLMap } from "yaml";
import { loadEnv } from "../../runtime/config/env.ts";
import { Host, type HostOptions } from "../../runtime/host.ts";
import { type NatsServer, type StartNatsServerOptions, startNatsServer } from "./nats-server.ts";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Handler files the tests run, as real modules that `npm run typecheck` checks. */
export const FIXTURES_DIR = path.join(REPO_ROOT, "test", "fixtures");

/**
 * A small project's functions.yaml, for the tests of `jetfn new`: a stream SHOP and one
 * function (`fixtures: "dev"` brings its handler), to which they add theirs.
 */
export const SHOP_YAML = `streams:
  - name: SHOP
    subjects: ["shop.>"]
functions:
  - name: existing
    handler: functions/existing.ts
    stream: SHOP
    subjects: ["shop.existing"]
`;

/** Options of {@link makeProject}. */
export interface MakeProjectOptions {
  /**
   * A folder under `test/fixtures/` (e.g. `"outcomes"`, `"bundle/reuse"`) copied into the
   * project as it is laid out: `test/fixtures/outcomes/fns/ok.ts` becomes `fns/ok.ts`, the
   * path `functions.yaml` names, and relative imports between the files keep working.
   */
  fixtures?: string;
}

/**
 * Writes a throwaway jetfn project: `files` (functions.yaml, and handler text a test must
 * write itself: a broken handler, one it rewrites) plus the handler files of
 * `options.fixtures`. It lives under the repo's git-ignored `.jetfn/`, so handlers resolve
 * `zod` and other packages from the repo's node_modules as the shipped functions do.
 */
export function makeProject(files: Record<string, string>, options: MakeProjectOptions = {}): string {
  const base = path.join(REPO_ROOT, ".jetfn", "test-projects");
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(path.join(base, "p-"));
  if (options.fixtures !== undefined) {
    const from = path.join(FIXTURES_DIR, options.fixtures);
    if (!existsSync(from)) throw new Error(`makeProject: no fixture folder ${path.relative(REPO_ROOT, from)}`);
    cpSync(from, dir, { recursive: true });
  }
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(dir, name);
    // One source per file: a fixture silently replaced by inline text would mislead.
    if (existsSync(file)) throw new Error(`makeProject: ${name} is both inline and in test/fixtures/${options.fixtures}`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, name === "functions.yaml" ? withTestIsolation(text) : text);
  }
  return dir;
}

/**
 * The suites run twice (vitest.config.ts): with the default `isolation: worker`, and with
 * `JETFN_TEST_ISOLATION=none`, which this writes under `defaults:` of every project's
 * functions.yaml, unless the yaml chooses an isolation itself.
 */
function withTestIsolation(yaml: string): string {
  const mode = process.env.JETFN_TEST_ISOLATION;
  if (!mode || /\bisolation:/.test(yaml)) return yaml;
  const document = parseDocument(yaml);
  if (!document.has("functions")) return yaml;
  const defaults = document.get("defaults");
  if (defaults instanceof YAMLMap) defaults.set("isolation", mode);
  else document.set("defaults", document.createNode({ isolation: mode }));
  return document.toString();
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
  options: Pick<HostOptions, "isolation"> = {},
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
  const host = await Host.create({ env: compiled, logger: pino({ level: "debug" }, logs.stream), consumerPollMs: 200, ...options });
  return { host, logs };
}

/** Creates and starts a host in-process against `natsUrl`, HTTP on a free port. */
export async function startHost(
  dir: string,
  natsUrl: string,
  env: Record<string, string> = {},
  options: Pick<HostOptions, "isolation"> = {},
): Promise<{ host: Host; logs: LogCapture; baseUrl: string }> {
  const { host, logs } = await createHost(dir, natsUrl, env, options);
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

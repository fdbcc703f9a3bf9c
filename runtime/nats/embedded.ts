import { mkdirSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { spawnChild } from "../child-process.ts";
import type { Logger } from "../telemetry/logger.ts";

/** How long the embedded server has to exit after SIGTERM before it is killed. */
const STOP_GRACE_MS = 5000;

/** The servers to connect to, and how to stop the one we started (if any). */
export interface NatsEndpoint {
  readonly servers: readonly string[];
  /** Set when jetfn started its own nats-server; stops it. */
  readonly stop?: () => Promise<void>;
}

export interface EmbeddedOptions {
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** @default 4222 */
  readonly port?: number;
  /** The binary to run. @default "nats-server" (from PATH) */
  readonly binary?: string;
}

/**
 * With `NATS_URL` set, uses it. Otherwise uses whatever answers on 127.0.0.1:4222, and when
 * nothing does, starts `nats-server -js` with its store under `<root>/.jetfn/nats`.
 */
export async function resolveNats(
  natsUrl: readonly string[] | undefined,
  rootDir: string,
  log: Logger,
  options: EmbeddedOptions = {},
): Promise<NatsEndpoint> {
  if (natsUrl) return { servers: natsUrl };
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 4222;
  const url = `nats://${host}:${port}`;
  if (await answers(host, port)) return { servers: [url] };

  const storeDir = path.join(rootDir, ".jetfn", "nats");
  mkdirSync(storeDir, { recursive: true });
  const logFile = path.join(storeDir, "nats-server.log");
  const binary = options.binary ?? "nats-server";
  const server = spawnChild(binary, ["-js", "-a", host, "-p", String(port), "-sd", storeDir], { logFile });
  const failed = server.spawned.then(
    () => server.exited.then(({ code }) => new Error(`embedded nats-server exited with code ${code}:\n${tail(logFile)}`)),
    (err: NodeJS.ErrnoException) =>
      err.code === "ENOENT"
        ? new Error(`nothing answers on ${host}:${port} and ${binary} is not on PATH: install nats-server or set NATS_URL`)
        : err,
  );
  const ready = waitUntilAnswers(host, port, 10_000);
  const first = await Promise.race([
    ready.then(
      () => undefined,
      (error: Error) => error,
    ),
    failed,
  ]);
  if (first instanceof Error) {
    void server.kill();
    throw first;
  }
  log.info({ url, store: storeDir, log: logFile }, "no NATS_URL and nothing on the default port: started an embedded nats-server");
  return {
    servers: [url],
    stop: async () => {
      await server.stop(STOP_GRACE_MS);
    },
  };
}

function answers(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

async function waitUntilAnswers(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await answers(host, port, 200)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`embedded nats-server did not answer on ${host}:${port} within ${timeoutMs}ms`);
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-10).join("\n");
  } catch {
    return "(no log)";
  }
}

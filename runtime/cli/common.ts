import { createInterface } from "node:readline/promises";
import { redactUrl } from "../config/env.ts";
import type { CompiledEnv } from "../config/types.ts";
import { type NatsClients, openClients } from "../nats/clients.ts";
import { createLogger, type Logger } from "../telemetry/logger.ts";

/** Bad arguments: exit 2, with the usage text unless `showUsage` is false. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly showUsage = true,
  ) {
    super(message);
  }
}

/** Where a command without `NATS_URL` connects: where `jetfn start` runs its embedded server. */
const DEFAULT_SERVERS = ["nats://127.0.0.1:4222"];

/** The servers a command talks to, as its messages name them (any credentials redacted). */
export function serverLabel(env: CompiledEnv): string {
  return (env.natsUrl ?? DEFAULT_SERVERS).map(redactUrl).join(",");
}

/**
 * Connects for one CLI command; `run` gets the clients, {@link serverLabel} for its
 * messages, and a logger for what the command does on the server (a stream it creates),
 * quiet unless LOG_LEVEL asks for more.
 */
export async function withClients(
  env: CompiledEnv,
  run: (clients: NatsClients, server: string, log: Logger) => Promise<number>,
): Promise<number> {
  const log = createLogger(env.logLevel === "info" ? "warn" : env.logLevel);
  const clients = await openClients(env, env.natsUrl ?? DEFAULT_SERVERS, log);
  try {
    return await run(clients, serverLabel(env), log);
  } finally {
    await clients.nc.drain();
  }
}

/** `--option` values that must be positive integers. */
export function positiveIntegers(values: readonly string[] | undefined, option: string): number[] {
  return (values ?? []).map((value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${option} expects a positive integer, got ${value}`);
    return n;
  });
}

/** Asks on the terminal; true only for y or yes. */
export async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await new Promise<string>((resolve) => {
      rl.once("close", () => resolve(""));
      rl.once("SIGINT", () => rl.close()); // Ctrl-C declines
      rl.question(question).then(resolve, () => resolve(""));
    });
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

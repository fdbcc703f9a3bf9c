import { loadEnv } from "./config/env.ts";
import { openClients, type NatsClients } from "./nats/clients.ts";
import { createLogger, type Logger } from "./telemetry/logger.ts";

/** Bad arguments: the CLI prints it with the usage and exits 2. */
export class UsageError extends Error {}

/**
 * Connects for one CLI command (to the default where `jetfn start` runs its embedded
 * server); `log` is for what the command does on the server (a stream it creates), quiet
 * unless LOG_LEVEL asks for more.
 */
export async function withClients(env: ReturnType<typeof loadEnv>, run: (clients: NatsClients, log: Logger) => Promise<number>): Promise<number> {
  const log = createLogger(env.logLevel === "info" ? "warn" : env.logLevel);
  const clients = await openClients(env, natsServers(env), log);
  try {
    return await run(clients, log);
  } finally {
    await clients.nc.drain();
  }
}

/** The servers a CLI command connects to, as its errors name them. */
export function natsServers(env: ReturnType<typeof loadEnv>): readonly string[] {
  return env.natsUrl ?? ["nats://127.0.0.1:4222"];
}

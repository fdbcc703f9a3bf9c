import { UsageError, withClients } from "../cli/common.ts";
import { loadConfig } from "../config/load.ts";
import type { CompiledEnv } from "../config/types.ts";
import { fleetStatus } from "../nats/status-client.ts";
import { ConsoleActions } from "./actions.ts";
import { buildConsoleAssets } from "./assets.ts";
import { ConsoleAuth, isLoopback } from "./auth.ts";
import { FleetFeed } from "./fleet-feed.ts";
import { ConsoleServer } from "./server.ts";

/** `jetfn console`'s own settings: its options and its two variables, checked. */
export interface ConsoleSettings {
  readonly host: string;
  readonly port: number;
  /** JETFN_CONSOLE_TOKEN: required to bind beyond loopback. */
  readonly token?: string;
  /** JETFN_CONSOLE_TRACE_URL: a trace UI's base URL (`{traceId}` is replaced, else the id appended). */
  readonly traceUrl?: string;
}

/** The shortest JETFN_CONSOLE_TOKEN taken: it is all that stands between the network and the fleet's controls. */
const MIN_TOKEN = 16;

/** Checks `--host`, `--port` and the console's variables; a bad one is a usage error (exit 2). */
export function consoleSettings(
  values: { host?: string; port?: string },
  vars: Readonly<Record<string, string | undefined>>,
): ConsoleSettings {
  const host = values.host ?? "127.0.0.1";
  const portText = values.port ?? "8090";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65_535) throw new UsageError(`--port expects a port number (0-65535), got ${portText}`);
  const token = vars.JETFN_CONSOLE_TOKEN || undefined;
  if (token !== undefined && token.length < MIN_TOKEN) {
    throw new UsageError(`JETFN_CONSOLE_TOKEN must be at least ${MIN_TOKEN} characters`, false);
  }
  if (!isLoopback(host) && token === undefined) {
    throw new UsageError(
      `console: binding to ${host} (beyond loopback) needs JETFN_CONSOLE_TOKEN: anyone who reaches the port could pause functions and purge dead letters`,
      false,
    );
  }
  const traceUrl = vars.JETFN_CONSOLE_TRACE_URL || undefined;
  if (traceUrl !== undefined && !/^https?:\/\/[^\s]+$/.test(traceUrl)) {
    throw new UsageError(`JETFN_CONSOLE_TRACE_URL expects an http(s) URL like http://jaeger:16686/trace/{traceId}, got ${traceUrl}`, false);
  }
  return { host, port, ...(token ? { token } : {}), ...(traceUrl ? { traceUrl } : {}) };
}

/**
 * `jetfn console`: connects to NATS as the other commands do, polls the fleet through the
 * `jetfn` service, and serves the console until SIGINT or SIGTERM.
 */
export async function runConsole(env: CompiledEnv, settings: ConsoleSettings): Promise<number> {
  const config = loadConfig(env.configFile);
  const assets = await buildConsoleAssets();
  return withClients(env, async (clients, servers, log) => {
    const feed = new FleetFeed({
      poll: () => fleetStatus(clients.nc, clients.jsm, { discoverMs: 500 }),
      functions: config.functions,
      servers,
      log,
    });
    await feed.start();
    const server = new ConsoleServer({
      host: settings.host,
      port: settings.port,
      auth: new ConsoleAuth(settings.token !== undefined ? { token: settings.token } : {}),
      feed,
      actions: new ConsoleActions({
        clients,
        functions: config.functions,
        log,
        ...(settings.traceUrl ? { traceUrl: settings.traceUrl } : {}),
      }),
      assets,
      log,
    });
    let url: string;
    try {
      url = await server.listen();
    } catch (error) {
      feed.stop();
      throw new Error(`console: cannot listen on ${settings.host}:${settings.port}: ${(error as Error).message}`);
    }
    console.log(`jetfn console on ${url} (NATS ${servers}${settings.token ? "; log in with JETFN_CONSOLE_TOKEN" : ""})`);
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    feed.stop();
    await server.close();
    return 0;
  });
}

import { readFileSync } from "node:fs";
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from "@nats-io/transport-node";
import type { CompiledEnv } from "../config/types.ts";
import type { Logger } from "../telemetry/logger.ts";

/** NATS connection options from the validated environment (auth, TLS, reconnect forever). */
export function connectionOptions(env: CompiledEnv, servers: readonly string[]): NodeConnectionOptions {
  const options: NodeConnectionOptions = {
    servers: [...servers],
    name: "jetfn",
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
    reconnectJitter: 500,
  };
  if (env.natsUser) {
    options.user = env.natsUser;
    options.pass = env.natsPassword;
  }
  if (env.natsToken) options.token = env.natsToken;
  if (env.natsNkeySeed) options.authenticator = nkeyAuthenticator(new TextEncoder().encode(env.natsNkeySeed));
  if (env.natsCreds) options.authenticator = credsAuthenticator(readFileSync(env.natsCreds));
  if (env.natsTlsCa || env.natsTlsCert) {
    options.tls = {
      ...(env.natsTlsCa ? { caFile: env.natsTlsCa } : {}),
      ...(env.natsTlsCert ? { certFile: env.natsTlsCert, keyFile: env.natsTlsKey } : {}),
    };
  }
  return options;
}

/**
 * Connects, logs connection status changes (never secrets), and reports each change of
 * connectedness to `onConnected` (readiness follows it).
 */
export async function connectNats(
  env: CompiledEnv,
  servers: readonly string[],
  log: Logger,
  onConnected: (connected: boolean) => void = () => {},
): Promise<NatsConnection> {
  let nc: NatsConnection;
  try {
    nc = await connect(connectionOptions(env, servers));
  } catch (error) {
    throw new Error(`cannot connect to NATS at ${servers.join(",")}: ${(error as Error).message}`, { cause: error });
  }
  onConnected(true);
  log.info({ server: nc.getServer(), version: nc.info?.version }, "connected to NATS");
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect") {
        onConnected(false);
        log.warn({ server: status.server }, "disconnected from NATS");
      } else if (status.type === "reconnect") {
        onConnected(true);
        log.info({ server: status.server }, "reconnected to NATS");
      }
      else if (status.type === "error") log.error({ err: status.error }, "NATS error");
    }
  })();
  return nc;
}

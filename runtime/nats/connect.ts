import { readFileSync } from "node:fs";
import {
  AuthorizationError,
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  nkeyAuthenticator,
  TimeoutError,
} from "@nats-io/transport-node";
import { redactUrl } from "../config/env.ts";
import type { CompiledEnv } from "../config/types.ts";
import type { Logger } from "../telemetry/logger.ts";

/**
 * How long one dial may take from TCP connect to the handshake's PONG (nats.js defaults to
 * 20 s). A server that drops the connection mid-handshake (TLS 1.3 refusing a missing client
 * certificate does so after the client thinks the handshake is done) is only noticed then.
 */
export const HANDSHAKE_TIMEOUT_MS = 5_000;

/** NATS connection options from the validated environment (auth, TLS, reconnect forever). */
export function connectionOptions(env: CompiledEnv, servers: readonly string[]): NodeConnectionOptions {
  const options: NodeConnectionOptions = {
    servers: [...servers],
    name: "jetfn",
    timeout: HANDSHAKE_TIMEOUT_MS,
    maxReconnectAttempts: -1,
    // nats.js otherwise closes the connection for good after two authorization errors in a
    // row while reconnecting (credentials rotated, server restarted with new auth); the host
    // keeps retrying instead. The first connect still fails at once (no waitOnFirstConnect).
    ignoreAuthErrorAbort: true,
    reconnectTimeWait: 1000,
    reconnectJitter: 500,
    // nats.js otherwise builds an Error (capturing a stack) for every request, in case it
    // times out: every PubAck awaited (an output, ctx.publish, a dead letter) paid for two.
    // Profiled on the echo benchmark, that was 17% of the host's CPU. A timeout still
    // rejects with a TimeoutError, only without the caller's stack.
    noAsyncTraces: true,
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

/** Which variables supplied the credentials, for an authorization failure's message. */
function credentialSource(env: CompiledEnv): string {
  const used = [
    env.natsCreds ? "NATS_CREDS" : "",
    env.natsNkeySeed ? "NATS_NKEY_SEED" : "",
    env.natsToken ? "NATS_TOKEN" : "",
    env.natsUser ? "NATS_USER/NATS_PASSWORD" : "",
    env.natsTlsCert ? "NATS_TLS_CERT/NATS_TLS_KEY" : "",
  ].filter(Boolean);
  return used.length > 0
    ? `check ${used.join(", ")}`
    : "no credentials were given (set NATS_CREDS, NATS_NKEY_SEED, NATS_TOKEN or NATS_USER/NATS_PASSWORD)";
}

/**
 * The first connect's failure as one line: the servers (any `user:password@` in them
 * redacted) and why. nats.js gives up the first connect after one pass over the servers
 * (no `waitOnFirstConnect`), so a wrong credential fails start-up at once; the server's
 * error text never carries the secret.
 */
export function connectFailure(env: CompiledEnv, servers: readonly string[], error: unknown): Error {
  const where = servers.map(redactUrl).join(",");
  const tls = Boolean(env.natsTlsCa || env.natsTlsCert) || servers.some((url) => /^(tls|wss):/i.test(url.trim()));
  let reason: string;
  if (error instanceof AuthorizationError) {
    reason = `authorization failed (server said: ${error.message}); ${credentialSource(env)}`;
  } else if (error instanceof TimeoutError) {
    reason =
      `no NATS handshake within ${HANDSHAKE_TIMEOUT_MS / 1000}s (the server accepted the connection but closed it or did not answer` +
      (tls ? "; if it requires a client certificate, check NATS_TLS_CERT/NATS_TLS_KEY and NATS_TLS_CA)" : ")");
  } else {
    reason = String((error as Error)?.message ?? error).replace(/\s*\n\s*/g, " ");
  }
  return new Error(`cannot connect to NATS at ${where}: ${reason}`, { cause: error });
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
    throw connectFailure(env, servers, error);
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
      } else if (status.type === "error") log.error({ err: status.error }, "NATS error");
    }
  })();
  return nc;
}

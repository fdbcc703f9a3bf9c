import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type MsgHdrs, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import type { CompiledEnv } from "../config/types.ts";
import type { BrokerPublisher } from "../contracts/broker.ts";
import { DELAYED_STREAM, parseDelayedId } from "../contracts/delayed.ts";
import type { Logger } from "../telemetry/logger.ts";
import { brokerFailureOf } from "./broker-failures.ts";
import { connectNats } from "./connect.ts";
import { publishDelayed } from "./delayed-stream.ts";

/** One connection and what the host uses it through. */
export interface NatsClients {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** JetStream publishing as the invoke layer sees it. */
  readonly publisher: BrokerPublisher;
}

/**
 * Connects (see {@link connectNats}) and opens the JetStream clients on that connection,
 * after one request that JetStream answers (a server without it fails here, saying so).
 * `reachJetStream` runs that request: a host waits out an election with it.
 */
export async function openClients(
  env: CompiledEnv,
  servers: readonly string[],
  log: Logger,
  onConnected?: (connected: boolean) => void,
  reachJetStream: (request: () => Promise<unknown>) => Promise<unknown> = (request) => request(),
): Promise<NatsClients> {
  let connected = true;
  const nc = await connectNats(env, servers, log, (up) => {
    connected = up;
    onConnected?.(up);
  });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  try {
    await reachJetStream(() => jsm.getAccountInfo());
  } catch (error) {
    await nc.close().catch(() => {});
    throw error;
  }
  return { nc, js, jsm, publisher: jetstreamPublisher(nc, js, () => connected) };
}

function jetstreamPublisher(nc: NatsConnection, js: JetStreamClient, connected: () => boolean): BrokerPublisher {
  return {
    get maxPayload() {
      return nc.info?.max_payload ?? 1024 * 1024;
    },
    async publish(subject, data, options = {}) {
      if (options.deliverAt !== undefined) {
        const id = await publishDelayed(js, {
          target: subject,
          data,
          deliverAt: options.deliverAt,
          ...(options.headers ? { headers: options.headers } : {}),
          ...(options.msgId ? { msgId: options.msgId } : {}),
        });
        return { stream: DELAYED_STREAM, seq: parseDelayedId(id) ?? 0, duplicate: false, id };
      }
      let h: MsgHdrs | undefined;
      if (options.headers && Object.keys(options.headers).length > 0) {
        h = natsHeaders();
        for (const [key, value] of Object.entries(options.headers)) h.set(key, value);
      }
      const ack = await js.publish(subject, data, { headers: h, ...(options.msgId ? { msgID: options.msgId } : {}) });
      return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
    },
    failureOf: (error) => brokerFailureOf(error, connected() && !nc.isClosed()),
  };
}

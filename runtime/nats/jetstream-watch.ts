import { setTimeout as sleep } from "node:timers/promises";
import { JetStreamApiError, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../telemetry/logger.ts";
import { Periodic } from "./periodic.ts";
import { within } from "./within.ts";

/** JetStream's answer when it has no meta leader: "JetStream system temporarily unavailable". */
const UNAVAILABLE = 10008;
/** How often JetStream is asked about a consumer of the host's. */
const PROBE_MS = 2000;
/** How long a probe waits for its answer. */
const PROBE_TIMEOUT_MS = 2000;
/** Probes failed in a row, while connected, before the host moves to another server: about 10 s. */
const FAILURES_BEFORE_MOVE = 5;
/** Reconnects asked for in one move, and how long each may take to land elsewhere. */
const MOVE_TRIES = 5;
const MOVE_WAIT_MS = 2000;

export interface JetStreamWatchOptions {
  readonly nc: NatsConnection;
  readonly jsm: JetStreamManager;
  /** A consumer of the host's: its info needs the cluster's meta leader, which a cut-off node cannot reach. */
  readonly stream: string;
  readonly durable: string;
  /** Servers in the host's own list (`NATS_URL`): unlike servers learned from the cluster, the client never drops them. */
  readonly configured: number;
  readonly log: Logger;
}

/**
 * Notices a server that is up but cannot serve JetStream: a node cut off from the rest of its
 * cluster (the minority side of a partition) keeps its clients connected, and every pull
 * and API call through it fails, times out or waits in vain, while the connection itself is
 * healthy, so nothing in the client notices. Every {@link PROBE_MS} this asks for the info
 * of a consumer of the host's (any answer but "temporarily unavailable" will do, "not found"
 * included: JetStream answered); after
 * {@link FAILURES_BEFORE_MOVE} failures in a row while connected, and when the client knows
 * another server, it reconnects: the client picks another server of the cluster (the
 * majority's), where the host goes on.
 */
export class JetStreamWatch {
  readonly #options: JetStreamWatchOptions;
  readonly #probes = new Periodic(async () => this.#probe());
  #failures = 0;

  constructor(options: JetStreamWatchOptions) {
    this.#options = options;
  }

  start(intervalMs = PROBE_MS): void {
    this.#probes.start(intervalMs);
  }

  stop(): Promise<void> {
    return this.#probes.stop();
  }

  async #probe(): Promise<void> {
    const { nc, jsm, stream, durable, log } = this.#options;
    if (nc.isClosed()) return;
    try {
      await within(jsm.consumers.info(stream, durable), PROBE_TIMEOUT_MS, `consumer ${stream} > ${durable} info`);
      this.#failures = 0;
      return;
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code !== UNAVAILABLE) {
        this.#failures = 0;
        return;
      }
      if (++this.#failures < FAILURES_BEFORE_MOVE) return;
      this.#failures = 0;
      const server = nc.getServer();
      if (!this.#knowsAnotherServer()) {
        log.warn(
          { err: error, server },
          "JetStream does not answer through this server, and no other server is known: list every node of the cluster in NATS_URL",
        );
        return;
      }
      log.warn(
        { err: error, server },
        "JetStream does not answer through this server while connected to it (cut off from its cluster?): moving to another server",
      );
    }
    await this.#move();
  }

  /** Reconnects until the client is on another server (it may pick the same one again), a few times. */
  async #move(): Promise<void> {
    const { nc, log } = this.#options;
    const server = nc.getServer();
    for (let tries = 0; tries < MOVE_TRIES && !nc.isClosed(); tries++) {
      await nc.reconnect().catch((error: unknown) => log.warn({ err: error }, "reconnecting failed"));
      const until = performance.now() + MOVE_WAIT_MS;
      while (nc.getServer() === server && performance.now() < until && !nc.isClosed()) await sleep(100);
      if (nc.getServer() !== server) return log.info({ from: server, to: nc.getServer() }, "moved to another server");
    }
  }

  /**
   * Whether the client may reconnect to a server besides this one: configured, or learned
   * from the cluster. A node cut off from its cluster stops reporting the others, and the
   * client forgets the servers it had only learned: only `NATS_URL`'s stay.
   */
  #knowsAnotherServer(): boolean {
    return this.#options.configured > 1 || (this.#options.nc.info?.connect_urls?.length ?? 0) > 1;
  }
}

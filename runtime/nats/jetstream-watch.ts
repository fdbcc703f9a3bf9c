import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../telemetry/logger.ts";
import { Periodic } from "./periodic.ts";
import type { PullHealth } from "./pull-loop.ts";

/** How often the watch looks. */
const LOOK_MS = 2000;
/** How long pulls may fail with none working, while connected, before the host moves to another server. */
const FAILING_FOR_MS = 10_000;
/** Reconnects asked for in one move, and how long each may take to land elsewhere. */
const MOVE_TRIES = 5;
const MOVE_WAIT_MS = 2000;

export interface JetStreamWatchOptions {
  readonly nc: NatsConnection;
  /** Servers in the host's own list (`NATS_URL`): unlike servers learned from the cluster, the client never drops them. */
  readonly configured: number;
  readonly log: Logger;
}

/**
 * Notices a server that is up but cannot serve JetStream: a node cut off from the rest of its
 * cluster (the minority side of a partition) keeps its clients connected, and every pull
 * through it fails (missed heartbeats, timeouts, "JetStream system temporarily unavailable")
 * while the connection itself is healthy, so nothing in the client notices. Every pull loop
 * of the host reports to it ({@link PullHealth}); when pulls have failed and none has
 * worked for {@link FAILING_FOR_MS} while connected, and the client knows another server, it
 * reconnects: the client picks another server of the cluster (the majority's), where the
 * host goes on. A host whose pulls simply stopped (paused) is not moved: nothing failed.
 */
export class JetStreamWatch implements PullHealth {
  readonly #options: JetStreamWatchOptions;
  readonly #looks = new Periodic(async () => this.#look());
  #lastOk = performance.now();
  #failedSinceOk = false;

  constructor(options: JetStreamWatchOptions) {
    this.#options = options;
  }

  ok(): void {
    this.#lastOk = performance.now();
    this.#failedSinceOk = false;
  }

  failed(): void {
    this.#failedSinceOk = true;
  }

  start(intervalMs = LOOK_MS): void {
    this.#looks.start(intervalMs);
  }

  stop(): Promise<void> {
    return this.#looks.stop();
  }

  async #look(): Promise<void> {
    const { nc, log } = this.#options;
    if (nc.isClosed() || !this.#failedSinceOk || performance.now() - this.#lastOk < FAILING_FOR_MS) return;
    // Looked at again a whole period from now, wherever the host is then.
    this.ok();
    const server = nc.getServer();
    if (!this.#knowsAnotherServer()) {
      log.warn({ server }, "no pull works through this server, and no other server is known: list every node of the cluster in NATS_URL");
      return;
    }
    log.warn({ server }, "no pull works through this server while connected to it (cut off from its cluster?): moving to another server");
    // The client may pick the same server again: then it is asked again, a few times.
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

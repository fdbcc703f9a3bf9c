import type { JetStreamManager } from "@nats-io/jetstream";
import { type Consumption, consumedTogether } from "../contracts/consumption.ts";
import { DelegatingDelivery, type Delivery } from "../contracts/delivery.ts";
import type { Gate } from "../contracts/gate.ts";
import { parseReplayOf, REPLAY_STREAM, ReplayHeader } from "../contracts/replay.ts";
import type { StreamPosition } from "../sdk/types.ts";
import type { Logger } from "../telemetry/logger.ts";
import { Periodic } from "./periodic.ts";

/**
 * How often a host asks whether any of its functions has replays waiting: a replay starts
 * on every replica within about this long (plus a pull loop's idle wait, 1 s).
 */
const POLL_MS = 1000;

/**
 * Which functions have replays to run: one request per poll for every function of the
 * host (the list of `JETFN_REPLAY`'s consumers, with their pending and un-acked counts).
 * A function's replay loop pulls only while its consumer has something: an idle replay
 * loop must not hold open pulls, which would take room from the function's live events
 * (the two share the function's concurrency). A failed poll keeps the last answer.
 */
export class ReplayWatch {
  readonly #jsm: JetStreamManager;
  readonly #log: Logger;
  readonly #gates = new Map<string, ReplayGate>();
  readonly #polls = new Periodic(() => this.#poll());
  /** The last poll failed: the next failures are not worth a warning each. */
  #failing = false;

  constructor(jsm: JetStreamManager, log: Logger) {
    this.#jsm = jsm;
    this.#log = log;
  }

  /** The gate of the replay loop reading `durable`: the function's own, closed while nothing waits. */
  gate(durable: string, admission: Gate): ReplayGate {
    const gate = new ReplayGate(admission);
    this.#gates.set(durable, gate);
    return gate;
  }

  /** Polls now, then every second. */
  start(intervalMs = POLL_MS): void {
    this.#polls.start(intervalMs);
  }

  stop(): Promise<void> {
    return this.#polls.stop();
  }

  async #poll(): Promise<void> {
    const waiting = new Map<string, number>();
    try {
      for await (const info of this.#jsm.consumers.list(REPLAY_STREAM)) {
        waiting.set(info.name, info.num_pending + info.num_ack_pending);
      }
    } catch (error) {
      // Said once per streak: replays do not start while it lasts (a permission missing, say).
      if (this.#failing) this.#log.debug({ err: error, stream: REPLAY_STREAM }, "replay consumers poll failed");
      else this.#log.warn({ err: error, stream: REPLAY_STREAM }, "listing the replay consumers failed; replays wait until it works");
      this.#failing = true;
      return;
    }
    this.#failing = false;
    for (const [durable, gate] of this.#gates) gate.waiting = waiting.get(durable) ?? 0;
  }
}

/**
 * A replay loop's gate: the function's admission (breaker, pause), and closed while no
 * replay waits. Open pulls are left to expire (2 s) when the replays run out.
 */
export class ReplayGate implements Gate {
  readonly #admission: Gate;
  /** Copies not yet delivered or not yet acked, on any replica, at the last poll. */
  waiting = 0;

  constructor(admission: Gate) {
    this.#admission = admission;
  }

  closedForMs(): number {
    return this.#admission.closedForMs();
  }

  allowance(): number {
    return this.waiting > 0 ? this.#admission.allowance() : 0;
  }

  get probing(): boolean {
    return this.#admission.probing;
  }

  onClose(listener: () => void): () => void {
    return this.#admission.onClose(listener);
  }

  onOpen(listener: () => void): () => void {
    return this.#admission.onOpen(listener);
  }
}

/**
 * A copy from `JETFN_REPLAY` as the function sees it: the original's subject (from
 * `Jetfn-Subject`) and, in `replayOf`, where the original is. Stream, sequence, delivery
 * count and settlement stay the copy's, so an output's `Nats-Msg-Id`, the attempt tally and
 * a dead letter's id are the copy's own and never collide with the original's.
 */
export function replayed(delivery: Delivery): Delivery {
  const of = parseReplayOf(delivery.headers[ReplayHeader.Of]) ?? { stream: delivery.stream, seq: delivery.seq };
  return new ReplayedDelivery(delivery, delivery.headers[ReplayHeader.Subject] || delivery.subject, of);
}

/** A replay's copy as its function sees it: the original's subject and position. */
class ReplayedDelivery extends DelegatingDelivery {
  readonly #subject: string;
  readonly #of: StreamPosition;

  constructor(copy: Delivery, subject: string, of: StreamPosition) {
    super(copy);
    this.#subject = subject;
    this.#of = of;
  }

  override get subject(): string {
    return this.#subject;
  }
  override get replayOf(): StreamPosition {
    return this.#of;
  }
}

/**
 * A function's events and its replays, consumed side by side (see `consumedTogether`).
 * Ready is the events' loop's: the replay loop binds when there is something to replay.
 */
export function withReplays(events: Consumption, replays: Consumption, gate: ReplayGate): Consumption {
  return consumedTogether(events, replays, { status: () => ({ replaysWaiting: gate.waiting }) });
}

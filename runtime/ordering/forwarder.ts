/**
 * An ordered function's forwarder (docs/ordering.md, "Design"). One host at a time holds
 * the lease `<function>.forwarder` in `JETFN_LEASES` and reads the function's stream once,
 * in order, through the function's own durable, and publishes each event to its partition's
 * subject in `JETFN_ORDERED_<function>`; only after the PubAck is the original acked.
 *
 * The copies must land in the stream in the order of their originals, none missing before
 * a later one. Each copy's `Nats-Msg-Id` is where its original is (`<stream>:<seq>`).
 * Publishes are pipelined, and each expects the stream's last message to be the copy before
 * it (`Nats-Expected-Last-Msg-Id`). A copy that fails (a timeout, an election, another
 * writer in between) makes every later one fail too, as none finds the copy it expects
 * last: what landed is always in order, nothing missing before it. (A stream's last
 * sequence would not do: a write of another in a failed copy's place would let the next
 * copy through.) The forwarder then resyncs: it waits for what is in flight, rewinds its
 * durable to its ack floor, reads the stream's last sequence, and publishes one at a time,
 * each expecting that sequence, while the stream answers "duplicate" (copies that landed
 * before the failure and were not acked yet); once one lands anew, pipelined again. An
 * original up to the last whose copy landed is acked and not forwarded again (see #landed).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { CompiledFunction, CompiledOrdering } from "../config/types.ts";
import type { Delivery } from "../contracts/delivery.ts";
import { eventKey } from "../contracts/event-key.ts";
import type { Gate } from "../contracts/gate.ts";
import { orderedStream, orderedSubject } from "../contracts/ordered.ts";
import type { NatsClients } from "../nats/clients.ts";
import type { KV } from "../nats/leases.ts";
import { copiedUpTo, copyId, publishCopy } from "../nats/ordered-copy.ts";
import { ensureConsumer, forwarderConsumer, rewindConsumer } from "../nats/provision.ts";
import { PubAckError, PubAcks, STAGED_DUPLICATE } from "../nats/pub-acks.ts";
import { PullLoop } from "../nats/pull-loop.ts";
import { SingletonLease } from "../nats/singleton-lease.ts";
import type { Logger } from "../telemetry/logger.ts";
import { partitionOf } from "./key.ts";

export interface ForwarderDeps {
  readonly nc: NatsClients["nc"];
  readonly js: NatsClients["js"];
  readonly jsm: NatsClients["jsm"];
  /** The `JETFN_LEASES` bucket. */
  readonly kv: KV;
  readonly fn: CompiledFunction;
  readonly hostId: string;
  /** The function's admission: a paused function's events stay in its stream. */
  readonly admission: Gate;
  /** Already naming the function. */
  readonly log: Logger;
}

/** Copies in flight at once. */
const WINDOW = 512;

/** A copy whose PubAck has not come this long after it was sent counts as failed (the forwarder resyncs). */
const PUBACK_TIMEOUT_MS = 5000;

/** How long a resync waits after a copy's id was found staged, not stored (see STAGED_DUPLICATE). */
const STAGED_RETRY_MS = 1000;

/** A durable that could not be bound (JetStream unavailable for now) is tried again this much later. */
const BIND_RETRY_MS = 1000;

/** The lease key of a function's forwarder (`<function>.p.<n>` and `<function>.m.<host>` are its partitions' and members'). */
export function forwarderLeaseKey(fn: string): string {
  return `${fn}.forwarder`;
}

/** The key in `JETFN_LEASES` where a forwarder records the original whose copy landed last (see #landed). */
export function forwardedKey(fn: string): string {
  return `${fn}.forwarded`;
}

/** How often a forwarder records how far its copies landed, for the next one. */
const RECORD_EVERY_MS = 1000;

/** Forwards an ordered function's events to their partitions while this host holds the forwarder's lease. */
export class Forwarder {
  readonly #deps: ForwarderDeps;
  /** The function as the forwarder's durable sees it. */
  readonly #source: CompiledFunction;
  readonly #ordering: CompiledOrdering;
  readonly #stream: string;
  readonly #log: Logger;
  readonly #lease: SingletonLease;
  /** Where the copies' PubAcks come. */
  readonly #pubAcks: PubAcks;
  /** While held: the pull loop on the function's durable, its start, and the timer recording #landed. */
  #held: { loop: PullLoop; leaving: AbortController; started: Promise<void>; recording: NodeJS.Timeout } | undefined;
  /** Publishing one at a time: the stream's last sequence. */
  #last = 0;
  /** Pipelined: the id of the last copy sent, which the next one expects last. */
  #lastId = "";
  /** Publishing one at a time (after a bind or resync) until a copy lands that is no duplicate. */
  #careful = true;
  /** Copies waiting to be published one at a time, and the last of them. */
  #queued = 0;
  #tail: Promise<unknown> = Promise.resolve();
  /** A copy failed: nothing more is published until the resync. */
  #broken = false;
  /** A copy failed as a duplicate of one in process: the resync waits a little first. */
  #staged = false;
  /**
   * The original whose copy landed last (anew, or found a duplicate). Copies land in the
   * order of their originals, none missing before a later one, so every original up to it
   * has its copy: one that comes again (its ack was lost or late, a rewind) is acked, not
   * forwarded again, however long after its copy (the duplicate window is only 30 s or so).
   * Recorded every second under {@link forwardedKey}, where a forwarder taking over reads it.
   */
  #landed = 0;
  /** What was last recorded of #landed. */
  #recorded = 0;
  /** When the function's stream was created, as its info says (and in epoch ms): #landed and the copies' ids count in that stream only. */
  #created = "";
  #createdMs = 0;
  /** Copies published and acked, and resyncs after a failed copy, for status. */
  #forwarded = 0;
  #resyncs = 0;
  /** The next turn's start, while copies wait for it (see {@link #nextTurn}). */
  #turnStart: Promise<void> | undefined;
  /** Changes of holding, in order: each waits for the one before. */
  #turn: Promise<void> = Promise.resolve();

  constructor(deps: ForwarderDeps) {
    this.#deps = deps;
    this.#source = forwarderConsumer(deps.fn);
    this.#pubAcks = new PubAcks(deps.nc, PUBACK_TIMEOUT_MS);
    this.#ordering = deps.fn.ordering!;
    this.#stream = orderedStream(deps.fn.name);
    this.#log = deps.log.child({ component: "forwarder" });
    this.#lease = new SingletonLease({
      kv: deps.kv,
      key: forwarderLeaseKey(deps.fn.name),
      hostId: deps.hostId,
      ttlMs: this.#ordering.leaseTtlMs,
      log: this.#log,
      onChange: (held) => {
        this.#turn = this.#turn.then(() => (held ? this.#begin() : this.#end()));
      },
    });
  }

  start(): void {
    this.#lease.start();
  }

  /** Whether this host forwards now. */
  get forwarding(): boolean {
    return this.#held !== undefined;
  }

  /** Ends open pulls early (a reconnect): they are made anew. */
  interrupt(): void {
    this.#held?.loop.interrupt();
  }

  /** Stops forwarding, lets what is in flight land and be acked, and hands the lease on. */
  async stop(): Promise<void> {
    await this.#end();
    await this.#lease.stop();
    await this.#turn;
    this.#pubAcks.close();
  }

  status(): Record<string, unknown> {
    return { forwarding: this.forwarding, forwarded: this.#forwarded, resyncs: this.#resyncs };
  }

  #begin(): Promise<void> {
    if (this.#held) return Promise.resolve();
    const { js, jsm, admission } = this.#deps;
    const source = this.#source;
    const leaving = new AbortController();
    // A delivery's copy goes out only while this holding lasts (see #publish).
    const loop = new PullLoop(js, source, (delivery) => this.#forward(delivery, leaving.signal), this.#log, {
      capacity: WINDOW,
      // One pull at a time: events are forwarded in stream order.
      maxPulls: 1,
      admission,
      rebind: async () => {
        await ensureConsumer(jsm, source, this.#log);
        await this.#sameStream();
      },
      resync: {
        drop: () => {},
        rewind: async () => {
          // A copy whose id the stream holds staged (see STAGED_DUPLICATE): its first publish
          // lands, or the id stays staged until the duplicate window ends. Not at once again.
          if (this.#staged) await sleep(STAGED_RETRY_MS, undefined, { signal: leaving.signal }).catch(() => {});
          this.#staged = false;
          await this.#bind(leaving.signal);
        },
      },
    });
    const started = (async () => {
      while (!leaving.signal.aborted) {
        try {
          await this.#bind(leaving.signal);
          break;
        } catch (error) {
          if (!leaving.signal.aborted) this.#log.warn({ err: error }, "binding the forwarder's consumer failed; trying again");
          await sleep(BIND_RETRY_MS, undefined, { signal: leaving.signal }).catch(() => {});
        }
      }
      if (!leaving.signal.aborted) {
        this.#log.info({ stream: this.#stream, from: this.#last }, "forwarding the function's events to its partitions");
        loop.start();
      }
    })();
    const recording = setInterval(() => void this.#record(), RECORD_EVERY_MS).unref();
    this.#held = { loop, leaving, started, recording };
    return Promise.resolve();
  }

  async #end(): Promise<void> {
    const held = this.#held;
    if (!held) return;
    this.#held = undefined;
    held.leaving.abort();
    clearInterval(held.recording);
    await held.started;
    await held.loop.stop();
    await held.loop.settled();
    await this.#record();
  }

  /**
   * A stream of the function's name made anew (deleted, then added) starts its sequences
   * again: how far copies landed in the one before says nothing of it.
   */
  async #sameStream(): Promise<void> {
    const { created } = await this.#deps.jsm.streams.info(this.#deps.fn.stream);
    if (created === this.#created) return;
    this.#created = created;
    this.#createdMs = Date.parse(created);
    this.#landed = 0;
    this.#recorded = 0;
  }

  /** What a forwarder recorded of #landed, in this incarnation of the function's stream; undefined without a record. */
  async #recordedLanded(): Promise<number | undefined> {
    const entry = await this.#deps.kv.get(forwardedKey(this.#deps.fn.name));
    try {
      const recorded = entry?.json<{ stream?: unknown; landed?: unknown }>();
      return recorded?.stream === this.#created && typeof recorded.landed === "number" ? recorded.landed : undefined;
    } catch {
      return undefined;
    }
  }

  /** Records #landed for the next forwarder, when it moved; a failed write is tried at the next. */
  async #record(): Promise<void> {
    const landed = this.#landed;
    if (landed <= this.#recorded) return;
    try {
      await this.#deps.kv.put(forwardedKey(this.#deps.fn.name), JSON.stringify({ stream: this.#created, landed }));
      this.#recorded = Math.max(this.#recorded, landed);
    } catch (error) {
      this.#log.debug({ err: error }, "recording how far the copies landed failed; trying again");
    }
  }

  /**
   * Before the first pull and after a failed copy: how far copies landed (this host's own
   * count, what the forwarder before recorded, the stream's last copy), the durable rewound
   * to start after that or its ack floor, whichever is earlier (what was forwarded and not
   * acked comes again, and is acked as landed or found a duplicate), the stream's last
   * sequence read, and copies published one at a time until one lands anew.
   */
  async #bind(signal: AbortSignal): Promise<void> {
    const { jsm } = this.#deps;
    // Rewinding the durable under the host that holds the lease now would send it back too.
    if (signal.aborted || !this.#lease.held()) throw new Error("the forwarder's lease is no longer held");
    await ensureConsumer(jsm, this.#source, this.#log);
    this.#last = (await jsm.streams.info(this.#stream)).state.last_seq;
    await this.#sameStream();
    // Another host may have forwarded further than this one knows (a takeover): what it
    // recorded last, and the stream's last copy if its partition has not taken it yet.
    const copied = await copiedUpTo(jsm, this.#stream, this.#last, this.#createdMs);
    const recorded = await this.#recordedLanded();
    const known = this.#landed > 0 || recorded !== undefined || copied > 0;
    this.#landed = Math.max(this.#landed, recorded ?? 0, copied);
    // Whatever the durable delivered past that and says is acked came to a forwarder that may
    // not have forwarded it (it lost its lease first); the server's word alone may be wrong
    // (see rewindConsumer). Without any record (the first forwarder), its ack floor is all.
    await rewindConsumer(jsm, this.#source, this.#log, signal, known ? this.#landed : undefined);
    this.#careful = true;
    this.#broken = false;
  }

  #forward(delivery: Delivery, holding: AbortSignal): Promise<void> {
    if (!this.#careful && this.#queued === 0) return this.#pipelined(delivery, holding);
    // Behind the copies published one at a time: once one lands anew, the rest go pipelined.
    this.#queued++;
    const turn = this.#tail
      .then(async () => {
        if (!this.#careful) return { sent: this.#pipelined(delivery, holding) };
        await this.#publish(delivery, holding, undefined);
        return undefined;
      })
      .finally(() => this.#queued--);
    this.#tail = turn;
    return turn.then((pipelined) => pipelined?.sent);
  }

  /** Publishes a copy pipelined behind the one sent before it, unless its copy landed already. */
  #pipelined(delivery: Delivery, holding: AbortSignal): Promise<void> {
    if (delivery.seq > this.#landed) return this.#publish(delivery, holding, this.#chain(delivery));
    delivery.ack();
    return Promise.resolve();
  }

  /** A pipelined copy's expectation: the copy sent before it. */
  #chain(delivery: Delivery): { lastMsgID: string } {
    const expect = { lastMsgID: this.#lastId };
    this.#lastId = copyId(delivery, this.#createdMs);
    return expect;
  }

  /**
   * Publishes one copy, pipelined behind the copy `expect` names, or alone, expecting the
   * stream's last sequence as last read; acks the original once the copy landed (anew, or
   * found a duplicate: it landed before).
   */
  async #publish(delivery: Delivery, holding: AbortSignal, expect: { lastMsgID: string } | undefined): Promise<void> {
    // The copies of one turn go out together, in order: one write to the socket, not one each.
    await this.#nextTurn();
    // Nor any once this holding ended, or the lease ran out by this host's clock (a host that
    // stalled and woke): another host may forward by now, from the same durable. Left
    // unacked, the original comes again to whoever holds the lease.
    if (this.#broken || holding.aborted || !this.#lease.held()) return;
    if (!expect && delivery.seq <= this.#landed) {
      delivery.ack();
      return;
    }
    const partition = partitionOf(eventKey(delivery, this.#ordering.key), this.#ordering.partitions);
    try {
      const subject = orderedSubject(this.#deps.fn.name, partition);
      const id = copyId(delivery, this.#createdMs);
      const ack = await publishCopy(this.#pubAcks, subject, delivery, id, expect ?? { lastSequence: this.#last });
      if (!expect && !ack.duplicate) {
        this.#last = ack.seq;
        this.#lastId = id;
        this.#careful = false;
      }
      if (delivery.seq > this.#landed) this.#landed = delivery.seq;
      delivery.ack();
      this.#forwarded++;
    } catch (error) {
      if (error instanceof PubAckError && error.code === STAGED_DUPLICATE) this.#staged = true;
      this.#break(`forwarding failed: ${(error as Error).message}`);
    }
  }

  /** Resolves at the next turn of the event loop: every copy waiting for it is published then. */
  #nextTurn(): Promise<void> {
    this.#turnStart ??= new Promise((resolve) =>
      setImmediate(() => {
        this.#turnStart = undefined;
        resolve();
      }),
    );
    return this.#turnStart;
  }

  #break(why: string): void {
    if (this.#broken) return;
    this.#broken = true;
    this.#resyncs++;
    this.#log.warn({ why }, "forwarding stopped; resyncing from the durable's ack floor");
    this.#held?.loop.resync(why);
  }
}

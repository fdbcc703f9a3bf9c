/**
 * The delayed events' mover (issue 18; wire format in contracts/delayed.ts). Every host runs
 * one; the one holding the lease `jetfn_delayed.mover` (see singleton-lease.ts) moves:
 *
 * - every `tickMs` (and as each second begins) it probes each bucket from two seconds back
 *   to the one a tick ahead, from where it left off in each, with a direct get; a bucket
 *   that holds something is read through a short-lived ordered consumer (ack none);
 * - an event that is due is published to its target with its data and headers (less
 *   `Jetfn-*` and `Nats-*`) and `Nats-Msg-Id: delayed:<stream created>:<id>`, and only after
 *   the PubAck deleted; one due later in its second is remembered by id and time, and just
 *   before its time read again by id (so a cancelled one is not sent), then delivered;
 * - when it takes the lease, and every `sweepMs` after, it lists the stream's subjects and
 *   reads every older bucket that still holds events: what was due while no mover ran, and
 *   events a producer put in a second already passed.
 *
 * No durable consumer reads the stream, so no delayed event is ever pending an ack. A
 * target that refuses an event keeps it parked and is tried again with backoff (see
 * delayed-parking.ts). A mover that dies between a publish and its delete leaves the event
 * to the next, whose publish the target's duplicate window drops.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { bucketFilter, bucketOf, bucketStart, DELAYED_PREFIX, DELAYED_STREAM, type DelayedMoverStats } from "../contracts/delayed.ts";
import type { Logger } from "../telemetry/logger.ts";
import { DELIVERY_CHUNK, DelayedDelivery, type DelayedMoverObserver } from "./delayed-delivery.ts";
import { delayedAt, firstDelayed, readDelayed, type StoredDelayed } from "./delayed-read.ts";
import { ensureDelayedStream } from "./delayed-stream.ts";
import { openLeaseBucket } from "./leases.ts";
import { SingletonLease } from "./singleton-lease.ts";

export type { DelayedMoverObserver };

/** The lease key in `JETFN_LEASES` (function names have no underscore, so no function's key is it). */
export const MOVER_LEASE_KEY = "jetfn_delayed.mover";

/** Buckets already begun that are probed again each tick: producers' clocks a little behind still land. */
const GRACE_BUCKETS = 2;
/** Rounds are at least this far apart, so that events due close together go in one round. */
const MIN_GAP_MS = 10;
/** How often the stream's message count (`waiting`) is read, by every host. */
const INFO_EVERY_MS = 1000;

/** Options of {@link DelayedMover}. */
export interface DelayedMoverOptions {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** Unique per host process. */
  readonly hostId: string;
  /** How long the mover's lease lives unrenewed: a dead mover's events wait at most this plus about a second. @default 10000 */
  readonly leaseTtlMs?: number;
  readonly log: Logger;
  readonly observer?: DelayedMoverObserver;
  /** How often buckets are probed for new events. @default 250 */
  readonly tickMs?: number;
  /** How often older buckets are looked for. @default 30000 */
  readonly sweepMs?: number;
  /** The wall clock due times are compared with (epoch ms). @default Date.now */
  readonly clock?: () => number;
}

/** Moves due delayed events to their targets while this host holds the mover's lease. */
export class DelayedMover {
  readonly #nc: NatsConnection;
  readonly #jsm: JetStreamManager;
  readonly #hostId: string;
  readonly #ttl: number;
  readonly #log: Logger;
  readonly #tickMs: number;
  readonly #sweepMs: number;
  readonly #clock: () => number;
  readonly #delivery: DelayedDelivery;
  /** Events read before their time: id -> due. */
  readonly #held = new Map<number, number>();
  /** Per bucket probed lately, the last sequence read in it. */
  readonly #lastSeq = new Map<number, number>();
  /** Subjects that are not delayed events, each warned about once. */
  readonly #strays = new Set<string>();
  #lease: SingletonLease | undefined;
  #createdMs = 0;
  #waiting: number | undefined;
  /** Set while moving: the oldest bucket probed each tick. */
  #cursor: number | undefined;
  /** The lease was lost since the last round began. */
  #leaseLost = false;
  #nextScanAt = 0;
  #nextSweepAt = 0;
  #nextInfoAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;
  /** Rounds failed in a row. */
  #failing = 0;
  #state: "created" | "running" | "stopping" | "stopped" = "created";
  #stopped: Promise<void> | undefined;

  constructor(options: DelayedMoverOptions) {
    this.#nc = options.nc;
    this.#jsm = options.jsm;
    this.#hostId = options.hostId;
    this.#ttl = options.leaseTtlMs ?? 10_000;
    this.#log = options.log.child({ component: "delayed-mover" });
    this.#tickMs = options.tickMs ?? 250;
    this.#sweepMs = options.sweepMs ?? 30_000;
    this.#clock = options.clock ?? Date.now;
    this.#delivery = new DelayedDelivery({
      nc: options.nc,
      js: options.js,
      jsm: options.jsm,
      log: this.#log,
      observer: options.observer ?? {},
      clock: this.#clock,
      streamCreatedMs: () => this.#createdMs,
      going: () => this.#going(),
    });
  }

  /** Creates `JETFN_DELAYED` if missing, opens the lease bucket, and starts looking for the lease. */
  async start(): Promise<void> {
    if (this.#state !== "created") throw new Error("the delayed mover was already started");
    const info = await ensureDelayedStream(this.#jsm);
    this.#createdMs = info.createdMs;
    this.#waiting = info.messages;
    const kv = await openLeaseBucket(this.#nc);
    this.#lease = new SingletonLease({
      kv,
      key: MOVER_LEASE_KEY,
      hostId: this.#hostId,
      ttlMs: this.#ttl,
      log: this.#log,
      onChange: (held) => {
        if (!held) this.#leaseLost = true;
      },
    });
    this.#state = "running";
    this.#lease.start();
    this.#schedule(0);
  }

  /** What the host reports (metrics `jetfn_delayed_*`). */
  stats(): DelayedMoverStats {
    return { moving: this.#moving(), waiting: this.#waiting, ...this.#delivery.counts, parked: this.#delivery.parked };
  }

  /** Stops moving (the round going on ends after its current batch) and hands the lease to another host. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    if (this.#state === "created") {
      this.#state = "stopped";
      return;
    }
    this.#state = "stopping";
    clearTimeout(this.#timer);
    await this.#round;
    await this.#lease?.stop();
    this.#reset();
    this.#state = "stopped";
  }

  #moving(): boolean {
    return this.#state === "running" && this.#cursor !== undefined && this.#lease?.held() === true;
  }

  #schedule(delayMs: number): void {
    if (this.#state !== "running") return;
    this.#timer = setTimeout(() => {
      this.#round = this.#runRound()
        .then(() => {
          if (this.#failing > 0) this.#log.info({ rounds: this.#failing }, "delayed mover rounds succeed again");
          this.#failing = 0;
        })
        .catch((error: unknown) => {
          // One warning per streak: a broker that is away fails every round until it is back.
          if (this.#failing++ === 0) this.#log.warn({ err: error }, "delayed mover round failed; trying again every round");
          else this.#log.debug({ err: error }, "delayed mover round failed");
        })
        .finally(() => {
          this.#round = undefined;
          this.#schedule(this.#nextDelay());
        });
    }, delayMs);
    this.#timer.unref();
  }

  /** Until the next scan, held event or parked try, whichever comes first; a tick when not moving. */
  #nextDelay(): number {
    if (this.#cursor === undefined) return this.#tickMs;
    const now = this.#clock();
    let next = Math.min(this.#nextScanAt, bucketStart(bucketOf(now) + 1), now + this.#tickMs);
    for (const due of this.#held.values()) if (due < next) next = due;
    next = Math.min(next, this.#delivery.nextTryAt() ?? next);
    return Math.max(next - now, MIN_GAP_MS);
  }

  async #runRound(): Promise<void> {
    let now = this.#clock();
    if (now >= this.#nextInfoAt) await this.#readInfo(now);
    // Lost since the last round, even if held again now: what was read then is read again.
    if (this.#leaseLost || !this.#lease?.held()) {
      this.#leaseLost = false;
      if (this.#cursor !== undefined) this.#reset();
      if (!this.#lease?.held()) return;
    }
    if (this.#cursor === undefined) {
      this.#log.info("moving delayed events");
      this.#cursor = bucketOf(now) - GRACE_BUCKETS;
      this.#nextSweepAt = now;
    }
    if (now >= this.#nextSweepAt) {
      await this.#sweep();
      this.#nextSweepAt = this.#clock() + this.#sweepMs;
    }
    now = this.#clock();
    const current = bucketOf(now);
    if (now >= this.#nextScanAt || current > bucketOf(this.#nextScanAt - this.#tickMs)) {
      this.#nextScanAt = now + this.#tickMs;
      const last = bucketOf(now + this.#tickMs);
      for (let bucket = this.#cursor; bucket <= last && this.#going(); bucket++) await this.#scan(bucket);
      this.#cursor = Math.max(this.#cursor ?? current, current - GRACE_BUCKETS);
      for (const bucket of this.#lastSeq.keys()) if (bucket < this.#cursor) this.#lastSeq.delete(bucket);
    }
    await this.#deliverHeld();
    await this.#delivery.retryParked();
  }

  /** Still moving: running, and the lease held. */
  #going(): boolean {
    return this.#state === "running" && this.#cursor !== undefined && this.#lease?.held() === true;
  }

  /** The lease was lost (or the mover stops): forget what was read; the next mover reads it again. */
  #reset(): void {
    if (this.#cursor !== undefined) this.#log.info("no longer moving delayed events");
    this.#cursor = undefined;
    this.#held.clear();
    this.#delivery.reset();
    this.#lastSeq.clear();
  }

  async #readInfo(now: number): Promise<void> {
    this.#nextInfoAt = now + INFO_EVERY_MS;
    try {
      const info = await this.#jsm.streams.info(DELAYED_STREAM);
      this.#waiting = info.state.messages;
      this.#createdMs = Date.parse(info.created);
    } catch (error) {
      this.#log.debug({ err: error }, "could not read the delayed stream's info");
    }
  }

  /** Reads every bucket older than the cursor that still holds events, oldest first. */
  async #sweep(): Promise<void> {
    const info = await this.#jsm.streams.info(DELAYED_STREAM, { subjects_filter: `${DELAYED_PREFIX}.>` });
    const older = new Set<number>();
    for (const subject of Object.keys(info.state.subjects ?? {})) {
      const token = subject.slice(DELAYED_PREFIX.length + 1).split(".")[0] ?? "";
      const bucket = /^[0-9]{1,16}$/.test(token) ? Number(token) : undefined;
      if (bucket === undefined || !subject.slice(DELAYED_PREFIX.length + 1 + token.length).startsWith(".")) this.#stray(subject);
      else if (bucket < this.#cursor!) older.add(bucket);
    }
    for (const bucket of [...older].sort((a, b) => a - b)) {
      if (!this.#going()) return;
      await this.#scan(bucket);
    }
  }

  #stray(subject: string): void {
    if (this.#strays.has(subject)) return;
    this.#strays.add(subject);
    this.#log.warn({ subject }, "a message in JETFN_DELAYED is not a delayed event (jetfn.delayed.<epoch seconds>.<target>): left alone");
  }

  /** Reads what `bucket` holds past what was read of it, and takes each event. */
  async #scan(bucket: number): Promise<void> {
    const filter = bucketFilter(bucket);
    const from = (this.#lastSeq.get(bucket) ?? 0) + 1;
    const first = await firstDelayed(this.#jsm, filter, from);
    if (first === null) return;
    const last = await readDelayed(this.#jsm, filter, {
      fromSeq: first.seq,
      batch: DELIVERY_CHUNK,
      onBatch: async (events) => {
        if (!this.#going()) return false;
        await this.#take(events);
        return this.#going();
      },
    });
    // A read cut short (the lease lost) leaves its last batch untaken: the next mover reads it.
    if (this.#going()) this.#lastSeq.set(bucket, Math.max(last, this.#lastSeq.get(bucket) ?? 0));
  }

  async #take(events: StoredDelayed[]): Promise<void> {
    const now = this.#clock();
    const due: StoredDelayed[] = [];
    for (const event of events) {
      if (this.#delivery.has(event.seq)) continue;
      if (event.bucket === undefined || event.target === undefined) this.#stray(event.subject);
      else if (bucketOf(event.due) > event.bucket) await this.#delivery.rebucket(event);
      else if (event.due <= now) due.push(event);
      else {
        this.#held.set(event.seq, event.due);
        this.#delivery.hold(event.seq);
      }
    }
    await this.#delivery.deliverAll(due);
  }

  /** Delivers the held events whose time has come, each read again first: a cancelled one is gone. */
  async #deliverHeld(): Promise<void> {
    const now = this.#clock();
    const due = [...this.#held].filter(([, at]) => at <= now).sort((a, b) => a[1] - b[1] || a[0] - b[0]);
    for (let i = 0; i < due.length && this.#going(); i += DELIVERY_CHUNK) {
      const chunk = due.slice(i, i + DELIVERY_CHUNK).map(([seq]) => seq);
      for (const seq of chunk) this.#held.delete(seq);
      const events = await Promise.all(chunk.map((seq) => delayedAt(this.#jsm, seq).catch((error: unknown) => error)));
      const deliveries = events.map((event, k) => {
        const seq = chunk[k]!;
        if (event === null) this.#delivery.cancelled(seq);
        else if (!isStored(event)) {
          this.#held.set(seq, now); // could not read it: again next round
          this.#log.debug({ err: event, id: seq }, "could not read a held delayed event");
        } else return this.#delivery.deliver(event);
        return undefined;
      });
      await Promise.all(deliveries);
    }
  }
}

function isStored(value: unknown): value is StoredDelayed {
  return typeof value === "object" && value !== null && "seq" in value && "data" in value;
}

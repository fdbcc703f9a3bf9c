/**
 * Partition leases for ordered functions (issue 9, guarantee 4), in the KV bucket
 * `JETFN_LEASES`:
 *
 * - `<function>.p.<i>` holds `{"owner": hostId}` while a host owns partition `i`;
 * - `<function>.m.<host>` is a host's membership heartbeat, rewritten every round.
 *
 * No clock is compared across hosts; each host compares its own monotonic clock
 * (`performance.now()`) with itself. An owner renews each lease every round with a
 * compare-and-set on its last revision, and counts a lease as its own only until
 * `sentAt + ttl - margin`, where `sentAt` is when the last successful renewal was sent.
 * Another host takes a lease over only after the key's revision has stayed the same for
 * `ttl` since it first saw that revision, which it cannot have seen before the owner sent
 * it: so the owner always stops starting events (by `margin`) before anyone else may start.
 * Every write is a compare-and-set, so a stale read never takes a lease from a live owner.
 */
import { performance } from "node:perf_hooks";
import { type JetStreamManager, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { type KV, type KvEntry, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { FUNCTION_NAME } from "../config/schema.ts";
import type { Logger } from "../telemetry/logger.ts";
import { isConflict } from "./kv-cas.ts";
import { leaseShare } from "./lease-share.ts";
import { within } from "./within.ts";

export type { KV };

/** The KV bucket holding every ordered function's leases and memberships. */
export const LEASE_BUCKET = "JETFN_LEASES";

/**
 * Callbacks through which {@link PartitionLeases} hands partitions to its owner. They are
 * called from its rounds and timers; `acquired` and `lost` must not throw or block. A lease
 * that runs out while `release(p)` is pending is reported with `lost(p, ...)` too.
 */
export interface LeaseEvents {
  /** This host owns partition `p` from now on, and may start its events. */
  acquired(partition: number, reason: "free" | "expired" | "reclaimed"): void;
  /** This host must stop starting events of `p` at once: the lease was taken by another host, or could not be renewed in time. */
  lost(partition: number, reason: "taken" | "unrenewed"): void;
  /** Rebalancing (or stop()) hands `p` to another host: resolve once no event of `p` runs or waits here; only then is the lease deleted. */
  release(partition: number): Promise<void>;
}

/** Options for {@link PartitionLeases}. */
export interface PartitionLeasesOptions {
  /** The lease bucket, from {@link openLeaseBucket}. */
  readonly kv: KV;
  /** The ordered function, `[a-z0-9-]`. */
  readonly function: string;
  /** Its partition count, at least 1. */
  readonly partitions: number;
  /** Unique per host process. */
  readonly hostId: string;
  /** How long an unrenewed lease lives (`ordering.leaseTtl`). @default 10000 in functions.yaml */
  readonly ttlMs: number;
  readonly log: Logger;
  readonly events: LeaseEvents;
}

/** The stream behind the bucket, and the subject prefix of its keys (KV's wire format). */
const LEASE_STREAM = `KV_${LEASE_BUCKET}`;
const KEY_SUBJECT_PREFIX = `$KV.${LEASE_BUCKET}.`;

/**
 * A manager for each bucket opened here: members are listed with one stream info request
 * (`subjects_filter`), as `kv.keys()` would leave an ordered consumer behind every round.
 */
const managers = new WeakMap<KV, JetStreamManager>();

/** Creates the lease bucket (history 1, file storage) or opens it if it exists. */
export async function openLeaseBucket(nc: NatsConnection): Promise<KV> {
  const kv = await new Kvm(nc).create(LEASE_BUCKET, { history: 1, storage: StorageType.File });
  managers.set(kv, await jetstreamManager(nc));
  return kv;
}

/** A lease this host holds. */
interface Holding {
  /** `held`: events may start (until the deadline). `releasing`: events.release() runs; still renewed. */
  state: "held" | "releasing";
  /** Revision of our last write: the compare-and-set base of the next one. */
  revision: number;
  /** When the request behind our last successful write was sent. */
  sentAt: number;
}

/** A key as last read, and since when (our clock) it has had this revision. */
interface Sighting {
  /** `owner` of a lease key, `host` of a member key; undefined when absent or deleted. */
  holder: string | undefined;
  revision: number;
  since: number;
}

/** A request that got no answer in time; its outcome is unknown, and every next write is a compare-and-set. */
class LeaseTimeoutError extends Error {
  override readonly name = "LeaseTimeoutError";
}

function leaseTimeout(message: string): Error {
  return new LeaseTimeoutError(message);
}

/** The `field` of a live entry's JSON value; "?" when unreadable (someone's, unknown whose). */
function holderOf(entry: KvEntry | null, field: "owner" | "host"): string | undefined {
  if (entry === null || entry.operation !== "PUT") return undefined;
  try {
    const value = entry.json<Record<string, unknown>>()[field];
    if (typeof value === "string") return value;
  } catch {
    // not JSON
  }
  return "?";
}

/** A host id as one KV key token: `[A-Za-z0-9-]` kept, every other byte as `_xx`. */
function keyToken(hostId: string): string {
  let token = "";
  for (const byte of Buffer.from(hostId, "utf8")) {
    const c = String.fromCharCode(byte);
    token += /[A-Za-z0-9-]/.test(c) ? c : `_${byte.toString(16).padStart(2, "0")}`;
  }
  return token;
}

/**
 * Holds a fair share of one ordered function's partitions for this host. Rounds run every
 * `ttl/3`, never two at a time: heartbeat, renew, read the members and the other leases,
 * then release extras or take vacant partitions (see `lease-share.ts`).
 */
export class PartitionLeases {
  readonly #kv: KV;
  readonly #jsm: JetStreamManager;
  readonly #fn: string;
  readonly #partitions: number;
  readonly #self: string;
  readonly #ttl: number;
  /** An owner stops counting a lease as its own this long before anyone else may take it. */
  readonly #margin: number;
  /** How long one request may take before the round moves on. */
  readonly #requestMs: number;
  readonly #log: Logger;
  readonly #events: LeaseEvents;
  readonly #value: string;
  readonly #memberKey: string;
  readonly #holdings = new Map<number, Holding>();
  /** Partitions whose events.release() has not settled: never taken meanwhile. */
  readonly #releases = new Map<number, Promise<void>>();
  /** Released partitions whose key is still to be deleted, with our revision. */
  readonly #unleases = new Map<number, number>();
  /** Lease keys of partitions this host does not hold. */
  readonly #leaseSightings = new Map<number, Sighting>();
  /** Member keys, by key. */
  readonly #memberSightings = new Map<string, Sighting>();
  #state: "created" | "running" | "stopping" | "stopped" = "created";
  #round: Promise<void> | undefined;
  #stopped: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #deadlineTimer: NodeJS.Timeout | undefined;

  constructor(options: PartitionLeasesOptions) {
    if (!FUNCTION_NAME.test(options.function)) throw new Error(`invalid function name for leases: ${options.function}`);
    if (!Number.isInteger(options.partitions) || options.partitions < 1)
      throw new Error(`partitions must be an integer >= 1, got ${options.partitions}`);
    if (!(options.ttlMs > 0)) throw new Error(`lease ttl must be positive, got ${options.ttlMs}`);
    if (options.hostId === "") throw new Error("hostId must not be empty");
    const jsm = managers.get(options.kv);
    if (jsm === undefined) throw new Error("partition leases need the bucket from openLeaseBucket()");
    this.#kv = options.kv;
    this.#jsm = jsm;
    this.#fn = options.function;
    this.#partitions = options.partitions;
    this.#self = options.hostId;
    this.#ttl = options.ttlMs;
    this.#margin = Math.max(options.ttlMs / 4, 250);
    this.#requestMs = Math.max(options.ttlMs / 4, 200);
    this.#log = options.log.child({ function: options.function, host: options.hostId });
    this.#events = options.events;
    this.#value = JSON.stringify({ owner: options.hostId });
    this.#memberKey = `${options.function}.m.${keyToken(options.hostId)}`;
  }

  /** Registers this host as a member, runs the first round, then a round every ttl/3. */
  async start(): Promise<void> {
    if (this.#state !== "created") throw new Error(`partition leases of ${this.#fn} already started`);
    this.#state = "running";
    await within(this.#kv.put(this.#memberKey, JSON.stringify({ host: this.#self })), this.#requestMs * 2, "membership", leaseTimeout);
    this.#tick();
    await this.#round;
    this.#timer = setInterval(() => this.#tick(), this.#ttl / 3);
    this.#timer.unref();
  }

  /** True only while it is safe to start an event of `partition` here. */
  owns(partition: number): boolean {
    const holding = this.#holdings.get(partition);
    if (holding?.state !== "held") return false;
    if (performance.now() < this.#deadline(holding)) return true;
    // Woken after a stall, before any timer ran: say no now, report the loss right after.
    queueMicrotask(() => this.#expire());
    return false;
  }

  /**
   * True while the lease of `partition` is this host's by its own clock: held, or being
   * released, and before its deadline. Events of it that run here may be settled only then.
   */
  holds(partition: number): boolean {
    const holding = this.#holdings.get(partition);
    return holding !== undefined && performance.now() < this.#deadline(holding);
  }

  /** Partitions whose events may start here now, ascending. */
  owned(): number[] {
    return [...this.#holdings.keys()].filter((p) => this.owns(p)).sort((a, b) => a - b);
  }

  /** The last known owner host id of each partition. */
  owners(): ReadonlyMap<number, string> {
    const owners = new Map<number, string>();
    for (let p = 0; p < this.#partitions; p++) {
      const holder = this.#holdings.has(p) ? this.#self : this.#leaseSightings.get(p)?.holder;
      if (holder !== undefined) owners.set(p, holder);
    }
    return owners;
  }

  /** Live members seen, this host included. */
  members(): number {
    return this.#liveHosts().size;
  }

  /**
   * Releases every partition (events.release, then deletes the lease), leaves the
   * membership and stops the rounds. Idempotent: every call returns the same promise.
   */
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
    // Leave first, so the others stop counting this host and take what it hands back.
    await this.#round;
    await within(this.#kv.delete(this.#memberKey), this.#requestMs, "leave", leaseTimeout).catch((error: unknown) =>
      this.#log.debug({ err: error }, "could not delete the lease membership"),
    );
    for (const [p, holding] of this.#holdings) if (holding.state === "held") this.#release(p, "stop");
    // Rounds go on meanwhile, renewing the leases of partitions still draining.
    await Promise.all(this.#releases.values());
    clearInterval(this.#timer);
    await this.#round;
    this.#state = "stopped";
    clearTimeout(this.#deadlineTimer);
    await Promise.all([...this.#unleases].map(([p, revision]) => this.#unlease(p, revision)));
  }

  #key(partition: number): string {
    return `${this.#fn}.p.${partition}`;
  }

  #deadline(holding: Holding): number {
    return holding.sentAt + this.#ttl - this.#margin;
  }

  #tick(): void {
    this.#expire();
    // A slow round makes the next ticks skip rather than pile up.
    if (this.#round !== undefined || (this.#state !== "running" && this.#state !== "stopping")) return;
    this.#round = this.#runRound()
      .catch((error: unknown) => this.#log.warn({ err: error }, "lease round failed"))
      .finally(() => (this.#round = undefined));
  }

  async #runRound(): Promise<void> {
    // After a stall, the clock is checked before anything is sent.
    this.#expire();
    await Promise.all([
      this.#state === "running" ? this.#heartbeat() : undefined,
      ...[...this.#holdings].map(([p, holding]) => this.#renew(p, holding)),
      ...[...this.#unleases].map(([p, revision]) => this.#unlease(p, revision)),
    ]);
    this.#expire();
    if (this.#state !== "running") return;
    await Promise.all([this.#readMembers(), this.#readLeases()]);
    this.#expire();
    if (this.#state !== "running") return;
    await this.#balance();
  }

  /** Drops every lease past its deadline: lost("unrenewed"). */
  #expire(): void {
    const now = performance.now();
    for (const [p, holding] of this.#holdings) {
      if (now < this.#deadline(holding)) continue;
      this.#holdings.delete(p);
      // The key still names us: a later round may reclaim it if nobody took it meanwhile.
      this.#leaseSightings.set(p, { holder: this.#self, revision: holding.revision, since: now });
      this.#lose(p, "unrenewed", this.#self);
    }
    this.#armDeadline();
  }

  /** Reports the loss the moment the earliest lease runs out, not at the next round. */
  #armDeadline(): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    if (this.#holdings.size === 0 || this.#state === "stopped") return;
    const next = Math.min(...[...this.#holdings.values()].map((h) => this.#deadline(h)));
    this.#deadlineTimer = setTimeout(() => this.#expire(), Math.max(0, next - performance.now()) + 1);
    this.#deadlineTimer.unref();
  }

  async #heartbeat(): Promise<void> {
    try {
      await within(this.#kv.put(this.#memberKey, JSON.stringify({ host: this.#self })), this.#requestMs, "membership", leaseTimeout);
    } catch (error) {
      this.#log.debug({ err: error }, "lease membership heartbeat failed");
    }
  }

  async #renew(p: number, holding: Holding): Promise<void> {
    const sentAt = performance.now();
    try {
      const revision = await within(
        this.#kv.update(this.#key(p), this.#value, holding.revision, this.#requestMs),
        this.#requestMs,
        "renew",
        leaseTimeout,
      );
      // Dropped meanwhile (deadline, or released): the key still names us, a later round sees it.
      if (this.#holdings.get(p) !== holding) return;
      holding.revision = revision;
      holding.sentAt = sentAt;
      this.#armDeadline();
    } catch (error) {
      if (this.#holdings.get(p) !== holding) return;
      // Timeouts and disconnections: keep trying until the deadline.
      if (!isConflict(error)) return this.#log.debug({ err: error, partition: p }, "lease renewal failed");
      const entry = await within(this.#kv.get(this.#key(p)), this.#requestMs, "read lease", leaseTimeout).catch(() => undefined);
      if (entry === undefined || this.#holdings.get(p) !== holding) return;
      const owner = holderOf(entry, "owner");
      // A renewal of ours that timed out landed after all: renew on top of it (the deadline stays).
      if (owner === this.#self && entry !== null) holding.revision = entry.revision;
      else {
        this.#holdings.delete(p);
        this.#leaseSightings.set(p, { holder: owner, revision: entry?.revision ?? 0, since: performance.now() });
        this.#lose(p, "taken", owner);
      }
    }
  }

  /**
   * Deletes a released lease, only if it still holds our last write. A renewal sent before
   * the release finished may land after it: the delete is then retried on top of it.
   */
  async #unlease(p: number, revision: number): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await within(this.#kv.delete(this.#key(p), { previousSeq: revision }), this.#requestMs, "delete lease", leaseTimeout);
        this.#unleases.delete(p);
        this.#leaseSightings.delete(p);
        return;
      } catch (error) {
        if (!isConflict(error)) return this.#log.debug({ err: error, partition: p }, "could not delete a released lease");
      }
      const entry = await within(this.#kv.get(this.#key(p)), this.#requestMs, "read lease", leaseTimeout).catch(() => undefined);
      if (entry === undefined) return;
      if (entry === null || holderOf(entry, "owner") !== this.#self) {
        this.#unleases.delete(p); // already gone, or someone else's
        return;
      }
      revision = entry.revision;
      this.#unleases.set(p, revision);
    }
  }

  async #readMembers(): Promise<void> {
    let keys: string[];
    try {
      const filter = `${KEY_SUBJECT_PREFIX}${this.#fn}.m.*`;
      const info = await within(
        this.#jsm.streams.info(LEASE_STREAM, { subjects_filter: filter }),
        this.#requestMs,
        "list members",
        leaseTimeout,
      );
      keys = Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(KEY_SUBJECT_PREFIX.length));
    } catch (error) {
      return this.#log.debug({ err: error }, "could not list lease members");
    }
    const entries = await Promise.all(
      keys.map((key) => within(this.#kv.get(key), this.#requestMs, "read member", leaseTimeout).catch(() => undefined)),
    );
    const now = performance.now();
    const seen = new Map<string, Sighting>();
    keys.forEach((key, i) => {
      const entry = entries[i];
      const before = this.#memberSightings.get(key);
      if (entry === undefined) {
        if (before) seen.set(key, before); // unread this time: as before
        return;
      }
      const revision = entry?.revision ?? 0;
      const same = before !== undefined && before.revision === revision;
      seen.set(key, same ? before : { holder: holderOf(entry, "host"), revision, since: now });
    });
    this.#memberSightings.clear();
    for (const [key, sighting] of seen) this.#memberSightings.set(key, sighting);
    // A member silent for ttl is gone: delete its key if it is still that silent write, and
    // a ttl later purge the delete marker, so that hosts long gone cost nothing.
    const silent = [...seen].filter(([key, s]) => key !== this.#memberKey && now - s.since >= this.#ttl);
    await Promise.all(
      silent.map(([key, s]) => {
        const tidy: Promise<unknown> =
          s.holder === undefined
            ? this.#jsm.streams.purge(LEASE_STREAM, { filter: `${KEY_SUBJECT_PREFIX}${key}` })
            : this.#kv.delete(key, { previousSeq: s.revision });
        return within(tidy, this.#requestMs, "tidy member", leaseTimeout).catch((error: unknown) =>
          this.#log.debug({ err: error, member: key }, "could not tidy a lease member"),
        );
      }),
    );
  }

  #liveHosts(): Set<string> {
    const now = performance.now();
    const live = new Set([this.#self]);
    for (const s of this.#memberSightings.values()) if (s.holder !== undefined && now - s.since < this.#ttl) live.add(s.holder);
    return live;
  }

  async #readLeases(): Promise<void> {
    const unheld = Array.from({ length: this.#partitions }, (_, p) => p).filter((p) => !this.#holdings.has(p));
    await Promise.all(
      unheld.map(async (p) => {
        let entry: KvEntry | null;
        try {
          entry = await within(this.#kv.get(this.#key(p)), this.#requestMs, "read lease", leaseTimeout);
        } catch (error) {
          return this.#log.debug({ err: error, partition: p }, "could not read a lease");
        }
        if (this.#holdings.has(p)) return;
        const holder = holderOf(entry, "owner");
        const revision = entry?.revision ?? 0;
        const before = this.#leaseSightings.get(p);
        if (before?.revision === revision && before.holder === holder) return;
        // Taken after the answer arrived: the revision was written, so sent, before this.
        this.#leaseSightings.set(p, { holder, revision, since: performance.now() });
      }),
    );
  }

  async #balance(): Promise<void> {
    const others = new Map<number, string>();
    for (const [p, s] of this.#leaseSightings) {
      if (s.holder !== undefined && s.holder !== this.#self && !this.#holdings.has(p)) others.set(p, s.holder);
    }
    const held = [...this.#holdings].filter(([, h]) => h.state === "held").map(([p]) => p);
    const share = leaseShare({ partitions: this.#partitions, self: this.#self, live: this.#liveHosts(), others, held: held.length });
    if (share.release > 0) {
      for (const p of held.sort((a, b) => b - a).slice(0, share.release)) this.#release(p, "rebalance");
      return;
    }
    const now = performance.now();
    const candidates: { p: number; reason: "free" | "expired" | "reclaimed"; revision: number; vacantFor: number }[] = [];
    for (let p = 0; p < this.#partitions; p++) {
      const s = this.#leaseSightings.get(p);
      if (s === undefined || this.#holdings.has(p) || this.#releases.has(p) || this.#unleases.has(p)) continue;
      if (s.holder === undefined) candidates.push({ p, reason: "free", revision: s.revision, vacantFor: now - s.since });
      else if (s.holder === this.#self) candidates.push({ p, reason: "reclaimed", revision: s.revision, vacantFor: now - s.since });
      else if (now - s.since >= this.#ttl)
        candidates.push({ p, reason: "expired", revision: s.revision, vacantFor: now - s.since - this.#ttl });
    }
    candidates.sort((a, b) => Number(b.reason === "reclaimed") - Number(a.reason === "reclaimed") || a.p - b.p);
    const chosen: typeof candidates = [];
    for (const c of candidates) {
      const count = held.length + chosen.length;
      // The limit keeps partitions for members below the floor; one vacant for ttl goes to anyone under the ceiling.
      if (count < share.limit || (count < share.ceil && c.vacantFor >= this.#ttl)) chosen.push(c);
    }
    await Promise.all(chosen.map((c) => this.#take(c.p, c.reason, c.revision)));
  }

  async #take(p: number, reason: "free" | "expired" | "reclaimed", revision: number): Promise<void> {
    const sentAt = performance.now();
    let written: number;
    try {
      const write =
        reason === "free"
          ? this.#kv.create(this.#key(p), this.#value)
          : this.#kv.update(this.#key(p), this.#value, revision, this.#requestMs);
      written = await within(write, this.#requestMs, "take lease", leaseTimeout);
    } catch (error) {
      // A conflict: another host came first. Either way the next round reads the key again.
      return this.#log.debug({ err: error, partition: p, reason }, "could not take a lease");
    }
    const holding: Holding = { state: "held", revision: written, sentAt };
    if (this.#state !== "running") {
      this.#unleases.set(p, written); // stop() began meanwhile: hand it straight back
      return;
    }
    // The answer came too late to use: the key names us, and a later round may reclaim it.
    if (performance.now() >= this.#deadline(holding)) return;
    this.#holdings.set(p, holding);
    this.#leaseSightings.delete(p);
    this.#armDeadline();
    this.#log.info({ partition: p, reason, owner: this.#self }, "partition lease acquired");
    this.#emit(() => this.#events.acquired(p, reason));
  }

  /** Stops counting `p` as owned, awaits events.release(p), then deletes the lease. */
  #release(p: number, reason: "rebalance" | "stop"): void {
    const holding = this.#holdings.get(p);
    if (holding?.state !== "held") return;
    holding.state = "releasing";
    this.#log.debug({ partition: p, reason }, "releasing a partition lease");
    const released = (async () => this.#events.release(p))()
      .catch((error: unknown) => this.#log.error({ err: error, partition: p }, "events.release failed; releasing the lease anyway"))
      .then(() => {
        this.#releases.delete(p);
        if (this.#holdings.get(p) !== holding) return; // lost meanwhile: nothing of ours to delete
        this.#holdings.delete(p);
        this.#unleases.set(p, holding.revision);
        this.#leaseSightings.set(p, { holder: this.#self, revision: holding.revision, since: performance.now() });
        this.#armDeadline();
        this.#log.info({ partition: p, reason, owner: this.#self }, "partition lease released");
        this.#tick(); // delete it now rather than at the next round, unless a round runs
      });
    this.#releases.set(p, released);
  }

  /** `owner`: the key's owner as last read (this host's own id when the lease ran out unrenewed). */
  #lose(p: number, reason: "taken" | "unrenewed", owner: string | undefined): void {
    this.#log.warn({ partition: p, reason, owner }, "partition lease lost");
    this.#emit(() => this.#events.lost(p, reason));
  }

  #emit(call: () => void): void {
    try {
      call();
    } catch (error) {
      this.#log.error({ err: error }, "a lease event handler threw");
    }
  }
}

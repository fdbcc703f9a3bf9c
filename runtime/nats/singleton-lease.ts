/**
 * One holder among every host, in one key of the KV bucket `JETFN_LEASES` (for the
 * delayed events' mover: `jetfn_delayed.mover`; no function's key has an underscore).
 * The key holds `{"owner": hostId}`.
 *
 * As with the partition leases (leases.ts), no clock is compared across hosts: the holder
 * renews with a compare-and-set every ttl/3 and counts the lease as its own until
 * `sentAt + ttl - margin` by its own clock; another host takes it over with a
 * compare-and-set once it has seen the same revision for `ttl`. The difference is how
 * often the others look: every `min(ttl/4, 500 ms)` rather than every ttl/3, so a holder
 * that dies is replaced within ttl plus twice that (ttl + 1 s), where the partition leases'
 * rounds take up to ttl + 5/3 of it. Nor is there membership or sharing: there is one thing
 * to hold. A holder that stops deletes the key, and the next takes it at its next look.
 */
import { performance } from "node:perf_hooks";
import type { KV, KvEntry } from "@nats-io/kv";
import type { Logger } from "../telemetry/logger.ts";
import { isConflict } from "./kv-cas.ts";
import { within } from "./within.ts";

/** Options of {@link SingletonLease}. */
export interface SingletonLeaseOptions {
  /** The lease bucket, from `openLeaseBucket()`. */
  readonly kv: KV;
  /** The key: not a function's (`<function>.p.<n>`, `<function>.m.<host>`). */
  readonly key: string;
  /** Unique per host process. */
  readonly hostId: string;
  /** How long an unrenewed lease lives. */
  readonly ttlMs: number;
  readonly log: Logger;
  /** Told each time this host starts (true) or stops (false) holding the lease; must not throw. */
  readonly onChange?: (held: boolean) => void;
}

interface Holding {
  revision: number;
  /** When the request behind our last successful write was sent (our clock). */
  sentAt: number;
}

/** The owner named by a live entry; undefined for a missing or deleted key, "?" when unreadable. */
function ownerOf(entry: KvEntry | null): string | undefined {
  if (entry === null || entry.operation !== "PUT") return undefined;
  try {
    const owner = entry.json<Record<string, unknown>>().owner;
    return typeof owner === "string" ? owner : "?";
  } catch {
    return "?";
  }
}

/** Holds one key of the lease bucket for this host while no other host does. */
export class SingletonLease {
  readonly #kv: KV;
  readonly #key: string;
  readonly #self: string;
  readonly #ttl: number;
  readonly #margin: number;
  readonly #lookMs: number;
  readonly #requestMs: number;
  readonly #log: Logger;
  readonly #onChange: (held: boolean) => void;
  readonly #value: string;
  #holding: Holding | undefined;
  /** The key's revision as last read, and since when (our clock). */
  #sighting: { revision: number; since: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;
  #state: "created" | "running" | "stopped" = "created";
  #stopped: Promise<void> | undefined;

  constructor(options: SingletonLeaseOptions) {
    if (!(options.ttlMs > 0)) throw new Error(`lease ttl must be positive, got ${options.ttlMs}`);
    if (options.hostId === "") throw new Error("hostId must not be empty");
    this.#kv = options.kv;
    this.#key = options.key;
    this.#self = options.hostId;
    this.#ttl = options.ttlMs;
    this.#margin = Math.max(options.ttlMs / 4, 250);
    this.#lookMs = Math.min(Math.max(options.ttlMs / 4, 50), 500);
    this.#requestMs = Math.max(options.ttlMs / 4, 200);
    this.#log = options.log.child({ lease: options.key, host: options.hostId });
    this.#onChange = options.onChange ?? (() => {});
    this.#value = JSON.stringify({ owner: options.hostId });
  }

  /** Starts looking (and renewing): the first look at once. */
  start(): void {
    if (this.#state !== "created") throw new Error(`lease ${this.#key} already started`);
    this.#state = "running";
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), this.#lookMs);
    this.#timer.unref();
  }

  /** True while this host holds the lease by its own clock. */
  held(): boolean {
    const holding = this.#holding;
    if (holding === undefined) return false;
    if (performance.now() < this.#deadline(holding)) return true;
    this.#lose("unrenewed");
    return false;
  }

  /** Stops looking, and hands the lease back (deletes the key) if held. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    const wasRunning = this.#state === "running";
    this.#state = "stopped";
    clearInterval(this.#timer);
    if (!wasRunning) return;
    await this.#round;
    const holding = this.#holding;
    if (holding === undefined) return;
    this.#lose("stopped");
    await within(this.#kv.delete(this.#key, { previousSeq: holding.revision }), this.#requestMs, "hand back").catch((error: unknown) =>
      this.#log.debug({ err: error }, "could not hand the lease back; it runs out by itself"),
    );
  }

  #deadline(holding: Holding): number {
    return holding.sentAt + this.#ttl - this.#margin;
  }

  #tick(): void {
    if (this.#round !== undefined || this.#state !== "running") return;
    this.#round = this.#look()
      .catch((error: unknown) => this.#log.debug({ err: error }, "lease look failed"))
      .finally(() => (this.#round = undefined));
  }

  async #look(): Promise<void> {
    const holding = this.#holding;
    if (holding !== undefined) {
      if (!this.held()) return;
      if (performance.now() - holding.sentAt >= this.#ttl / 3) await this.#renew(holding);
      return;
    }
    const entry = await within(this.#kv.get(this.#key), this.#requestMs, "read lease");
    if (this.#state !== "running") return;
    const owner = ownerOf(entry);
    const revision = entry?.revision ?? 0;
    const now = performance.now();
    if (owner !== undefined && owner !== this.#self) {
      // Someone's: ours only once the same revision has stood for a whole ttl.
      if (this.#sighting?.revision !== revision) {
        this.#sighting = { revision, since: now };
        return;
      }
      if (now - this.#sighting.since < this.#ttl) return;
    }
    // Free, deleted, ours from before (our own lease ran out unrenewed), or expired.
    await this.#take(entry, revision, owner === undefined ? "free" : owner === this.#self ? "reclaimed" : "expired");
  }

  async #take(entry: KvEntry | null, revision: number, reason: string): Promise<void> {
    const sentAt = performance.now();
    let written: number;
    try {
      const write = entry === null ? this.#kv.create(this.#key, this.#value) : this.#kv.update(this.#key, this.#value, revision);
      written = await within(write, this.#requestMs, "take lease");
    } catch (error) {
      this.#sighting = undefined; // another host came first, or no answer: read again next time
      return this.#log.debug({ err: error, reason }, "could not take the lease");
    }
    const holding = { revision: written, sentAt };
    if (this.#state !== "running") {
      await this.#kv.delete(this.#key, { previousSeq: written }).catch(() => {});
      return;
    }
    // An answer too late to use: the key names us, and the next look reclaims it.
    if (performance.now() >= this.#deadline(holding)) return;
    this.#holding = holding;
    this.#sighting = undefined;
    this.#log.info({ reason }, "lease acquired");
    this.#emit(true);
  }

  async #renew(holding: Holding): Promise<void> {
    const sentAt = performance.now();
    try {
      const revision = await within(this.#kv.update(this.#key, this.#value, holding.revision), this.#requestMs, "renew");
      if (this.#holding !== holding) return;
      holding.revision = revision;
      holding.sentAt = sentAt;
    } catch (error) {
      if (this.#holding !== holding) return;
      // Timeouts and disconnections: try again until the deadline.
      if (!isConflict(error)) return this.#log.debug({ err: error }, "lease renewal failed");
      const entry = await within(this.#kv.get(this.#key), this.#requestMs, "read lease").catch(() => undefined);
      if (entry === undefined || this.#holding !== holding) return;
      // A renewal of ours that timed out landed after all: renew on top of it (the deadline stays).
      if (entry !== null && ownerOf(entry) === this.#self) holding.revision = entry.revision;
      else this.#lose("taken");
    }
  }

  #lose(reason: "unrenewed" | "taken" | "stopped"): void {
    if (this.#holding === undefined) return;
    this.#holding = undefined;
    (reason === "stopped" ? this.#log.info : this.#log.warn).call(this.#log, { reason }, "lease given up");
    this.#emit(false);
  }

  #emit(held: boolean): void {
    try {
      this.#onChange(held);
    } catch (error) {
      this.#log.error({ err: error }, "a lease change handler threw");
    }
  }
}

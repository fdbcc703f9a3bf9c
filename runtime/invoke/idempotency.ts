import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { Encoded, encode, encodedType } from "../codec/codec.ts";
import type { CompiledFunction, CompiledIdempotency } from "../config/types.ts";
import type { Delivery } from "../contracts/delivery.ts";
import { errorMessage } from "../contracts/error-message.ts";
import { eventKey, MISSING_KEY } from "../contracts/event-key.ts";
import { type IdempotencyRecord, idempotencyRecordKey, parseIdempotencyRecord, type RecordedOutput } from "../contracts/idempotency.ts";
import type { Outcome } from "../contracts/outcome.ts";
import { runIdOf, STEP_RECORD_OVERHEAD, type StepStore } from "../contracts/steps.ts";
import type { Logger } from "../telemetry/logger.ts";
import { LeaseClock } from "./lease-clock.ts";
import { writeRecord } from "./record-write.ts";
import { outputMsgId } from "./settler.ts";
import { LEASE_MARGIN_MS } from "./steps.ts";

/** Bounds of the delay an event is handed back with while another delivery runs its key. */
const BUSY_RETRY_MIN_MS = 250;
const BUSY_RETRY_MAX_MS = 5_000;
/** The delay an event is handed back with when its key's record cannot be read. */
const UNREADABLE_RETRY_MS = 1_000;

/** What a delivery's business key says about running it. */
export type KeyClaim =
  /** No key to check (none on the event, or a replay): it runs as it would without `idempotency`. */
  | { readonly kind: "none" }
  /** This delivery holds the key: run it, then {@link IdempotencyGuard.done} or {@link IdempotencyGuard.release}. */
  | RunClaim
  /** A run with this key succeeded within the ttl: ack it unrun, its outcome the first run's. */
  | { readonly kind: "duplicate"; readonly outcome: Outcome }
  /** Another delivery runs the key now, or its record could not be read: hand it back, spending no attempt. */
  | { readonly kind: "busy"; readonly retryAfterMs: number; readonly why: string };

/** A key this delivery holds (its `running` record). */
export interface RunClaim {
  readonly kind: "run";
  readonly recordKey: string;
  readonly revision: number;
  readonly owner: string;
  /** When it was claimed (`performance.now()`): its lease ends `leaseMs` later. */
  readonly startedAt: number;
  /** Set once the claim ended (recorded done, or released): it is never written twice. */
  ended: boolean;
}

export interface IdempotencyGuardOptions {
  readonly fn: CompiledFunction & { readonly idempotency: CompiledIdempotency };
  /** Opens the store (the KV bucket `JETFN_STEPS`), making sure it keeps records for `ttlMs`. */
  readonly store: (ttlMs: number) => Promise<StepStore>;
  /** Unique per host process: part of a claim's owner. @default a random id */
  readonly hostId?: string;
  readonly log?: Logger;
  /** The server's max_payload: an output kept with its record must fit in one message. */
  readonly maxPayload?: () => number;
  /** Wall clock, epoch ms: `at` and `expiresAt` of records. */
  readonly now?: () => number;
  /** Monotonic clock, ms: how long a claim has been seen unchanged. */
  readonly monotonic?: () => number;
  /**
   * How long a delivery waits for another delivery's run of its key before it is handed
   * back; nothing heartbeats it meanwhile, so at most half its ack wait. @default 2000
   */
  readonly waitMs?: number;
  /** Between reads of a key another delivery runs. @default 100 */
  readonly pollMs?: number;
}

/**
 * `idempotency: { key, ttl }` of one function: at most one successful run per business key
 * within the ttl. Before a delivery runs, its key is claimed with compare-and-set in the KV
 * bucket `JETFN_STEPS` (a `running` record, a lease of the function's timeout + 5 s, as a
 * step's): so of two events with one key at once, one runs and the other waits for it (up
 * to `waitMs`), then is a duplicate or is handed back without spending an attempt. After a
 * successful run its output is published, then the record says `done` (with the output and
 * its `Nats-Msg-Id`), then the ack; a later event with the key is acked unrun, its output
 * published again with the first run's id. A run that fails releases the key.
 *
 * A key whose record cannot be read or written (the bucket unreachable) is not run unchecked:
 * the event is handed back, spending no attempt (it fails closed).
 */
export class IdempotencyGuard {
  readonly #fn: IdempotencyGuardOptions["fn"];
  readonly #options: IdempotencyGuardOptions;
  readonly #hostId: string;
  readonly #now: () => number;
  readonly #monotonic: () => number;
  readonly #leases: LeaseClock;
  /** Owners of the claims this host's runs hold now. */
  readonly #owners = new Set<string>();
  #store?: Promise<StepStore>;
  #nextOwner = 1;

  constructor(options: IdempotencyGuardOptions) {
    this.#fn = options.fn;
    this.#options = options;
    this.#hostId = options.hostId ?? randomUUID();
    this.#now = options.now ?? Date.now;
    this.#monotonic = options.monotonic ?? (() => performance.now());
    this.#leases = new LeaseClock(this.#monotonic);
  }

  /** Claims the delivery's key, or says why it must not run now. Never throws. */
  async claim(delivery: Delivery, signal?: AbortSignal): Promise<KeyClaim> {
    // A replay is asked for to run again: it is not held to the key of the event it copies.
    if (delivery.replayOf) return NONE;
    const key = eventKey(delivery, this.#fn.idempotency.key);
    // Events without a key are not one key: each runs.
    if (key === MISSING_KEY) return NONE;
    const recordKey = idempotencyRecordKey(this.#fn.name, key);
    try {
      return await this.#claim(delivery, key, recordKey, signal);
    } catch (error) {
      if (signal?.aborted) return { kind: "busy", retryAfterMs: 0, why: "shutdown" };
      this.#options.log?.warn(
        { err: error, idempotency_key: key, seq: delivery.seq },
        "reading the event's idempotency key failed; the event is handed back, unrun",
      );
      return {
        kind: "busy",
        retryAfterMs: UNREADABLE_RETRY_MS,
        why: `its idempotency key's record could not be read: ${errorMessage(error)}`,
      };
    }
  }

  async #claim(delivery: Delivery, key: string, recordKey: string, signal?: AbortSignal): Promise<KeyClaim> {
    const store = await this.#openStore();
    const run = runIdOf(delivery) ?? `${delivery.stream}:${delivery.seq}`;
    const owner = `${this.#hostId}/${this.#nextOwner++}`;
    const waitUntil = this.#monotonic() + Math.min(this.#options.waitMs ?? 2_000, this.#fn.ackWaitMs / 2);
    // A key seen for the first time is claimed in one round trip: create first, read only if it exists.
    let revision = await store.create(recordKey, this.#running(owner, run));
    while (revision === undefined) {
      const entry = await store.get(recordKey);
      const found = entry && parseIdempotencyRecord(entry.value);
      const record = found && found.expiresAt > this.#now() ? found : undefined;
      if (record?.state === "done") return { kind: "duplicate", outcome: duplicateOf(record) };
      if (!entry) {
        revision = await store.create(recordKey, this.#running(owner, run));
      } else if (!record || this.#mayTakeOver(recordKey, entry.revision, record)) {
        // Unreadable, expired, or a claim whose runner is gone: written over, compare-and-set.
        revision = await store.update(recordKey, this.#running(owner, run), entry.revision);
      } else {
        signal?.throwIfAborted();
        const now = this.#monotonic();
        if (now >= waitUntil) {
          const left = this.#leases.left(recordKey, record.leaseMs, entry.revision);
          const retryAfterMs = Math.round(Math.min(BUSY_RETRY_MAX_MS, Math.max(BUSY_RETRY_MIN_MS, left)));
          return { kind: "busy", retryAfterMs, why: `another delivery runs its idempotency key (${key})` };
        }
        await sleep(Math.min(this.#options.pollMs ?? 100, waitUntil - now), undefined, signal ? { signal } : {});
      }
    }
    this.#leases.forget(recordKey);
    this.#owners.add(owner);
    return { kind: "run", recordKey, revision, owner, startedAt: performance.now(), ended: false };
  }

  /** Whether a `running` record may be taken over: its lease ran out as this host saw it, or its runner here is gone. */
  #mayTakeOver(recordKey: string, revision: number, record: Extract<IdempotencyRecord, { state: "running" }>): boolean {
    if (record.owner.startsWith(`${this.#hostId}/`) && !this.#owners.has(record.owner)) return true;
    return this.#leases.left(recordKey, record.leaseMs, revision) <= 0;
  }

  #running(owner: string, run: string): string {
    const now = this.#now();
    const record: IdempotencyRecord = {
      state: "running",
      owner,
      run,
      leaseMs: this.#fn.timeoutMs + LEASE_MARGIN_MS,
      startedAt: now,
      expiresAt: now + this.#fn.idempotency.ttlMs,
    };
    return JSON.stringify(record);
  }

  /**
   * Records that the key's run succeeded: after its output was published, before its ack.
   * `value` is what the handler returned (kept when the function has an `output`). A failure
   * is logged, not thrown: the ack goes on, and the key's claim lapses after its lease.
   */
  async done(claim: RunClaim, delivery: Delivery, value: unknown): Promise<void> {
    if (claim.ended) return;
    claim.ended = true;
    this.#owners.delete(claim.owner);
    const now = this.#now();
    const record: IdempotencyRecord = {
      state: "done",
      run: runIdOf(delivery) ?? `${delivery.stream}:${delivery.seq}`,
      at: now,
      expiresAt: now + this.#fn.idempotency.ttlMs,
      msgId: outputMsgId(this.#fn.name, delivery),
      ...this.#kept(value),
    };
    try {
      const store = await this.#openStore();
      // Tried again while the store fails (a KV leader election), up to the end of the claim's lease.
      const written = await writeRecord(
        () => store.update(claim.recordKey, JSON.stringify(record), claim.revision),
        claim.startedAt + this.#fn.timeoutMs + LEASE_MARGIN_MS,
      );
      if (written === undefined)
        this.#options.log?.warn(
          { seq: delivery.seq },
          "a run outlived its idempotency key's lease: another delivery took the key over meanwhile, and its record stands",
        );
    } catch (error) {
      this.#options.log?.warn(
        { err: error, seq: delivery.seq },
        "recording the idempotency key's run failed; another event with the key runs again once its claim's lease is over",
      );
    }
  }

  /** The output to keep: only for a function with an `output`, and only one that fits in a record. */
  #kept(value: unknown): { output?: RecordedOutput } {
    if (this.#fn.output === undefined || value === undefined) return {};
    let bytes: Uint8Array;
    try {
      bytes = encode(value);
    } catch {
      return {};
    }
    const room = (this.#options.maxPayload?.() ?? 1024 * 1024) - STEP_RECORD_OVERHEAD;
    if (Math.ceil(bytes.length / 3) * 4 > room) {
      this.#options.log?.warn(
        { bytes: bytes.length },
        "the output is too large to keep with its idempotency record: a duplicate of its key publishes nothing",
      );
      return {};
    }
    return { output: { data: Buffer.from(bytes).toString("base64"), type: encodedType(value) } };
  }

  /** Gives the key back after a run that did not succeed (or never started): the next event with it runs. Never throws. */
  async release(claim: RunClaim): Promise<void> {
    if (claim.ended) return;
    claim.ended = true;
    this.#owners.delete(claim.owner);
    try {
      await (await this.#openStore()).delete(claim.recordKey, claim.revision);
    } catch (error) {
      this.#options.log?.warn({ err: error }, "releasing an idempotency key failed; the next event with it waits for its lease");
    }
  }

  #openStore(): Promise<StepStore> {
    if (!this.#store) {
      this.#store = this.#options.store(this.#fn.idempotency.ttlMs);
      // A store that failed to open is tried again on the next event.
      this.#store.catch(() => (this.#store = undefined));
    }
    return this.#store;
  }
}

const NONE: KeyClaim = Object.freeze({ kind: "none" });

/** A later event's outcome: the first run's, its output published again under the first run's `Nats-Msg-Id`. */
function duplicateOf(record: Extract<IdempotencyRecord, { state: "done" }>): Outcome {
  if (!record.output) return { kind: "duplicate" };
  const value = new Encoded(Buffer.from(record.output.data, "base64"), record.output.type);
  return { kind: "duplicate", output: { value, msgId: record.msgId } };
}

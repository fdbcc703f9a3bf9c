import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { type Context, type Span, SpanStatusCode, trace } from "@opentelemetry/api";
import type { CompiledFunction } from "../config/types.ts";
import { errorMessage } from "../contracts/error-message.ts";
import {
  type CompletionRecord,
  completionRecordKey,
  doneRecord,
  parseCompletionRecord,
  parseStepRecord,
  type RunSource,
  runIdOf,
  STEP_RECORD_OVERHEAD,
  type StepRecord,
  type StepStore,
  stepIdempotencyKey,
  stepRecordKey,
} from "../contracts/steps.ts";
import { StepError } from "../sdk/errors.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { LeaseClock } from "./lease-clock.ts";
import { writeRecord } from "./record-write.ts";

const tracer = trace.getTracer("jetfn");

/** How a step starts, as plain data (it crosses to a handler thread as it is). */
export type StepBegin =
  /** Recorded done: its result is the step's, without running it. */
  | { readonly kind: "replay"; readonly result?: unknown }
  /** Recorded failed with a `NonRetryableError`: thrown again. */
  | { readonly kind: "failed"; readonly error: { readonly name: string; readonly message: string } }
  /** Run it: `claim` names the claim for {@link StepJournal.end}; the result may be `maxBytes` of JSON. */
  | { readonly kind: "run"; readonly claim: number; readonly key: string; readonly maxBytes: number };

/** How a step that ran ended, as plain data. */
export type StepEnd =
  | { readonly kind: "done"; readonly json: string | undefined }
  /** It threw: `nonRetryable` set for a `NonRetryableError` (recorded), absent for any other error (not recorded). */
  | { readonly kind: "threw"; readonly nonRetryable?: { readonly name: string; readonly message: string } }
  /** Its result could not be recorded: not JSON, or too large. */
  | { readonly kind: "unrecordable"; readonly problem: "not-json" | "too-large"; readonly message: string };

/** The delivery a step belongs to, as the journal needs it. */
export interface StepRun extends RunSource {
  /** The parent of the step's span: the handler's active span, else the delivery's. */
  readonly parent: Context;
  readonly signal?: AbortSignal;
}

export interface StepJournalOptions {
  readonly fn: CompiledFunction;
  /** Opens the store (once, on the first step), making sure it keeps records for `ttlMs`; none: steps run unrecorded. */
  readonly store?: (ttlMs: number) => Promise<StepStore>;
  /** Unique per host process: part of a claim's owner. @default a random id */
  readonly hostId?: string;
  readonly metrics?: Metrics;
  readonly log?: Logger;
  /** The server's max_payload: a result with its record must fit in one message. */
  readonly maxPayload?: () => number;
  /** Wall clock, epoch ms: `at` and `expiresAt` of records. */
  readonly now?: () => number;
  /** Monotonic clock, ms: how long a claim has been seen unchanged. */
  readonly monotonic?: () => number;
  /** How long a delivery waits for another delivery's run of a step before it is handed back. @default 2000 */
  readonly waitMs?: number;
  /** Between reads of a step another delivery runs. @default 100 */
  readonly pollMs?: number;
}

/** A claim's lease is the function's timeout and this much: a run of the step cannot legally last longer. */
export const LEASE_MARGIN_MS = 5_000;
/** Bounds of the delay a busy step's event is handed back with. */
const BUSY_RETRY_MIN_MS = 250;
const BUSY_RETRY_MAX_MS = 5_000;

/** A step this host runs now. */
interface Claim {
  readonly name: string;
  /** The KV key, or undefined for a step not recorded (a call without a run id). */
  readonly recordKey?: string;
  revision: number;
  readonly owner: string;
  readonly span: Span;
  readonly context: Context;
  readonly startedAt: number;
}

/**
 * The host side of `ctx.step` for one function: it claims a step for the delivery that
 * runs it, records how it ended, and answers later attempts from the record. Records live
 * in a {@link StepStore} (the KV bucket `JETFN_STEPS`), written with compare-and-set only,
 * so two deliveries of one run never both claim a step:
 *
 * - absent, or expired (`expiresAt` passed; the bucket's `max_age` is the largest ttl of
 *   all functions): create (or update over) a `running` record, and run it;
 * - `done` / `failed`: replay the result / throw the `NonRetryableError` again;
 * - `running` by another delivery: wait for it (polling, up to `waitMs`), then hand the event
 *   back (`StepError` "busy": a nak that spends no attempt). Its claim is taken over once
 *   this host has seen the same revision for the claim's `leaseMs` (the function's timeout
 *   + 5 s), or at once when the claim is this host's and no run of this host holds it (its
 *   runner's thread was ended). No clocks are compared across hosts.
 *
 * Never throws for a step's own failure; a store that fails throws its error to the handler
 * (the step is then retried with the event).
 */
export class StepJournal {
  readonly fn: CompiledFunction;
  readonly #options: StepJournalOptions;
  readonly #hostId: string;
  readonly #now: () => number;
  readonly #monotonic: () => number;
  readonly #claims = new Map<number, Claim>();
  /** Owners of the claims this host's runs hold now. */
  readonly #owners = new Set<string>();
  /** Times other deliveries' claims by this host's clock. */
  readonly #leases: LeaseClock;
  #store?: Promise<StepStore>;
  /** Whether a step of this function ran or was replayed on this host: its redeliveries then look for completion records. */
  #used = false;
  #nextClaim = 1;
  #nextOwner = 1;

  constructor(options: StepJournalOptions) {
    this.fn = options.fn;
    this.#options = options;
    this.#hostId = options.hostId ?? randomUUID();
    this.#now = options.now ?? Date.now;
    this.#monotonic = options.monotonic ?? (() => performance.now());
    this.#leases = new LeaseClock(this.#monotonic);
  }

  /** The largest result in bytes: `steps.maxResultSize`, within the server's max_payload. */
  get maxResultBytes(): number {
    const configured = this.fn.steps.maxResultBytes;
    const payload = this.#options.maxPayload?.();
    return payload === undefined ? configured : Math.min(configured, payload - STEP_RECORD_OVERHEAD);
  }

  /** Starts the step `name` (already numbered: `charge#2`) of `run`. */
  async begin(run: StepRun, name: string): Promise<StepBegin> {
    const runId = runIdOf(run);
    const fn = this.fn.name;
    const span = tracer.startSpan(`step ${name}`, { attributes: { "jetfn.step.name": name } }, run.parent);
    if (runId === undefined || !this.#options.store) {
      // A synchronous call without an id: a run of its own, not recorded.
      span.setAttribute("jetfn.step.replayed", false);
      return this.#claim(name, undefined, 0, span, run.parent, stepIdempotencyKey(fn, randomUUID(), name));
    }
    span.setAttribute("jetfn.step.key", stepIdempotencyKey(fn, runId, name));
    this.#used = true;
    try {
      const begin = await this.#begin(run, name, runId, span);
      if (begin.kind !== "run") span.end();
      return begin;
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
      span.end();
      throw error;
    }
  }

  async #begin(run: StepRun, name: string, runId: string, span: Span): Promise<StepBegin> {
    const fn = this.fn.name;
    const store = await this.#openStore();
    const recordKey = stepRecordKey(fn, runId, name);
    const waitUntil = this.#monotonic() + (this.#options.waitMs ?? 2_000);
    const owner = `${this.#hostId}/${this.#nextOwner++}`;
    // A step reached for the first time (nearly every one) is claimed in one round trip:
    // created first, and read only when its key exists. Undefined: another write came first.
    let revision = await store.create(recordKey, this.#running(owner));
    while (revision === undefined) {
      const entry = await store.get(recordKey);
      const found = entry && parseStepRecord(entry.value);
      const record = found && found.expiresAt > this.#now() ? found : undefined;
      if (record?.state === "done" || record?.state === "failed") return this.#replayed(record, span);
      if (!entry) {
        revision = await store.create(recordKey, this.#running(owner));
      } else if (!record || this.#mayTakeOver(recordKey, entry.revision, record)) {
        // Unreadable, expired, or a claim whose runner is gone: written over, compare-and-set.
        revision = await store.update(recordKey, this.#running(owner), entry.revision);
      } else {
        // Another delivery runs it now.
        run.signal?.throwIfAborted();
        const now = this.#monotonic();
        if (now >= waitUntil) throw this.#busy(name, runId, this.#leaseLeft(recordKey, record, entry.revision), span);
        await sleep(Math.min(this.#options.pollMs ?? 100, waitUntil - now), run.signal);
      }
    }
    this.#leases.forget(recordKey);
    span.setAttribute("jetfn.step.replayed", false);
    return this.#claim(name, recordKey, revision, span, run.parent, stepIdempotencyKey(fn, runId, name), owner);
  }

  /** The event is handed back, without spending an attempt, while another delivery runs the step. */
  #busy(name: string, runId: string, leaseLeftMs: number, span: Span): StepError {
    this.#count("busy");
    const retryAfterMs = Math.round(Math.min(BUSY_RETRY_MAX_MS, Math.max(BUSY_RETRY_MIN_MS, leaseLeftMs)));
    const error = new StepError(
      `step ${name} of function ${this.fn.name} is being run by another delivery of the same run (run id ${runId}); handed back for ${retryAfterMs}ms`,
      name,
      "busy",
      retryAfterMs,
    );
    span.setAttribute("jetfn.step.busy", true);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    return error;
  }

  #replayed(record: Extract<StepRecord, { state: "done" | "failed" }>, span: Span): StepBegin {
    span.setAttribute("jetfn.step.replayed", true);
    this.#count("replayed");
    if (record.state === "done") return "result" in record ? { kind: "replay", result: record.result } : { kind: "replay" };
    span.setStatus({ code: SpanStatusCode.ERROR, message: record.error.message });
    return { kind: "failed", error: { name: record.error.name, message: record.error.message } };
  }

  #running(owner: string): string {
    const now = this.#now();
    const record: StepRecord = {
      state: "running",
      owner,
      leaseMs: this.fn.timeoutMs + LEASE_MARGIN_MS,
      startedAt: now,
      expiresAt: now + this.fn.steps.ttlMs,
    };
    return JSON.stringify(record);
  }

  #claim(name: string, recordKey: string | undefined, revision: number, span: Span, parent: Context, key: string, owner = ""): StepBegin {
    const claim = this.#nextClaim++;
    this.#claims.set(claim, {
      name,
      ...(recordKey ? { recordKey } : {}),
      revision,
      owner,
      span,
      context: trace.setSpan(parent, span),
      startedAt: performance.now(),
    });
    if (owner) this.#owners.add(owner);
    return { kind: "run", claim, key, maxBytes: this.maxResultBytes };
  }

  /** Whether a `running` record may be taken over: its lease ran out as this host saw it, or its runner here is gone. */
  #mayTakeOver(recordKey: string, revision: number, record: Extract<StepRecord, { state: "running" }>): boolean {
    if (record.owner.startsWith(`${this.#hostId}/`) && !this.#owners.has(record.owner)) return true;
    return this.#leaseLeft(recordKey, record, revision) <= 0;
  }

  /** Milliseconds until this host may take the claim over: `leaseMs` after it first saw this revision. */
  #leaseLeft(recordKey: string, record: Extract<StepRecord, { state: "running" }>, revision?: number): number {
    return this.#leases.left(recordKey, record.leaseMs, revision);
  }

  /** The context a claimed step's function runs in: its span's. */
  contextOf(claim: number): Context | undefined {
    return this.#claims.get(claim)?.context;
  }

  /** Records how a claimed step ended; for `done`, throws when the store does not take the record. */
  async end(claimId: number, end: StepEnd): Promise<void> {
    const claim = this.#claims.get(claimId);
    if (!claim) return;
    this.#claims.delete(claimId);
    const { span } = claim;
    this.#options.metrics?.stepDuration.observe({ function: this.fn.name }, (performance.now() - claim.startedAt) / 1000);
    try {
      if (end.kind === "done") {
        this.#count("ran");
        if (claim.recordKey) await this.#record(claim, end.json);
        return;
      }
      this.#count("failed");
      const message = end.kind === "threw" ? (end.nonRetryable?.message ?? "the step threw") : end.message;
      span.setStatus({ code: SpanStatusCode.ERROR, message });
      if (!claim.recordKey) return;
      const store = await this.#openStore();
      if (end.kind === "threw" && end.nonRetryable) {
        const now = this.#now();
        const record: StepRecord = { state: "failed", at: now, expiresAt: now + this.fn.steps.ttlMs, error: end.nonRetryable };
        await store.update(claim.recordKey, JSON.stringify(record), claim.revision);
      } else {
        // Not recorded: the next attempt runs the step again, at once rather than after the lease.
        await store.delete(claim.recordKey, claim.revision);
      }
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
      if (end.kind === "done")
        throw new Error(`step ${claim.name} of function ${this.fn.name} ran, but recording its result failed: ${errorMessage(error)}`);
      this.#options.log?.warn(
        { err: error, step: claim.name },
        "releasing a failed step's claim failed; the next attempt waits for its lease",
      );
    } finally {
      if (claim.owner) this.#owners.delete(claim.owner);
      span.end();
    }
  }

  /** Ends a claim whose runner is gone (its thread ended): released, so the next attempt runs it at once. */
  abandon(claimId: number): void {
    void this.end(claimId, { kind: "threw" }).catch(() => {});
  }

  async #record(claim: Claim, json: string | undefined): Promise<void> {
    const store = await this.#openStore();
    const now = this.#now();
    // Tried again while the store fails (a KV leader election), up to the end of the claim's lease.
    const written = await writeRecord(
      () => store.update(claim.recordKey!, doneRecord(now, now + this.fn.steps.ttlMs, json), claim.revision),
      claim.startedAt + this.fn.timeoutMs + LEASE_MARGIN_MS,
    );
    if (written === undefined) {
      // Its claim was taken over after its lease: the step ran twice (docs/steps.md, the gap), and the other run's record stands.
      claim.span.setAttribute("jetfn.step.lease_lost", true);
      this.#options.log?.warn(
        { step: claim.name },
        "a step outlived its lease: another delivery took it over meanwhile, and its record stands (the step ran twice; its key is the same for both)",
      );
    }
  }

  /**
   * Whether to look for the delivery's completion record before running it: for a
   * redelivery, and for a first delivery with a `Nats-Msg-Id` (the same message stored
   * twice) once this function has used steps here. A first delivery without an id costs
   * nothing.
   */
  mayBeCompleted(run: RunSource & { readonly deliveryCount: number }): boolean {
    if (!this.#options.store || run.seq === 0) return false;
    return run.deliveryCount > 1 || (this.#used && runIdOf({ headers: run.headers, stream: "", seq: 0 }) !== undefined);
  }

  /**
   * Whether the run completed before (its handler succeeded, its output was published, and
   * its completion record was written). A store that fails says no: the run then goes on as
   * it would without completion records (its steps still replay).
   */
  async completed(run: RunSource): Promise<boolean> {
    const runId = runIdOf(run);
    if (runId === undefined) return false;
    try {
      const entry = await (await this.#openStore()).get(completionRecordKey(this.fn.name, runId));
      const record = entry && parseCompletionRecord(entry.value);
      return record !== undefined && record.expiresAt > this.#now();
    } catch (error) {
      this.#options.log?.warn({ err: error, run: runId }, "reading a run's completion record failed; the run goes on");
      return false;
    }
  }

  /**
   * Records that the run completed: called after its output was published and before its
   * ack, for a run that used steps. A failure is logged, not thrown: the ack goes on, and a
   * redelivery would replay the run's steps.
   */
  async complete(run: RunSource): Promise<void> {
    const runId = runIdOf(run);
    if (runId === undefined || !this.#options.store) return;
    const key = completionRecordKey(this.fn.name, runId);
    const now = this.#now();
    const record: CompletionRecord = { state: "completed", at: now, expiresAt: now + this.fn.steps.ttlMs };
    try {
      const store = await this.#openStore();
      const value = JSON.stringify(record);
      // Nearly always a new key: one round trip. Read and written over only when the run completed before.
      if ((await store.create(key, value)) === undefined) {
        const entry = await store.get(key);
        if (entry) await store.update(key, value, entry.revision);
        else await store.create(key, value);
      }
    } catch (error) {
      this.#options.log?.warn({ err: error, run: runId }, "recording a run's completion failed; a redelivery would replay its steps");
    }
  }

  #count(result: "ran" | "replayed" | "busy" | "failed"): void {
    this.#options.metrics?.steps.inc({ function: this.fn.name, result });
  }

  #openStore(): Promise<StepStore> {
    if (!this.#store) {
      this.#store = this.#options.store!(this.fn.steps.ttlMs);
      // A store that failed to open is tried again on the next step.
      this.#store.catch(() => (this.#store = undefined));
    }
    return this.#store;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, Math.max(0, ms));
    function done(): void {
      signal?.removeEventListener("abort", aborted);
      resolve();
    }
    function aborted(): void {
      clearTimeout(timer);
      reject(signal!.reason);
    }
    signal?.addEventListener("abort", aborted, { once: true });
  });
}

import type { StreamPosition } from "../sdk/types.ts";

/**
 * Durable steps (`ctx.step`): the names and the wire format of their records, shared by the
 * host that writes them, the KV store under `nats/`, the in-memory store of `jetfn/testing`
 * and the tools that will read them (`jetfn steps show`).
 *
 * One record per step of a run, in the KV bucket `JETFN_STEPS`, under the key
 * `<function>.<run id>.<step name>` where the run id and the step name are base64url
 * (RFC 4648 §5, no padding): KV keys allow only `[-/_=.a-zA-Z0-9]`, and a `Nats-Msg-Id` or a
 * step name may hold anything. So a run's steps are the keys `<function>.<run id>.*`.
 */

/** The KV bucket holding every function's step records. */
export const STEP_BUCKET = "JETFN_STEPS";

/** `steps.ttl` when no layer sets it: 7 days. */
export const DEFAULT_STEP_TTL_MS = 7 * 24 * 3_600_000;

/** `steps.maxResultSize` when no layer sets it: 256 KB. */
export const DEFAULT_STEP_RESULT_BYTES = 256 * 1024;

/** Room kept in a record for its fields besides the result, and in the message for KV's headers. */
export const STEP_RECORD_OVERHEAD = 1024;

/** The header a synchronous call may carry its run id in (the ingress's `Idempotency-Key`). */
const IDEMPOTENCY_KEY = "idempotency-key";
const MSG_ID = "nats-msg-id";

/** What a run is, for its steps: where its event came from. */
export interface RunSource {
  readonly headers: Readonly<Record<string, string>>;
  readonly stream: string;
  readonly seq: number;
  /** Set for a replay's copy: a replay is a run of its own. */
  readonly replayOf?: StreamPosition;
}

/**
 * The run id of a delivery: its `Nats-Msg-Id` when it has one, else `<stream>:<seq>`. A
 * replay's copy (`jetfn replay`, `dlq redrive --only`) is a new run: its id is the copy's own
 * `<stream>:<seq>` in `JETFN_REPLAY`, never the original's. A synchronous call (sequence 0)
 * has a run id only when it carries `Nats-Msg-Id` or `Idempotency-Key`; undefined otherwise,
 * and its steps are not recorded.
 */
export function runIdOf(source: RunSource): string | undefined {
  if (source.replayOf) return `${source.stream}:${source.seq}`;
  const msgId = header(source.headers, MSG_ID);
  if (msgId) return msgId;
  if (source.seq === 0) return header(source.headers, IDEMPOTENCY_KEY) || undefined;
  return `${source.stream}:${source.seq}`;
}

function header(headers: Readonly<Record<string, string>>, lowerName: string): string | undefined {
  for (const key in headers) if (key.length === lowerName.length && key.toLowerCase() === lowerName) return headers[key];
  return undefined;
}

/**
 * The name of the `n`th call (1-based) of `ctx.step(name)` in one run: `name` for the
 * first, `name#2`, `name#3`... for the next ones (a loop).
 */
export function occurrenceName(name: string, n: number): string {
  return n === 1 ? name : `${name}#${n}`;
}

/** The `key` handed to a step: stable across attempts, for APIs that take an idempotency key. */
export function stepIdempotencyKey(fn: string, runId: string, step: string): string {
  return `${fn}:${runId}:${step}`;
}

/** The step's KV key: `<function>.<base64url run id>.<base64url step name>`. */
export function stepRecordKey(fn: string, runId: string, step: string): string {
  return `${fn}.${base64url(runId)}.${base64url(step)}`;
}

/**
 * The KV key of a run's completion record: `<function>.<base64url run id>.=completed`. `=`
 * is no base64url character, so no step name can have this key.
 */
export function completionRecordKey(fn: string, runId: string): string {
  return `${fn}.${base64url(runId)}.${COMPLETED}`;
}

const COMPLETED = "=completed";

/** The KV key filter of every step of one run: `<function>.<base64url run id>.*`. */
export function runRecordFilter(fn: string, runId: string): string {
  return `${fn}.${base64url(runId)}.*`;
}

/**
 * Reads a KV key of the bucket back into its function, run id and step name (`completed:
 * true` and no step for a run's completion record); undefined for another key.
 */
export function parseStepRecordKey(key: string): { fn: string; runId: string; step?: string; completed?: true } | undefined {
  const match = /^([a-z0-9][a-z0-9-]*)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+|=completed)$/.exec(key);
  if (!match) return undefined;
  const [, fn, runId, last] = match;
  if (last === COMPLETED) return { fn: fn!, runId: fromBase64url(runId!), completed: true };
  return { fn: fn!, runId: fromBase64url(runId!), step: fromBase64url(last!) };
}

/** A run's completion record: the handler finished, and its output (if any) was published. */
export interface CompletionRecord {
  readonly state: "completed";
  readonly at: number;
  readonly expiresAt: number;
}

/** Reads a completion record; undefined for anything else. */
export function parseCompletionRecord(text: string): CompletionRecord | undefined {
  try {
    const value = JSON.parse(text) as Partial<CompletionRecord> | null;
    return value?.state === "completed" && typeof value.expiresAt === "number" ? (value as CompletionRecord) : undefined;
  } catch {
    return undefined;
  }
}

function base64url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}

function fromBase64url(text: string): string {
  return Buffer.from(text, "base64url").toString("utf8");
}

/**
 * A step's record, as JSON in its KV entry. Every record says when it expires
 * (`expiresAt`, epoch ms: written + the function's `steps.ttl`); an expired record counts as
 * absent, as the bucket's own `max_age` is one for all functions (the largest ttl).
 *
 * - `running`: a delivery runs the step now. `owner` is the host and claim; the claim is a
 *   lease of `leaseMs`: another delivery takes the step over only after it has seen this
 *   same revision unchanged for `leaseMs` by its own clock (no clocks compared across hosts).
 * - `done`: the step returned `result` (absent for `undefined`).
 * - `failed`: the step threw a `NonRetryableError`; later attempts throw it again.
 */
export type StepRecord =
  | {
      readonly state: "running";
      readonly owner: string;
      readonly leaseMs: number;
      readonly startedAt: number;
      readonly expiresAt: number;
    }
  | { readonly state: "done"; readonly at: number; readonly expiresAt: number; readonly result?: unknown }
  | {
      readonly state: "failed";
      readonly at: number;
      readonly expiresAt: number;
      readonly error: { readonly name: string; readonly message: string };
    };

/** A `done` record with the result's JSON text spliced in (never parsed and written again). */
export function doneRecord(at: number, expiresAt: number, resultJson: string | undefined): string {
  const head = `{"state":"done","at":${at},"expiresAt":${expiresAt}`;
  return resultJson === undefined ? `${head}}` : `${head},"result":${resultJson}}`;
}

/** Reads a record; undefined for one this version cannot read (treated as absent, and overwritten). */
export function parseStepRecord(text: string): StepRecord | undefined {
  const record = jsonObject(text);
  if (record === undefined) return undefined;
  if (typeof record.expiresAt !== "number") return undefined;
  switch (record.state) {
    case "running":
      return typeof record.owner === "string" && typeof record.leaseMs === "number" ? (record as StepRecord) : undefined;
    case "done":
      return typeof record.at === "number" ? (record as StepRecord) : undefined;
    case "failed": {
      const error = record.error as Record<string, unknown> | undefined;
      return typeof error?.message === "string" ? (record as StepRecord) : undefined;
    }
    default:
      return undefined;
  }
}

/** A stored record and the revision to compare-and-set against. */
export interface StoredStep {
  readonly value: string;
  readonly revision: number;
}

/**
 * Where step records live: a map with compare-and-set writes. The KV bucket `JETFN_STEPS`
 * in a host (`nats/steps-bucket.ts`), a Map in `jetfn/testing`.
 */
export interface StepStore {
  /** The entry, or undefined when the key was never written or was deleted. */
  get(key: string): Promise<StoredStep | undefined>;
  /** Writes a new key (or one deleted); undefined when the key holds a value already. */
  create(key: string, value: string): Promise<number | undefined>;
  /** Writes over `revision`; undefined when the key's last revision is another one. */
  update(key: string, value: string, revision: number): Promise<number | undefined>;
  /** Deletes the key if its last revision is `revision`; does nothing otherwise. */
  delete(key: string, revision: number): Promise<void>;
}

/** `text` as a JSON object; undefined when it is not JSON or not an object (a record this version cannot read). */
export function jsonObject(text: string): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
}

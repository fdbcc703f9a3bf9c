/**
 * Idempotency by business key (`idempotency: { key, ttl }`): the names and the wire format
 * of its records, which live beside the step records in the KV bucket `JETFN_STEPS`.
 *
 * One record per function and key, under `<function>.=idempotency.<base64url key>`: `=` is
 * no base64url character, so no run's records (`<function>.<base64url run id>.*`) share
 * the key, and `jetfn steps show` never lists one as a step.
 */
import { jsonObject } from "./steps.ts";

/** `idempotency.ttl` when the function does not set it: 24 hours. */
export const DEFAULT_IDEMPOTENCY_TTL_MS = 24 * 3_600_000;

/** The KV key of a function's record for one business key. */
export function idempotencyRecordKey(fn: string, key: string): string {
  return `${fn}.=idempotency.${Buffer.from(key, "utf8").toString("base64url")}`;
}

/** The first run's output, as it was published: its bytes (base64) and what they encode. */
export interface RecordedOutput {
  /** The bytes, base64. */
  readonly data: string;
  readonly type: "json" | "text" | "binary";
}

/**
 * A key's record, as JSON in its KV entry. Every record says when it expires (`expiresAt`,
 * epoch ms: written + the function's `idempotency.ttl`); an expired record counts as absent.
 *
 * - `running`: a delivery with this key runs now. `owner` is the host and claim, `run` the
 *   delivery's run id; the claim is a lease of `leaseMs`, taken over only once another host
 *   has seen this revision unchanged for that long by its own clock.
 * - `done`: a run with this key succeeded. `run` is its run id, `msgId` the `Nats-Msg-Id` its
 *   output was published with, `output` its return value as published (absent when it returned
 *   nothing, or when it was too large to keep).
 */
export type IdempotencyRecord =
  | {
      readonly state: "running";
      readonly owner: string;
      readonly run: string;
      readonly leaseMs: number;
      readonly startedAt: number;
      readonly expiresAt: number;
    }
  | {
      readonly state: "done";
      readonly run: string;
      readonly at: number;
      readonly expiresAt: number;
      readonly msgId: string;
      readonly output?: RecordedOutput;
    };

/** Reads a record; undefined for one this version cannot read (treated as absent, and written over). */
export function parseIdempotencyRecord(text: string): IdempotencyRecord | undefined {
  const record = jsonObject(text);
  if (record === undefined) return undefined;
  if (typeof record.expiresAt !== "number" || typeof record.run !== "string") return undefined;
  if (record.state === "running")
    return typeof record.owner === "string" && typeof record.leaseMs === "number" ? (record as IdempotencyRecord) : undefined;
  if (record.state === "done") return typeof record.msgId === "string" ? (record as IdempotencyRecord) : undefined;
  return undefined;
}

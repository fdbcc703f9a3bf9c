import { performance } from "node:perf_hooks";
import { retryInPlace } from "../resilience/retry-in-place.ts";

/** Between tries of a record's write the store refused: 100 ms doubling to 1 s, jittered. */
const RECORD_RETRY = {
  maxAttempts: Number.POSITIVE_INFINITY,
  backoff: "exponential",
  initialDelayMs: 100,
  maxDelayMs: 1000,
  jitter: true,
} as const;

/**
 * Writes a record that says a side effect happened (a step's result, an idempotency key's
 * run), trying again in place while the store fails (its KV stream electing a new leader, a
 * reconnect), until `untilMs` (monotonic, `performance.now()`): the end of the claim's
 * lease, after which another delivery may take the claim over and the write could no
 * longer stand. Throws the last failure past it. A write given up is the gap the docs
 * name: the side effect happened, and nothing says so.
 */
export async function writeRecord<T>(write: () => Promise<T>, untilMs: number): Promise<T> {
  const deadline = AbortSignal.timeout(Math.max(1, Math.floor(untilMs - performance.now())));
  const end = await retryInPlace(write, { policy: RECORD_RETRY, transient: () => true, signals: [deadline] });
  if (end.ok) return end.value;
  throw end.error;
}

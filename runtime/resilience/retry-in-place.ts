import type { CompiledRetry } from "../config/types.ts";
import { backoffDelay } from "./backoff.ts";

/**
 * Between tries of a publish the broker refused: 200 ms doubling to 5 s, jittered, for as
 * long as it takes (the message waits for the broker, it is not the message's fault).
 */
export const BROKER_RETRY: CompiledRetry = {
  maxAttempts: Number.POSITIVE_INFINITY,
  backoff: "exponential",
  initialDelayMs: 200,
  maxDelayMs: 5000,
  jitter: true,
};

/** How {@link retryInPlace} ended. */
export type RetryEnd<T> =
  | { readonly ok: true; readonly value: T }
  | {
      readonly ok: false;
      /** The last failure. */
      readonly error: unknown;
      /**
       * `permanent`: a failure no retry can help (see `transient`); `aborted`: the signal
       * ended the wait; `gave-up`: `policy.maxAttempts` tries failed.
       */
      readonly ended: "permanent" | "aborted" | "gave-up";
      /** Tries that failed. */
      readonly failures: number;
    };

export interface RetryInPlaceOptions {
  /** The delays between tries (see `backoffDelay`), and `maxAttempts`, the tries at most. */
  readonly policy: CompiledRetry;
  /** Whether trying the same again may succeed; a failure it denies ends the retry at once. */
  readonly transient: (error: unknown) => boolean;
  /** Told each transient failure (1-based), before the wait that follows it. */
  readonly onFailure?: (error: unknown, failures: number) => void;
  /** Each ends the wait early: checked after each failure, and while waiting. */
  readonly signals?: readonly AbortSignal[];
  /** Returns a number in [0, 1), for jitter. */
  readonly random?: () => number;
}

/**
 * Runs `attempt` until it succeeds, again and again in place: after each transient
 * failure, waits `policy`'s backoff delay for that many failures, then tries the same.
 * The first try is always made, even with the signal already aborted. Never rejects.
 */
export async function retryInPlace<T>(attempt: () => Promise<T>, options: RetryInPlaceOptions): Promise<RetryEnd<T>> {
  const { policy } = options;
  const signals = options.signals ?? [];
  for (let failures = 1; ; failures++) {
    try {
      return { ok: true, value: await attempt() };
    } catch (error) {
      if (!options.transient(error)) return { ok: false, error, ended: "permanent", failures };
      options.onFailure?.(error, failures);
      if (failures >= policy.maxAttempts) return { ok: false, error, ended: "gave-up", failures };
      if (signals.some((signal) => signal.aborted) || !(await sleep(backoffDelay(policy, failures, options.random), signals))) {
        return { ok: false, error, ended: "aborted", failures };
      }
    }
  }
}

/**
 * Resolves true after `ms`, or false as soon as one of `signals` aborts. Global timers, so
 * a test's fake clock drives it. Listeners, not `AbortSignal.any`: the host's stop signal
 * lives as long as the host, and each wait leaves nothing on it.
 */
function sleep(ms: number, signals: readonly AbortSignal[]): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (slept: boolean): void => {
      clearTimeout(timer);
      for (const signal of signals) signal.removeEventListener("abort", onAbort);
      resolve(slept);
    };
    const onAbort = (): void => done(false);
    const timer = setTimeout(() => done(true), ms);
    for (const signal of signals) signal.addEventListener("abort", onAbort, { once: true });
  });
}

import { setTimeout as sleep } from "node:timers/promises";

/** Options for {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this many milliseconds. Default 10 000. */
  timeout?: number;
  /** Milliseconds between probes. Default 25. */
  interval?: number;
  /** What was being waited for; starts the error message on timeout. */
  message?: string;
}

function describeError(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}

/**
 * Polls `probe` until it returns (or resolves to) a truthy value, and returns that value.
 *
 * A probe that throws or rejects counts as "not yet". On timeout the returned promise
 * rejects with `message` and the last error the probe threw, if any.
 */
export async function waitFor<T>(probe: () => T | Promise<T>, opts: WaitForOptions = {}): Promise<NonNullable<T>> {
  const timeout = opts.timeout ?? 10_000;
  const interval = opts.interval ?? 25;
  const deadline = Date.now() + timeout;
  let lastError: unknown;
  let threw = false;
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
      threw = false;
    } catch (err) {
      lastError = err;
      threw = true;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    await sleep(Math.min(interval, remaining));
  }
  let text = `${opts.message ?? "waitFor: condition not met"} (timed out after ${timeout} ms, ${attempts} attempts)`;
  if (lastError !== undefined) {
    text += `\nlast probe error${threw ? "" : " (not from the final attempt)"}: ${describeError(lastError)}`;
  }
  throw lastError === undefined ? new Error(text) : new Error(text, { cause: lastError });
}

import type { CompiledRetry } from "../config/types.ts";

/**
 * Delay before the next delivery after `deliveryCount` failed ones (1-based).
 *
 * Exponential: `initialDelay * 2^(deliveryCount-1)`, capped at `maxDelay`; fixed:
 * `initialDelay`. With jitter the delay is drawn from [delay/2, delay] ("equal jitter"),
 * so retries of a burst spread out but never come sooner than half the nominal delay.
 *
 * @param random injected for tests; returns a number in [0, 1).
 */
export function backoffDelay(retry: CompiledRetry, deliveryCount: number, random: () => number = Math.random): number {
  const attempt = Math.max(1, Math.floor(deliveryCount));
  const nominal = retry.backoff === "fixed" ? retry.initialDelayMs : retry.initialDelayMs * 2 ** Math.min(attempt - 1, 52); // 2^52 keeps the product finite
  const capped = Math.min(nominal, retry.maxDelayMs);
  if (!retry.jitter) return Math.round(capped);
  return Math.round(capped / 2 + random() * (capped / 2));
}

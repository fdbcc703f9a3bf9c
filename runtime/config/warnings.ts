import ms from "ms";
import { backoffDelay } from "../resilience/backoff.ts";
import type { CompiledConfig, CompiledFunction } from "./types.ts";

/**
 * What `jetfn validate` warns about: settings that are valid but probably not meant. Each is
 * one line naming the file and the function.
 */
export function configWarnings(config: CompiledConfig): string[] {
  const warnings: string[] = [];
  for (const fn of config.functions) {
    const span = retrySpanMs(fn);
    if (fn.steps.ttlMs < span) {
      warnings.push(
        `${config.file}: function ${fn.name}: steps.ttl ${ms(fn.steps.ttlMs)} is shorter than its retry span (up to ${ms(span)}: ${fn.retry.maxAttempts} attempts of up to ${ms(fn.timeoutMs)} and their backoff); an attempt after the ttl runs its steps again`,
      );
    }
  }
  return warnings;
}

/** The longest a function's event may take from its first attempt to its last: every attempt's timeout and every backoff delay (no jitter). */
export function retrySpanMs(fn: CompiledFunction): number {
  const retry = { ...fn.retry, jitter: false };
  let span = fn.retry.maxAttempts * fn.timeoutMs;
  for (let attempt = 1; attempt < fn.retry.maxAttempts; attempt++) span += backoffDelay(retry, attempt);
  return span;
}

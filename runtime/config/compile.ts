import path from "node:path";
import ms from "ms";
import { defaultDeadLetter } from "../contracts/dead-letter.ts";
import { DEFAULT_IDEMPOTENCY_TTL_MS } from "../contracts/idempotency.ts";
import { SCHEDULE_STREAM, scheduleSubject } from "../contracts/schedule.ts";
import { DEFAULT_STEP_RESULT_BYTES, DEFAULT_STEP_TTL_MS } from "../contracts/steps.ts";
import { DEFAULT_BREAKER_POLICY } from "../resilience/breaker.ts";
import type { DefaultsEntry, FunctionEntry, StreamEntry } from "./schema.ts";
import type {
  CompiledBreaker,
  CompiledDeliverPolicy,
  CompiledFunction,
  CompiledRetry,
  CompiledStream,
  Encoding,
  Isolation,
} from "./types.ts";

/** The built-in layer under `defaults:` and each entry. */
export const BUILT_IN_DEFAULTS = Object.freeze({
  concurrency: 16,
  timeoutMs: 30_000,
  /** `ackWait` defaults to the timeout plus this much. */
  ackWaitMarginMs: 5_000,
  /** `maxAckPending` defaults to the larger of this and the concurrency. */
  maxAckPendingFloor: 1000,
  retry: Object.freeze<CompiledRetry>({
    maxAttempts: 5,
    backoff: "exponential",
    initialDelayMs: 1_000,
    maxDelayMs: 300_000,
    jitter: true,
  }),
  breaker: DEFAULT_BREAKER_POLICY as CompiledBreaker,
  deliverPolicy: Object.freeze<CompiledDeliverPolicy>({ kind: "all" }),
  encoding: "json" as Encoding,
  isolation: "worker" as Isolation,
  memoryLimitBytes: 512 * 1024 * 1024,
  ordering: Object.freeze({ partitions: 1, leaseTtlMs: 10_000 }),
  /** `batch.maxWait` unless set. */
  batchMaxWaitMs: 1_000,
  stream: Object.freeze({
    storage: "file" as const,
    replicas: 1,
    maxAgeMs: 0,
    duplicateWindowMs: 120_000,
  }),
});

/** A problem found while compiling, with the document path it belongs to. */
export interface CompileIssue {
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

/** A merged value and the document path of the layer that set it (none for built-ins). */
interface Picked<T> {
  readonly value: T;
  readonly path?: readonly PropertyKey[];
}

/** The first layer that sets a value wins; layers come highest-priority first. */
function pick<T>(builtIn: T, ...layers: ReadonlyArray<readonly [T | undefined, readonly PropertyKey[]]>): Picked<T> {
  for (const [value, at] of layers) if (value !== undefined) return { value, path: at };
  return { value: builtIn };
}

/** Compiles a `streams:` entry, applying built-in defaults. */
export function compileStream(entry: StreamEntry): CompiledStream {
  const builtIn = BUILT_IN_DEFAULTS.stream;
  return {
    name: entry.name,
    subjects: entry.subjects,
    storage: entry.storage ?? builtIn.storage,
    replicas: entry.replicas ?? builtIn.replicas,
    maxAgeMs: entry.maxAge ?? builtIn.maxAgeMs,
    duplicateWindowMs: entry.duplicateWindow ?? builtIn.duplicateWindowMs,
  };
}

/**
 * Compiles `functions[index]`: built-in defaults < `defaults:` < the entry, with `retry` and
 * `breaker` merged key by key. Checks that span layers (maxAckPending against concurrency,
 * initialDelay against maxDelay) are reported at the key of the layer that set the value.
 */
export function compileFunction(
  entry: FunctionEntry,
  index: number,
  defaults: DefaultsEntry,
  rootDir: string,
): { readonly compiled: CompiledFunction; readonly issues: readonly CompileIssue[] } {
  const at = (...keys: PropertyKey[]): readonly PropertyKey[] => ["functions", index, ...keys];
  const inDefaults = (...keys: PropertyKey[]): readonly PropertyKey[] => ["defaults", ...keys];
  const issues: CompileIssue[] = [];
  const builtIn = BUILT_IN_DEFAULTS;

  const concurrency = entry.concurrency ?? defaults.concurrency ?? builtIn.concurrency;
  const timeoutMs = entry.timeout ?? defaults.timeout ?? builtIn.timeoutMs;
  const ackWaitMs = entry.ackWait ?? defaults.ackWait ?? timeoutMs + builtIn.ackWaitMarginMs;
  // A batch function holds `concurrency` batches running and one filling.
  const held = entry.batch ? (concurrency + 1) * entry.batch.maxSize : concurrency;
  const maxAckPending = pick(
    Math.max(builtIn.maxAckPendingFloor, held),
    [entry.maxAckPending, at("maxAckPending")],
    [defaults.maxAckPending, inDefaults("maxAckPending")],
  );
  if (maxAckPending.value < concurrency && maxAckPending.path) {
    const whose = maxAckPending.path[0] === "defaults" ? ` of function "${entry.name}"` : "";
    issues.push({
      path: maxAckPending.path,
      message: `maxAckPending ${maxAckPending.value} is less than the concurrency ${concurrency}${whose}`,
    });
  }

  const batchWaitMs = entry.batch?.maxWait ?? builtIn.batchMaxWaitMs;
  if (entry.batch && batchWaitMs > ackWaitMs) {
    issues.push({
      path: at("batch", ...(entry.batch.maxWait !== undefined ? ["maxWait"] : [])),
      message: `batch maxWait ${ms(batchWaitMs)} is longer than the ack wait ${ms(ackWaitMs)}: a batch's first event would be redelivered before the batch is handed over`,
    });
  }

  const retry = compileRetry(entry, defaults, at, inDefaults, issues);
  const breaker = compileBreaker(entry, defaults);
  const handler = entry.handler;
  const compiled: CompiledFunction = {
    name: entry.name,
    handlerPath: path.resolve(rootDir, handler.file),
    exportName: handler.exportName,
    // A function with only a schedule reads its ticks' subject in jetfn's schedule stream.
    stream: entry.stream ?? SCHEDULE_STREAM,
    subjects: entry.subjects ?? [scheduleSubject(entry.name)],
    durable: entry.durable ?? `jetfn_${entry.name.replaceAll("-", "_")}`,
    concurrency,
    timeoutMs,
    ackWaitMs,
    maxAckPending: maxAckPending.value,
    retry,
    ...(breaker ? { breaker } : {}),
    ...(entry.output !== undefined ? { output: entry.output } : {}),
    deadLetter: entry.deadLetter ?? defaultDeadLetter(entry.name),
    // Ticks from before the function's consumer existed are not its to run.
    deliverPolicy: entry.deliverPolicy ?? defaults.deliverPolicy ?? (entry.stream === undefined ? { kind: "new" } : builtIn.deliverPolicy),
    encoding: entry.encoding ?? defaults.encoding ?? builtIn.encoding,
    config: entry.config ?? defaults.config ?? {},
    isolation: entry.isolation ?? defaults.isolation ?? builtIn.isolation,
    memoryLimitMb: Math.round((entry.memoryLimit ?? defaults.memoryLimit ?? builtIn.memoryLimitBytes) / (1024 * 1024)),
    invoke: entry.invoke ?? false,
    steps: {
      ttlMs: entry.steps?.ttl ?? defaults.steps?.ttl ?? DEFAULT_STEP_TTL_MS,
      maxResultBytes: entry.steps?.maxResultSize ?? defaults.steps?.maxResultSize ?? DEFAULT_STEP_RESULT_BYTES,
    },
    ...(entry.idempotency
      ? { idempotency: { key: entry.idempotency.key, ttlMs: entry.idempotency.ttl ?? DEFAULT_IDEMPOTENCY_TTL_MS } }
      : {}),
    ...(entry.ordering
      ? {
          ordering: {
            key: entry.ordering.key,
            partitions: entry.ordering.partitions ?? builtIn.ordering.partitions,
            leaseTtlMs: entry.ordering.leaseTtl ?? builtIn.ordering.leaseTtlMs,
          },
        }
      : {}),
    ...(entry.schedule
      ? {
          schedule: {
            cron: entry.schedule.cron,
            timezone: entry.schedule.timezone ?? "UTC",
            catchUp: entry.schedule.catchUp ?? "latest",
            maxCatchUp: entry.schedule.maxCatchUp ?? 10,
            payload: entry.schedule.payload ?? {},
          },
        }
      : {}),
    ...(entry.rateLimit
      ? {
          rateLimit: {
            limit: entry.rateLimit.limit,
            periodMs: entry.rateLimit.period ?? 1000,
            burst: entry.rateLimit.burst ?? Math.max(1, Math.ceil(entry.rateLimit.limit / 10)),
            ...(entry.rateLimit.key ? { key: entry.rateLimit.key } : {}),
          },
        }
      : {}),
    ...(entry.batch
      ? {
          batch: {
            maxSize: entry.batch.maxSize,
            maxWaitMs: batchWaitMs,
            ...(entry.batch.maxBytes !== undefined ? { maxBytes: entry.batch.maxBytes } : {}),
          },
        }
      : {}),
    ...(entry.debounce
      ? {
          debounce: {
            key: entry.debounce.key,
            periodMs: entry.debounce.period,
            ...(entry.debounce.maxWait !== undefined ? { maxWaitMs: entry.debounce.maxWait } : {}),
          },
        }
      : {}),
  };
  return { compiled, issues };
}

function compileRetry(
  entry: FunctionEntry,
  defaults: DefaultsEntry,
  at: (...keys: PropertyKey[]) => readonly PropertyKey[],
  inDefaults: (...keys: PropertyKey[]) => readonly PropertyKey[],
  issues: CompileIssue[],
): CompiledRetry {
  const own = entry.retry ?? {};
  const shared = defaults.retry ?? {};
  const builtIn = BUILT_IN_DEFAULTS.retry;
  const initialDelay = pick(
    builtIn.initialDelayMs,
    [own.initialDelay, at("retry", "initialDelay")],
    [shared.initialDelay, inDefaults("retry", "initialDelay")],
  );
  const maxDelay = pick(builtIn.maxDelayMs, [own.maxDelay, at("retry", "maxDelay")], [shared.maxDelay, inDefaults("retry", "maxDelay")]);
  if (initialDelay.value > maxDelay.value) {
    const where = initialDelay.path ?? maxDelay.path ?? at("retry");
    const whose = where[0] === "defaults" ? ` of function "${entry.name}"` : "";
    issues.push({
      path: where,
      message: `retry initialDelay ${ms(initialDelay.value)} is longer than maxDelay ${ms(maxDelay.value)}${whose}`,
    });
  }
  return {
    maxAttempts: own.maxAttempts ?? shared.maxAttempts ?? builtIn.maxAttempts,
    backoff: own.backoff ?? shared.backoff ?? builtIn.backoff,
    initialDelayMs: initialDelay.value,
    maxDelayMs: maxDelay.value,
    jitter: own.jitter ?? shared.jitter ?? builtIn.jitter,
  };
}

/** No breaker unless a layer asks for one; `breaker: false` in the entry drops the default's. */
function compileBreaker(entry: FunctionEntry, defaults: DefaultsEntry): CompiledBreaker | undefined {
  if (entry.breaker === false) return undefined;
  const own = entry.breaker;
  const shared = defaults.breaker === false ? undefined : defaults.breaker;
  if (own === undefined && shared === undefined) return undefined;
  const builtIn = BUILT_IN_DEFAULTS.breaker;
  return {
    failureThreshold: own?.failureThreshold ?? shared?.failureThreshold ?? builtIn.failureThreshold,
    openForMs: own?.openFor ?? shared?.openFor ?? builtIn.openForMs,
    halfOpenRequests: own?.halfOpenRequests ?? shared?.halfOpenRequests ?? builtIn.halfOpenRequests,
  };
}

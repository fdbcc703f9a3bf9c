import { z } from "zod";
import { MAX_DEBOUNCE_PERIOD_MS } from "../contracts/debounce.ts";
import type { EventKeySpec } from "../contracts/event-key.ts";
import { CronSchedule } from "../schedule/cron-schedule.ts";
import { durationMessage, durationSchema, isDuration, parseDuration } from "./duration.ts";
import { describeValue } from "./errors.ts";
import { copyPlain, isPlainMap } from "./freeze.ts";
import { dispatch, integer, issueMessage } from "./messages.ts";
import { routeEntrySchema } from "./routes.ts";
import { sizeSchema } from "./size.ts";
import { isValidSubject } from "./subjects.ts";
import type { CompiledDeliverPolicy } from "./types.ts";

/**
 * Strict zod schemas for `functions.yaml` as the user writes it. Optional keys stay absent
 * here: defaults are applied in `compile.ts`, because they layer (built-in < `defaults:` <
 * function entry) and a schema default would hide which layer set a key.
 */

/** A function's name: also part of subjects, consumer names and metric labels. */
export const FUNCTION_NAME = /^[a-z0-9][a-z0-9-]*$/;
/** Stream and consumer names: no whitespace, `.`, `*`, `>`, path separators or NUL. */
const RESOURCE_NAME = /^[^\s.*>/\\\0]+$/;
const EXPORT_NAME = /^[A-Za-z_$][\w$]*$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}))?$/;

function text(message: (input: unknown) => string, valid: (value: string) => boolean) {
  return z.string({ error: (issue) => message(issue.input) }).refine(valid, { error: (issue) => message(issue.input) });
}

/** A duration of at least `minMs`; one message for both ways of getting it wrong. */
function durationAtLeast(minMs: number, shown: string) {
  const valid = (value: string) => isDuration(value) && parseDuration(value) >= minMs;
  return text(
    (input) =>
      typeof input === "string" && isDuration(input)
        ? `expected a duration of at least ${shown}, got ${describeValue(input)}`
        : durationMessage(input),
    valid,
  ).transform((value) => parseDuration(value));
}

function durationBetween(minMs: number, shownMin: string, maxMs: number, shownMax: string) {
  const valid = (value: string) => isDuration(value) && parseDuration(value) >= minMs && parseDuration(value) <= maxMs;
  return text(
    (input) =>
      typeof input === "string" && isDuration(input)
        ? `expected a duration from ${shownMin} to ${shownMax}, got ${describeValue(input)}`
        : durationMessage(input),
    valid,
  ).transform((value) => parseDuration(value));
}

function subject(wildcards: boolean) {
  const example = wildcards ? "orders.created" : "payments.charged";
  const kind = wildcards ? "a NATS subject" : "a NATS subject without wildcards";
  return text(
    (input) => `expected ${kind} like ${example}, got ${describeValue(input)}`,
    (value) => isValidSubject(value, { wildcards }),
  );
}

/** One subject or a non-empty list of them; always a list after parsing. */
const subjectListSchema = dispatch<string[]>((input) =>
  typeof input === "string" ? subject(true).transform((value) => [value]) : z.array(subject(true)).min(1),
);

const functionNameSchema = text(
  (input) => `expected a name of lowercase letters, digits and "-" (like charge-payment), got ${describeValue(input)}`,
  (value) => FUNCTION_NAME.test(value),
);

function resourceName(kind: string) {
  return text(
    (input) => `expected a ${kind} name without spaces, ".", "*", ">", "/" or "\\", got ${describeValue(input)}`,
    (value) => RESOURCE_NAME.test(value),
  );
}

/** `path/to/file.ts` or `path/to/file.ts#exportName`. */
const handlerSchema = text(
  (input) => `expected a file path like functions/charge.ts, optionally with #exportName, got ${describeValue(input)}`,
  (value) => {
    const [file, exportName, extra] = value.split("#");
    if (file === undefined || file.trim() === "" || extra !== undefined) return false;
    return exportName === undefined || EXPORT_NAME.test(exportName);
  },
).transform((value) => {
  const [file = "", exportName = "default"] = value.split("#");
  return { file, exportName };
});

const isoDateSchema = text(
  (input) => `expected an ISO date like 2024-05-01T00:00:00Z, got ${describeValue(input)}`,
  (value) => ISO_DATE.test(value) && Number.isFinite(Date.parse(value)),
).transform((value) => new Date(value));

const deliverPolicySchema = dispatch<CompiledDeliverPolicy>(
  (input) => {
    if (typeof input === "string") {
      return z.enum(["all", "new", "last"]).transform((kind): CompiledDeliverPolicy => ({ kind }));
    }
    if (isPlainMap(input) && "startSeq" in input) {
      return z.strictObject({ startSeq: integer(1) }).transform(
        ({ startSeq }): CompiledDeliverPolicy => ({
          kind: "startSeq",
          startSeq,
        }),
      );
    }
    if (isPlainMap(input) && "startTime" in input) {
      return z.strictObject({ startTime: isoDateSchema }).transform(
        ({ startTime }): CompiledDeliverPolicy => ({
          kind: "startTime",
          startTime,
        }),
      );
    }
    return undefined;
  },
  (input) => `expected all, new, last, { startTime: <ISO date> } or { startSeq: <integer> }, got ${describeValue(input)}`,
);

const configMapSchema = z
  .custom<Record<string, unknown>>(isPlainMap, { error: (issue) => `expected a map, got ${describeValue(issue.input)}` })
  .transform((value, ctx) => {
    try {
      return copyPlain(value) as Record<string, unknown>;
    } catch (error) {
      ctx.issues.push({ code: "custom", message: (error as Error).message, input: value });
      return z.NEVER;
    }
  });

/** `retry:` as written; any subset of keys, merged over the layers below it. */
export const retrySchema = z.strictObject({
  maxAttempts: integer(1).optional(),
  backoff: z.enum(["exponential", "fixed"]).optional(),
  initialDelay: durationSchema.optional(),
  maxDelay: durationSchema.optional(),
  jitter: z.boolean().optional(),
});

const breakerMapSchema = z.strictObject({
  failureThreshold: integer(1).optional(),
  openFor: durationAtLeast(1, "1ms").optional(),
  halfOpenRequests: integer(1).optional(),
});

/**
 * `breaker:` as written. Any map (even `{}`) turns a breaker on, its keys merged over the
 * layers below; `false` turns off a breaker inherited from `defaults:`.
 */
export const breakerSchema = dispatch<false | z.output<typeof breakerMapSchema>>(
  (input) => (input === false ? z.literal(false) : isPlainMap(input) ? breakerMapSchema : undefined),
  (input) => `expected a map or false, got ${describeValue(input)}`,
);

/** `steps:`: how long `ctx.step` records live, and how large a step's result may be. */
const stepsSchema = z.strictObject({
  ttl: durationAtLeast(1000, "1s").optional(),
  maxResultSize: sizeSchema(1024).optional(),
});

/** Keys that `defaults:` may set: every function key that is not per-function. */
const tunables = {
  concurrency: integer(1).optional(),
  timeout: durationAtLeast(1, "1ms").optional(),
  ackWait: durationAtLeast(1000, "1s").optional(),
  maxAckPending: integer(1).optional(),
  retry: retrySchema.optional(),
  breaker: breakerSchema.optional(),
  deliverPolicy: deliverPolicySchema.optional(),
  encoding: z.enum(["json", "text", "binary"]).optional(),
  config: configMapSchema.optional(),
  isolation: z.enum(["worker", "none"]).optional(),
  memoryLimit: sizeSchema(16 * 1024 * 1024).optional(),
  steps: stepsSchema.optional(),
};

/** `ordering.key`, `debounce.key`: a dot path into the JSON event, `subject:N` (1-based token) or `header:Name`. */
const eventKeySchema = text(
  (input) => `expected a JSON path like customer.id, subject:2 or header:Name, got ${describeValue(input)}`,
  (value) => parseEventKey(value) !== undefined,
).transform((value) => parseEventKey(value)!);

/** Reads an event key's spec; undefined when malformed. */
function parseEventKey(value: string): EventKeySpec | undefined {
  const subject = /^subject:([1-9]\d*)$/.exec(value);
  if (subject) return { kind: "subject", token: Number(subject[1]) };
  const header = /^header:([!-9;-~]+)$/.exec(value);
  if (header) return { kind: "header", name: header[1]! };
  if (value.startsWith("subject:") || value.startsWith("header:")) return undefined;
  const path = value.split(".");
  return path.every((part) => /^[A-Za-z0-9_$-]+$/.test(part)) ? { kind: "json", path } : undefined;
}

/** `ordering:` of a function: one event per key at a time, in stream order, across replicas. */
const orderingSchema = z.strictObject({
  key: eventKeySchema,
  partitions: integer(1, 1024).optional(),
  leaseTtl: durationAtLeast(500, "500ms").optional(),
});

/** `debounce:` of a function: once per key, with the last event, after a quiet period. */
const debounceSchema = z
  .strictObject({
    key: eventKeySchema,
    period: durationBetween(1000, "1s", MAX_DEBOUNCE_PERIOD_MS, "24h"),
    maxWait: durationAtLeast(1000, "1s").optional(),
  })
  .check((ctx) => {
    const { period, maxWait } = ctx.value;
    if (maxWait !== undefined && maxWait < period)
      ctx.issues.push({ code: "custom", input: maxWait, path: ["maxWait"], message: "maxWait must be at least the period" });
  });

/** `rateLimit:` of a function: at most `limit` runs per `period` across every replica. */
const rateLimitSchema = z.strictObject({
  limit: integer(1),
  period: durationAtLeast(1, "1ms").optional(),
  burst: integer(1).optional(),
  key: eventKeySchema.optional(),
});

/** `batch:` of a function: its handler takes its events in batches (`defineBatchFunction`). */
const batchSchema = z.strictObject({
  maxSize: integer(1, 10_000),
  maxWait: durationAtLeast(1, "1ms").optional(),
  maxBytes: sizeSchema(1).optional(),
});

/** Why `batch:` does not go with another key of the entry. */
const BATCH_CONFLICTS = {
  ordering: "batch and ordering do not go together: a batch runs many keys' events at once, out of their order",
  output: "batch and output do not go together: a batch handler returns nothing per event to publish (use ctx.publish)",
  debounce: "batch and debounce do not go together: a debounced key runs one event, its last",
  invoke: "batch and invoke: true do not go together: a synchronous call is one event with one answer",
  schedule: "batch and schedule do not go together: each tick runs on its own",
  idempotency: "batch and idempotency do not go together (not built yet): a business key is checked for one event's run",
} as const;

/**
 * `idempotency:` of a function: a second event with the same business key within `ttl` is
 * acked without running. The key is read as `ordering.key` is (a JSON path, `subject:N`,
 * `header:Name`).
 */
const idempotencySchema = z.strictObject({
  key: eventKeySchema,
  ttl: durationAtLeast(1000, "1s").optional(),
});

/** Keys that only a function entry may set; `defaults:` rejects them by name. */
export const PER_FUNCTION_KEYS: readonly string[] = Object.freeze([
  "name",
  "handler",
  "stream",
  "subjects",
  "durable",
  "output",
  "deadLetter",
  "invoke",
  "ordering",
  "schedule",
  "debounce",
  "rateLimit",
  "idempotency",
  "batch",
]);

/** The `defaults:` section. */
export const defaultsSchema = z.strictObject(tunables);

/** A cron pattern croner reads: 5 fields, or 6 with seconds first. */
const cronSchema = z
  .string({ error: (issue) => `expected a cron pattern like "*/10 * * * *", got ${describeValue(issue.input)}` })
  .check((ctx) => {
    try {
      new CronSchedule({ cron: ctx.value, timezone: "UTC" });
    } catch (error) {
      ctx.issues.push({ code: "custom", input: ctx.value, message: `invalid cron pattern "${ctx.value}": ${(error as Error).message}` });
    }
  });

/** An IANA time zone name. */
const timezoneSchema = text(
  (input) => `expected an IANA time zone like Europe/Berlin or UTC, got ${describeValue(input)}`,
  (value) => {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: value });
      return true;
    } catch {
      return false;
    }
  },
);

/** `schedule:` of a function: it runs on a clock, once per tick across every replica. */
const scheduleSchema = z
  .strictObject({
    cron: cronSchema,
    timezone: timezoneSchema.optional(),
    catchUp: z.enum(["none", "latest", "all"]).optional(),
    maxCatchUp: integer(1, 1000).optional(),
    payload: configMapSchema.optional(),
  })
  .check((ctx) => {
    if (ctx.value.maxCatchUp !== undefined && ctx.value.catchUp !== "all") {
      ctx.issues.push({ code: "custom", input: ctx.value.maxCatchUp, path: ["maxCatchUp"], message: "maxCatchUp goes with catchUp: all" });
    }
  });

/** One entry of `functions:`. */
export const functionEntrySchema = z
  .strictObject({
    name: functionNameSchema,
    handler: handlerSchema,
    // Both, unless the function has a schedule (its ticks have a stream of their own).
    stream: resourceName("stream").optional(),
    subjects: subjectListSchema.optional(),
    durable: resourceName("consumer").optional(),
    output: subject(false).optional(),
    deadLetter: subject(false).optional(),
    invoke: z.boolean().optional(),
    ordering: orderingSchema.optional(),
    schedule: scheduleSchema.optional(),
    debounce: debounceSchema.optional(),
    rateLimit: rateLimitSchema.optional(),
    idempotency: idempotencySchema.optional(),
    batch: batchSchema.optional(),
    ...tunables,
  })
  .check((ctx) => {
    const { stream, subjects, schedule, debounce, ordering, rateLimit, batch } = ctx.value;
    if (batch !== undefined)
      for (const key of Object.keys(BATCH_CONFLICTS) as (keyof typeof BATCH_CONFLICTS)[]) {
        const value = ctx.value[key];
        if (value !== undefined && value !== false)
          ctx.issues.push({ code: "custom", input: value, path: [key], message: BATCH_CONFLICTS[key] });
      }
    if (rateLimit !== undefined && ordering !== undefined)
      ctx.issues.push({
        code: "custom",
        input: rateLimit,
        path: ["rateLimit"],
        message: "rateLimit and ordering do not go together: every partition's consumer sees every event",
      });
    if (debounce !== undefined && ordering !== undefined)
      ctx.issues.push({
        code: "custom",
        input: debounce,
        path: ["debounce"],
        message: "debounce and ordering do not go together: a debounced key runs only its last event",
      });
    if (schedule !== undefined && debounce === undefined && stream === undefined && subjects === undefined) return;
    for (const key of ["stream", "subjects"] as const) {
      if (ctx.value[key] === undefined)
        ctx.issues.push({ code: "custom", input: ctx.value, path: [key], message: `missing required key "${key}"` });
    }
  });

/** One entry of `streams:`. */
export const streamEntrySchema = z.strictObject({
  name: resourceName("stream"),
  subjects: subjectListSchema,
  storage: z.enum(["file", "memory"]).optional(),
  replicas: integer(1, 5).optional(),
  /** A duration, or 0 for no limit. */
  maxAge: dispatch<number>((input) => (input === 0 || input === "0" ? z.unknown().transform(() => 0) : durationSchema)).optional(),
  duplicateWindow: durationAtLeast(1, "1ms").optional(),
});

/**
 * The file's top level. Entries are checked one by one (see `load.ts`) so that one bad entry
 * does not hide the problems of the others; {@link configFileSchema} checks everything at once.
 */
export const rootSchema = z.strictObject({
  defaults: z.unknown().optional(),
  streams: z.array(z.unknown()).optional(),
  functions: z.array(z.unknown()),
  routes: z.array(z.unknown()).optional(),
});

/** The whole file in one schema, for tools that want a single `safeParse`. */
export const configFileSchema = z.strictObject({
  defaults: defaultsSchema.optional(),
  streams: z.array(streamEntrySchema).optional(),
  functions: z.array(functionEntrySchema),
  routes: z.array(routeEntrySchema).optional(),
});

export type DefaultsEntry = z.output<typeof defaultsSchema>;
export type FunctionEntry = z.output<typeof functionEntrySchema>;
export type StreamEntry = z.output<typeof streamEntrySchema>;
export type RetryEntry = z.output<typeof retrySchema>;
export type BreakerEntry = z.output<typeof breakerSchema>;

/** Options for `safeParse` that word zod's generic issues the way the rest of this module does. */
export const parseOptions = { error: issueMessage } as const;

/**
 * What handler files import: `import { defineFunction, NonRetryableError } from "jetfn"`.
 * This module is bundled into every handler, so it must not import the rest of the runtime.
 */
import type { BatchHandler, EventSchema, Handler } from "./types.ts";

export * from "./errors.ts";
export type * from "./types.ts";

/** Marks a `defineFunction` result, recognised across bundles. */
export const FUNCTION_BRAND: unique symbol = Symbol.for("jetfn.function") as never;

/** A handler with an optional schema for its event. */
export interface FunctionDefinition<Event = unknown, Result = unknown, Config = Record<string, unknown>> {
  readonly [FUNCTION_BRAND]: true;
  readonly schema?: EventSchema<Event>;
  readonly handler: Handler<Event, Result, Config>;
}

/** Options of {@link defineFunction}. */
export interface FunctionOptions<Event, Result, Config> {
  /** Validates (and types) the event; an invalid event is dead-lettered, never retried. */
  schema?: EventSchema<Event>;
  handler: Handler<Event, Result, Config>;
}

/**
 * Declares a function: `export default defineFunction({ schema, handler })`. The event type
 * is inferred from the schema.
 */
export function defineFunction<Event = unknown, Result = unknown, Config = Record<string, unknown>>(
  options: FunctionOptions<Event, Result, Config>,
): FunctionDefinition<Event, Result, Config> {
  return Object.freeze({ [FUNCTION_BRAND]: true as const, schema: options.schema, handler: options.handler });
}

/** Marks a `defineBatchFunction` result, recognised across bundles. */
export const BATCH_FUNCTION_BRAND: unique symbol = Symbol.for("jetfn.batch-function") as never;

/** A batch handler with an optional schema for each event (see docs/batches.md). */
export interface BatchFunctionDefinition<Event = unknown, Config = Record<string, unknown>> {
  readonly [BATCH_FUNCTION_BRAND]: true;
  readonly schema?: EventSchema<Event>;
  readonly handler: BatchHandler<Event, Config>;
}

/** Options of {@link defineBatchFunction}. */
export interface BatchFunctionOptions<Event, Config> {
  /** Validates (and types) each event; an invalid one is dead-lettered before the batch, never handed over. */
  schema?: EventSchema<Event>;
  handler: BatchHandler<Event, Config>;
}

/**
 * Declares a batch function, for an entry with `batch:` in functions.yaml: `export default
 * defineBatchFunction({ schema, handler(messages, ctx) { ... } })`.
 */
export function defineBatchFunction<Event = unknown, Config = Record<string, unknown>>(
  options: BatchFunctionOptions<Event, Config>,
): BatchFunctionDefinition<Event, Config> {
  return Object.freeze({ [BATCH_FUNCTION_BRAND]: true as const, schema: options.schema, handler: options.handler });
}

/**
 * What handler files import: `import { defineFunction, NonRetryableError } from "jetfn"`.
 * This module is bundled into every handler, so it must not import the rest of the runtime.
 */
import type { EventSchema, Handler } from "./types.ts";

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

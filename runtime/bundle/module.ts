import path from "node:path";
import { pathToFileURL } from "node:url";
import type { CompiledFunction } from "../config/types.ts";
import { BATCH_FUNCTION_BRAND, FUNCTION_BRAND } from "../sdk/index.ts";
import type { BatchHandler, EventSchema, Handler } from "../sdk/types.ts";
import { BundleError } from "./errors.ts";

/** A handler module after bundling, loading and its shape check. */
export interface LoadedHandler {
  readonly handler: Handler;
  readonly schema?: EventSchema<unknown>;
  /** Set for a `defineBatchFunction` export: `handler` is then a {@link BatchHandler}. */
  readonly batch?: true;
}

/**
 * Imports a bundle and checks that the named export is a handler: an async function, or a
 * `defineFunction({ handler, schema? })` object (recognised by its brand or its shape).
 */
export async function loadHandler(fn: CompiledFunction, bundleFile: string, rootDir: string): Promise<LoadedHandler> {
  const source = path.relative(rootDir, fn.handlerPath);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(bundleFile).href)) as Record<string, unknown>;
  } catch (error) {
    const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
    throw new BundleError(`${source}: loading the handler module threw (function ${fn.name}):\n${stack}`);
  }
  const exported = mod[fn.exportName];
  const loaded = handlerOf(exported);
  if (loaded === "bad-schema") {
    throw new BundleError(`${source}: export "${fn.exportName}" has a schema without safeParse() or ~standard (function ${fn.name})`);
  }
  if (loaded && loaded.batch !== (fn.batch ? true : undefined)) {
    throw new BundleError(
      loaded.batch
        ? `${source}: export "${fn.exportName}" is a batch function (defineBatchFunction), and function ${fn.name} has no batch: in functions.yaml`
        : `${source}: function ${fn.name} has batch: in functions.yaml; its export "${fn.exportName}" must be \`defineBatchFunction({ handler(messages, ctx) })\``,
    );
  }
  if (loaded) return loaded;
  const found = exported === undefined ? `no export "${fn.exportName}"` : `export "${fn.exportName}" is ${typeof exported}`;
  throw new BundleError(
    `${source}: ${found} (function ${fn.name}); expected \`export default defineFunction({ handler })\` or an async function`,
  );
}

/**
 * The shape check of a handler export: an async function, or a `defineFunction({ handler,
 * schema? })` object (recognised by its brand or its shape). Undefined when it is neither;
 * `"bad-schema"` for a handler whose schema is not one.
 */
export function handlerOf(exported: unknown): LoadedHandler | "bad-schema" | undefined {
  if (typeof exported === "function") return { handler: exported as Handler };
  if (typeof exported !== "object" || exported === null) return undefined;
  const candidate = exported as { handler?: unknown; schema?: unknown; [FUNCTION_BRAND]?: unknown; [BATCH_FUNCTION_BRAND]?: unknown };
  if (typeof candidate.handler !== "function") return undefined;
  const schema = candidate.schema;
  if (schema !== undefined && !isSchema(schema)) return "bad-schema";
  const batch = candidate[BATCH_FUNCTION_BRAND] === true ? { batch: true as const } : {};
  return { handler: candidate.handler as Handler, schema: schema as EventSchema<unknown> | undefined, ...batch };
}

/**
 * Imports a route's schema bundle (in the host's thread: a schema checks data, it runs no
 * handler) and checks that the named export is a zod or Standard Schema.
 */
export async function loadSchema(bundleFile: string, exportName: string, source: string, owner: string): Promise<EventSchema<unknown>> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(bundleFile).href)) as Record<string, unknown>;
  } catch (error) {
    const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
    throw new BundleError(`${source}: loading the schema module threw (${owner}):\n${stack}`);
  }
  const exported = mod[exportName];
  if (!isSchema(exported)) {
    const found =
      exported === undefined ? `has no export "${exportName}"` : `export "${exportName}" is not a schema (no safeParse() or ~standard)`;
    throw new BundleError(`${source}: ${found} (${owner})`);
  }
  return exported as EventSchema<unknown>;
}

function isSchema(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  return typeof (value as { safeParse?: unknown }).safeParse === "function" || "~standard" in value;
}

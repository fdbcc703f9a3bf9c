import path from "node:path";
import { pathToFileURL } from "node:url";
import type { CompiledConfig, CompiledFunction } from "../config/types.ts";
import { FUNCTION_BRAND } from "../sdk/index.ts";
import type { EventSchema, Handler } from "../sdk/types.ts";
import { BundleError, buildHandlers, type BuiltHandler } from "./build.ts";

/** A handler module after bundling, loading and its shape check. */
export interface LoadedHandler {
  readonly handler: Handler;
  readonly schema?: EventSchema<unknown>;
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
  if (typeof exported === "function") return { handler: exported as Handler };
  if (typeof exported === "object" && exported !== null) {
    const candidate = exported as { handler?: unknown; schema?: unknown; [FUNCTION_BRAND]?: unknown };
    if (typeof candidate.handler === "function") {
      const schema = candidate.schema;
      if (schema !== undefined && !isSchema(schema)) {
        throw new BundleError(`${source}: export "${fn.exportName}" has a schema without safeParse() or ~standard (function ${fn.name})`);
      }
      return { handler: candidate.handler as Handler, schema: schema as EventSchema<unknown> | undefined };
    }
  }
  const found = exported === undefined ? `no export "${fn.exportName}"` : `export "${fn.exportName}" is ${typeof exported}`;
  throw new BundleError(
    `${source}: ${found} (function ${fn.name}); expected \`export default defineFunction({ handler })\` or an async function`,
  );
}

function isSchema(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  return typeof (value as { safeParse?: unknown }).safeParse === "function" || "~standard" in value;
}

/** A function's handler, ready for its executor. */
export interface PreparedHandler {
  /** The bundle a worker thread loads. */
  readonly bundleFile: string;
  /** Loaded in this thread: only for `isolation: none`. */
  readonly loaded?: LoadedHandler;
}

/**
 * Bundles (or reuses the bundles of) every function's handler and checks each one loads
 * with the right shape: what a host runs, and what `jetfn validate` checks. Handlers with
 * `isolation: none` are loaded here; the others are checked by `checkInWorker` (a worker
 * thread), so this thread never runs their code. Throws a `BundleError` naming each broken one.
 */
export async function loadHandlers(
  config: CompiledConfig,
  checkInWorker: (bundles: readonly BuiltHandler[]) => Promise<void>,
  onLoaded: (fn: CompiledFunction, bundle: BuiltHandler) => void = () => {},
): Promise<Map<string, PreparedHandler>> {
  process.setSourceMapsEnabled(true);
  const handlers = new Map<string, PreparedHandler>();
  const bundles = await buildHandlers(config);
  const isolated: BuiltHandler[] = [];
  for (const bundle of bundles) {
    const fn = config.functions.find((f) => f.name === bundle.function)!;
    if (fn.isolation === "worker") {
      isolated.push(bundle);
      handlers.set(fn.name, { bundleFile: bundle.file });
    } else {
      handlers.set(fn.name, { bundleFile: bundle.file, loaded: await loadHandler(fn, bundle.file, config.rootDir) });
    }
  }
  await checkInWorker(isolated);
  for (const bundle of bundles) onLoaded(config.functions.find((f) => f.name === bundle.function)!, bundle);
  return handlers;
}

import path from "node:path";
import type { CompiledConfig, CompiledFunction, CompiledRoute } from "../config/types.ts";
import type { EventSchema } from "../sdk/types.ts";
import { type BuiltHandler, buildHandlers, buildRouteSchemas } from "./build.ts";
import { type LoadedHandler, loadHandler, loadSchema } from "./module.ts";

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

/** Bundles and loads the schema of each route that names one; throws a `BundleError` for a broken one. */
export async function loadRouteSchemas(config: CompiledConfig): Promise<Map<CompiledRoute, EventSchema<unknown>>> {
  const schemas = new Map<CompiledRoute, EventSchema<unknown>>();
  if (!config.routes.some((route) => route.schema)) return schemas;
  const bundles = await buildRouteSchemas(config);
  for (const route of config.routes) {
    if (!route.schema) continue;
    const source = path.relative(config.rootDir, route.schema.file);
    schemas.set(route, await loadSchema(bundles.get(route.schema.file)!, route.schema.exportName, source, `route ${route.route}`));
  }
  return schemas;
}

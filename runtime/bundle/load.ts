import type { CompiledConfig, CompiledFunction } from "../config/types.ts";
import { buildHandlers, type BuiltHandler } from "./build.ts";
import { loadHandler, type LoadedHandler } from "./module.ts";

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

import { Worker } from "node:worker_threads";
import { type BuiltHandler, BundleError } from "../bundle/build.ts";
import { loadHandlers, type PreparedHandler } from "../bundle/load.ts";
import type { CompiledConfig, CompiledFunction } from "../config/types.ts";
import type { CheckInit } from "./protocol.ts";
import { workerScript } from "./script.ts";

/** How long loading every handler may take before the check gives up. */
const CHECK_TIMEOUT_MS = 30_000;

/**
 * Loads the given handlers in a throwaway worker thread and checks each one's shape, so a
 * broken handler fails the start, not its first message, while the host's thread never
 * runs handler code (not even a module's top level). Throws one `BundleError` listing every
 * handler that failed; a module that spins or exits while loading fails the check too.
 */
async function checkInThread(config: CompiledConfig, bundles: readonly BuiltHandler[], script: string): Promise<void> {
  if (bundles.length === 0) return;
  const init: CheckInit = {
    mode: "check",
    rootDir: config.rootDir,
    handlers: bundles.map((bundle) => {
      const fn = config.functions.find((f) => f.name === bundle.function)!;
      return {
        function: fn.name,
        bundleFile: bundle.file,
        exportName: fn.exportName,
        handlerPath: fn.handlerPath,
        ...(fn.batch ? { batch: true as const } : {}),
      };
    }),
  };
  const worker = new Worker(script, { workerData: init, name: "jetfn:check" });
  const results = await new Promise<{ function: string; error?: string }[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new BundleError(
          `loading the handlers (${init.handlers.map((h) => h.function).join(", ")}) did not finish within ${CHECK_TIMEOUT_MS / 1000}s: does a module's top level loop or wait forever?`,
        ),
      );
    }, CHECK_TIMEOUT_MS);
    worker.once("message", (message: { results: { function: string; error?: string }[] }) => resolve(message.results));
    worker.once("error", (error) => reject(new BundleError(`loading the handlers failed: ${error.stack ?? error.message}`)));
    worker.once("exit", (code) =>
      reject(new BundleError(`loading the handlers ended their thread with exit code ${code} (process.exit() at a module's top level?)`)),
    );
    worker.once("exit", () => clearTimeout(timer));
  }).finally(() => void worker.terminate());
  const failures = results.flatMap((result) => (result.error ? [result.error] : []));
  if (failures.length > 0) throw new BundleError(failures.join("\n"));
}

/** `loadHandlers` with the worker-mode handlers checked in a thread: what hosts and `jetfn validate` use. */
export function prepareHandlers(
  config: CompiledConfig,
  onLoaded?: (fn: CompiledFunction, bundle: BuiltHandler) => void,
): Promise<Map<string, PreparedHandler>> {
  return loadHandlers(config, async (bundles) => checkInThread(config, bundles, await workerScript()), onLoaded);
}

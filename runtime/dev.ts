import { watch } from "node:fs";
import path from "node:path";
import { BundleError } from "./bundle/build.ts";
import { ConfigError } from "./config/errors.ts";
import type { CompiledEnv } from "./config/types.ts";
import { Host } from "./host.ts";
import type { Logger } from "./telemetry/logger.ts";

/** Quiet time after the last file change before reloading (editors save in bursts). */
const DEBOUNCE_MS = 250;

/**
 * `jetfn dev`: runs the functions like `jetfn start`, and reloads when `functions.yaml` or
 * a file under its folder changes. The new host is created (config validated, handlers
 * bundled and loaded) before the running one is touched, so a broken edit is reported
 * and the running host keeps serving; a good one replaces it with a graceful shutdown.
 * Resolves when `stop` aborts and the running host has shut down.
 */
export async function runDev(env: CompiledEnv, log: Logger, stop: AbortSignal): Promise<void> {
  let host = await Host.create({ env, logger: log });
  await host.start();
  const root = path.dirname(env.configFile);
  let timer: NodeJS.Timeout | undefined;
  let reloading = Promise.resolve();

  const reload = async (): Promise<void> => {
    let next: Host;
    try {
      next = await Host.create({ env, logger: log });
    } catch (error) {
      if (!(error instanceof ConfigError || error instanceof BundleError)) throw error;
      log.error({ error: error.message }, "change not loaded, still running the previous version");
      return;
    }
    await host.shutdown();
    host = next;
    await host.start();
    log.info("reloaded");
  };

  const watcher = watch(root, { recursive: true }, (_event, file) => {
    if (!file || /(^|[/\\])(node_modules|\.jetfn|\.git)([/\\]|$)/.test(file)) return;
    // A handler's test (functions/<name>.test.ts) is no part of what runs.
    if (/\.test\.[cm]?[jt]s$/.test(file)) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      reloading = reloading.then(reload).catch((error: unknown) => log.error({ err: error }, "reload failed"));
    }, DEBOUNCE_MS);
  });
  log.info({ watching: root }, "dev mode: reloading on changes");

  await new Promise<void>((resolve) => stop.addEventListener("abort", () => resolve(), { once: true }));
  watcher.close();
  clearTimeout(timer);
  await reloading;
  await host.shutdown();
}

import path from "node:path";
import type { CompiledEnv } from "./config/types.ts";
import { Host } from "./host.ts";
import { watchProject } from "./project-watcher.ts";
import type { Logger } from "./telemetry/logger.ts";

/** How long each step of a reload may take; a step past its time is given up, never waited for. */
export interface DevOptions {
  /**
   * Validating, bundling and loading the changed project. Above the 30 s in which a worker
   * thread must load the handlers, so that its message (which names them) is the one shown.
   * @default 45000
   */
  readonly loadTimeoutMs?: number;
  /** Connecting, provisioning and starting the new version. @default 30000 */
  readonly startTimeoutMs?: number;
  /** Stopping the running version, beyond its `JETFN_SHUTDOWN_TIMEOUT`. @default 15000 */
  readonly stopMarginMs?: number;
}

interface Bounds {
  readonly loadMs: number;
  readonly startMs: number;
  readonly stopMs: number;
}

/** A step's outcome: its value, or why it failed or ran out of time, in one line. */
type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/**
 * `jetfn dev`: runs the functions like `jetfn start`, and reloads on every save under the
 * folder of `functions.yaml` (see `project-watcher.ts` for what is watched and what not).
 * The new version is created (config validated, handlers bundled and loaded) before the
 * running one is touched, so a broken edit is logged with the message `jetfn validate`
 * prints and the running version keeps serving; a good one replaces it with a graceful
 * shutdown. A change that loads but does not start (a stream or consumer the server
 * refuses) is logged, and the previous `functions.yaml` is started again. Each step of a
 * reload is bounded in time, and saves made during a reload are loaded right after it.
 * Resolves when `stop` aborts and the running version has shut down.
 */
export async function runDev(env: CompiledEnv, log: Logger, stop: AbortSignal, options: DevOptions = {}): Promise<void> {
  const bounds: Bounds = {
    loadMs: options.loadTimeoutMs ?? 45_000,
    startMs: options.startTimeoutMs ?? 30_000,
    stopMs: env.shutdownTimeoutMs + (options.stopMarginMs ?? 15_000),
  };
  const root = path.dirname(env.configFile);
  const changed = new Set<string>();
  let wake: (() => void) | undefined;
  const onAbort = (): void => wake?.();
  stop.addEventListener("abort", onAbort, { once: true });
  // Watching before the first start: a save made while it starts is loaded right after.
  const watcher = await watchProject({
    root,
    configFile: env.configFile,
    log,
    onChange: (files) => {
      for (const file of files) changed.add(file);
      wake?.();
    },
  });
  try {
    let host = await Host.create({ env, logger: log });
    await host.start();
    log.info({ watching: root }, "dev mode: reloading on changes");
    while (!stop.aborted) {
      if (changed.size === 0) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      const files = [...changed].sort();
      changed.clear();
      host = await reload(host, files, env, log, bounds);
    }
    await host.shutdown();
  } finally {
    stop.removeEventListener("abort", onAbort);
    await watcher.close();
  }
}

/** Replaces `current` with a host of the project as it is now; returns the host that runs afterwards. */
async function reload(current: Host, files: readonly string[], env: CompiledEnv, log: Logger, bounds: Bounds): Promise<Host> {
  log.info({ changed: files }, "change seen: reloading");
  const next = await bounded(Host.create({ env, logger: log }), bounds.loadMs, "loading the change");
  if (!next.ok) {
    log.error({ error: next.error }, "change not loaded, still running the previous version");
    return current;
  }
  const wasRunning = current.state === "running";
  const stopped = await bounded(current.shutdown(), bounds.stopMs, "stopping the previous version");
  if (!stopped.ok) log.warn({ error: stopped.error }, "the previous version did not stop cleanly; starting the new one anyway");
  const started = await startHost(next.value, bounds, "starting the change");
  if (started.ok) {
    log.info("reloaded");
    return next.value;
  }
  if (!wasRunning) {
    log.error({ error: started.error }, "change not started: nothing runs until the next change");
    return next.value;
  }
  log.error({ error: started.error }, "change not started, starting the previous functions.yaml again");
  // The handler files are read as they are now: the same as before unless they changed too.
  const previous = await bounded(Host.create({ env, logger: log, config: current.config }), bounds.loadMs, "loading the previous version");
  const restarted = previous.ok ? await startHost(previous.value, bounds, "starting the previous version") : previous;
  if (restarted.ok) log.info("previous version running again");
  else log.error({ error: restarted.error }, "the previous version did not start either: nothing runs until the next change");
  return previous.ok ? previous.value : next.value;
}

/** Starts `host`; one that fails or runs out of time is shut down (left to it if that hangs too). */
async function startHost(host: Host, bounds: Bounds, what: string): Promise<Outcome<void>> {
  const started = await bounded(host.start(), bounds.startMs, what);
  if (!started.ok) await bounded(host.shutdown(), bounds.stopMs, "stopping it");
  return started;
}

/**
 * Waits for `step` at most `ms`. A step past its time goes on unwatched: a host that loads
 * too late is dropped, which lets go of all it holds (a `created` host has no connection,
 * thread or timer yet).
 */
async function bounded<T>(step: Promise<T>, ms: number, what: string): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = step.then(
    (value): Outcome<T> => ({ ok: true, value }),
    (error: unknown): Outcome<T> => ({ ok: false, error: error instanceof Error ? error.message : String(error) }),
  );
  const timedOut = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, error: `${what} did not finish within ${ms / 1000}s` }), ms);
  });
  try {
    return await Promise.race([outcome, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

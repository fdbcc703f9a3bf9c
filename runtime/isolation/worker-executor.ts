import { availableParallelism } from "node:os";
import { context, ROOT_CONTEXT } from "@opentelemetry/api";
import type { LimitFunction } from "p-limit";
import pLimit from "p-limit";
import type { CompiledTracing } from "../config/types.ts";
import type { Gate } from "../contracts/gate.ts";
import type { Outcome } from "../contracts/outcome.ts";
import type { BatchInvocation, Executor, Invocation } from "../invoke/executor.ts";
import type { HostContext } from "../invoke/host-context.ts";
import type { Deadline } from "../invoke/run.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { HandlerThread, type ThreadEnd } from "./handler-thread.ts";

/** What a run resolves to once the executor is closed. */
const ABORTED: Outcome = { kind: "aborted" };

export interface WorkerExecutorOptions {
  /** The worker entry; see `workerScript()`. */
  readonly script: string;
  /** The function's bundle. */
  readonly bundleFile: string;
  readonly rootDir: string;
  /** pino's numeric level of the host's logger. */
  readonly logLevel: number;
  readonly tracing?: CompiledTracing;
  readonly metrics: Metrics;
  /** An idle thread is closed after this long. @default 30000 */
  readonly idleMs?: number;
  /** How long an aborted invocation's thread has to show it still yields. @default 1000 */
  readonly graceMs?: number;
  /** The function's admission: when it closes (pause, open breaker), deliveries waiting in the thread are handed back. */
  readonly gate?: Pick<Gate, "onClose">;
  /**
   * The host's turns to start a thread, shared by all its functions (see `threadStarts`):
   * a thread holds its turn until it has loaded its bundle.
   */
  readonly starts: LimitFunction;
}

/**
 * The turns a host gives its handler threads to start. Starting one (a V8 isolate, then the
 * function's bundle) is CPU work: a host whose 200 worker functions each got their first
 * event at once started 200 threads together, starved its own event loop (pulls missed their
 * heartbeats, a lease went unrenewed) and took a minute to run the 200 events. As many start
 * at once as the machine has cores; the others wait their turn, their runs with them.
 */
export function threadStarts(): LimitFunction {
  return pLimit(Math.max(1, availableParallelism()));
}

/**
 * How many deliveries beyond its `concurrency` a worker-isolated function holds: they wait
 * in its thread, so a slot that frees there starts the next one at once instead of after a
 * trip to the host and back (about a millisecond on a busy 2-core machine). A quarter of
 * the concurrency, at least 1. Each waits with its ack timer heartbeated.
 */
function waitingRoom(concurrency: number): number {
  return Math.max(1, Math.ceil(concurrency / 4));
}

/**
 * `isolation: worker`: the function's handler runs in a worker thread of its own, never in
 * the host's thread. One thread per function, started on its first delivery (once the host
 * gives it a turn: see {@link threadStarts}) and closed
 * after it has been idle a while, runs that function's invocations concurrently (up to
 * its `concurrency`), as the host's thread would. A crash, an out-of-memory or a hard
 * timeout ends that thread only: the next delivery starts a fresh one. While a thread may
 * be stuck (an aborted invocation has not let it read the abort), new deliveries go to a
 * fresh thread rather than join it; the old one finishes or is terminated, then goes.
 */
export class WorkerExecutor implements Executor {
  readonly waitingRoom: number;
  readonly #host: HostContext;
  readonly #options: WorkerExecutorOptions;
  /** The thread runs go to (see {@link #thread}). */
  #current?: HandlerThread;
  /** Threads replaced while they may be stuck: each ends, or closes once idle. */
  readonly #retiring = new Set<HandlerThread>();
  #idleTimer?: NodeJS.Timeout;
  #restarts = 0;
  #lastEnd?: ThreadEnd & { readonly at: string };
  #closed = false;
  /** Set by {@link warm}: the thread is started at once, and not closed when idle. */
  #keepWarm = false;
  /** Waiting for a turn to start a thread (see {@link threadStarts}). */
  #awaitingTurn = false;
  /** Runs (and warms) that came while the function waited for its turn: given the thread once it exists. */
  readonly #queued: ((thread: HandlerThread | undefined) => void)[] = [];

  constructor(host: HostContext, options: WorkerExecutorOptions) {
    this.#host = host;
    this.#options = options;
    // A batch function's batches wait for a slot in the host (see `BatchInvoker`), not here.
    this.waitingRoom = host.fn.batch ? 0 : waitingRoom(host.fn.concurrency);
    options.gate?.onClose(() => {
      this.#current?.releaseWaiting();
      for (const thread of this.#retiring) thread.releaseWaiting();
    });
  }

  run(invocation: Invocation, deadline: Deadline): Promise<Outcome> {
    return this.#thread()?.run(invocation, deadline) ?? this.#whenStarted((thread) => thread.run(invocation, deadline));
  }

  runBatch(batch: BatchInvocation, deadline: Deadline): Promise<Outcome> {
    return this.#thread()?.runBatch(batch, deadline) ?? this.#whenStarted((thread) => thread.runBatch(batch, deadline));
  }

  /**
   * A run that came while the function's thread waits for its turn to start: it waits too,
   * in order, and its deadline starts only when the thread has started.
   */
  #whenStarted(send: (thread: HandlerThread) => Promise<Outcome>): Promise<Outcome> {
    if (this.#closed) return Promise.resolve(ABORTED);
    return new Promise((resolve) => this.#queued.push((started) => resolve(started ? send(started) : ABORTED)));
  }

  /**
   * The thread the next run goes to: the current one, or none yet while a fresh one waits for
   * its turn to start (there is none, or the current one may be stuck); none once closed.
   */
  #thread(): HandlerThread | undefined {
    clearTimeout(this.#idleTimer);
    if (this.#closed) return undefined;
    if (this.#current?.suspect) {
      this.#retiring.add(this.#current);
      this.#current = undefined;
    }
    if (!this.#current) this.#awaitTurn();
    return this.#current;
  }

  /** Starts a thread once the host gives a turn, hands it the runs that waited, and holds the turn until it has loaded. */
  #awaitTurn(): void {
    if (this.#awaitingTurn) return;
    this.#awaitingTurn = true;
    void this.#options.starts(async () => {
      this.#awaitingTurn = false;
      // Spawned outside any delivery's trace context: the thread's events must not run in it.
      const thread = this.#closed ? undefined : (this.#current ??= context.with(ROOT_CONTEXT, () => this.#spawn()));
      for (const waiter of this.#queued.splice(0)) waiter(thread);
      if (thread) await Promise.race([thread.started, thread.ended]);
    });
  }

  /**
   * Starts the function's thread now, resolving once it can run a delivery (or it ended).
   * Before a host says it is ready: its first events then do not wait for a thread to start
   * and load the bundle (a few hundred milliseconds). Unused, the thread closes once idle
   * for `idleMs`, unless `keep`: then one is kept from then on, idle or not. A rate-limited
   * function keeps one: a permit is spent when its event is pulled, and events pulled while
   * a thread starts would all start at once when it is up, more than the limit allows then.
   */
  async warm({ keep }: { readonly keep: boolean }): Promise<void> {
    if (keep) this.#keepWarm = true;
    if (this.#closed) return;
    const thread = this.#thread() ?? (await new Promise<HandlerThread | undefined>((resolve) => this.#queued.push(resolve)));
    if (!thread) return;
    await Promise.race([thread.started, thread.ended]);
    if (this.#current === thread && thread.inflight === 0) this.#closeWhenIdle(thread);
  }

  status(): Record<string, unknown> {
    const thread = this.#current;
    return {
      isolation: "worker",
      thread: thread
        ? { state: thread.stuck ? "stuck" : thread.ready ? "running" : "starting", inflight: thread.inflight, abandoned: thread.abandoned }
        : this.#awaitingTurn
          ? { state: "starting", inflight: this.#queued.length, abandoned: 0 }
          : { state: "idle" },
      ...(this.#retiring.size > 0 ? { retiring: this.#retiring.size } : {}),
      restarts: this.#restarts,
      ...(this.#lastEnd ? { lastRestart: this.#lastEnd } : {}),
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#idleTimer);
    for (const waiter of this.#queued.splice(0)) waiter(undefined);
    await Promise.all([this.#current?.close(), ...[...this.#retiring].map((thread) => thread.close())]);
  }

  /** Closes the current thread after `idleMs` unless a run comes first (or it is kept warm). */
  #closeWhenIdle(thread: HandlerThread): void {
    clearTimeout(this.#idleTimer);
    if (this.#keepWarm) return;
    this.#idleTimer = setTimeout(() => {
      if (this.#current !== thread) return;
      this.#current = undefined;
      void thread.close();
    }, this.#options.idleMs ?? 30_000);
    this.#idleTimer.unref();
  }

  #spawn(): HandlerThread {
    const fn = this.#host.fn;
    const options = this.#options;
    return new HandlerThread({
      script: options.script,
      init: {
        mode: "serve",
        function: fn.name,
        bundleFile: options.bundleFile,
        exportName: fn.exportName,
        handlerPath: fn.handlerPath,
        rootDir: options.rootDir,
        encoding: fn.encoding,
        output: fn.output !== undefined,
        config: fn.config,
        logLevel: options.logLevel,
        ...(options.tracing ? { tracing: options.tracing } : {}),
        slots: fn.concurrency,
        ...(fn.batch ? { batch: true as const } : {}),
      },
      memoryLimitMb: fn.memoryLimitMb,
      host: this.#host,
      graceMs: options.graceMs ?? 1000,
      onIdle: (thread) => {
        // A replaced thread goes once nothing it runs is awaited (a stuck one is left to its
        // kill timer, which counts the restart); the current one after a while.
        if (this.#retiring.has(thread)) {
          if (!thread.suspect) void thread.close();
          return;
        }
        this.#closeWhenIdle(thread);
      },
      onEnd: (thread, end) => {
        this.#retiring.delete(thread);
        if (this.#current === thread) this.#current = undefined;
        if (!end) return;
        this.#restarts++;
        this.#lastEnd = { ...end, at: new Date().toISOString() };
        options.metrics.workerRestarts.inc({ function: fn.name, reason: end.reason });
        this.#host.log.warn({ reason: end.reason, error: end.error }, "worker thread ended; the next delivery starts a new one");
      },
    });
  }
}

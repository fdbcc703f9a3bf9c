import type { PreparedHandler } from "../bundle/load.ts";
import type { CompiledDebounce, CompiledFunction, CompiledRateLimit, CompiledSchedule } from "../config/types.ts";
import type { SyncCaller } from "../contracts/call.ts";
import { type Consumption, consumedTogether } from "../contracts/consumption.ts";
import type { Pause } from "../contracts/control.ts";
import type { Delivery } from "../contracts/delivery.ts";
import type { BreakerState, FunctionStatus } from "../contracts/status.ts";
import { Admission } from "../invoke/admission.ts";
import { BatchInvoker } from "../invoke/batch-invoker.ts";
import { Caller } from "../invoke/caller.ts";
import type { Executor } from "../invoke/executor.ts";
import { HostContext } from "../invoke/host-context.ts";
import { IdempotencyGuard } from "../invoke/idempotency.ts";
import { InProcessExecutor } from "../invoke/in-process.ts";
import { Invoker, type ProcessResult } from "../invoke/invoker.ts";
import { StepJournal } from "../invoke/steps.ts";
import { WorkerExecutor, type WorkerExecutorOptions } from "../isolation/worker-executor.ts";
import type { NatsClients } from "../nats/clients.ts";
import type { ConsumerPoller } from "../nats/consumer-poller.ts";
import type { DebounceKeys } from "../nats/debounce-keys.ts";
import type { KvCells } from "../nats/kv-cas.ts";
import type { KV } from "../nats/leases.ts";
import { debounceConsumer, ensureConsumer, provisionConsumers, replayConsumer, scheduleConsumer } from "../nats/provision.ts";
import { PullLoop } from "../nats/pull-loop.ts";
import { type ReplayWatch, replayed, withReplays } from "../nats/replay-watch.ts";
import { stepStoreOf } from "../nats/steps-bucket.ts";
import { Ticker } from "../nats/ticker.ts";
import { OrderedFunction } from "../ordering/ordered-function.ts";
import type { BreakerRegistry } from "../resilience/breaker-registry.ts";
import { isRetryAfterError } from "../sdk/errors.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { BatchCollector } from "./batch-collector.ts";
import { Capacity } from "./capacity.ts";
import { Debouncer } from "./debouncer.ts";
import { RateLimiter } from "./rate-limiter.ts";

/** What the host's handler threads share (see {@link WorkerExecutorOptions}). */
export type ThreadSettings = Pick<WorkerExecutorOptions, "rootDir" | "logLevel" | "tracing" | "idleMs" | "graceMs" | "starts"> & {
  /** The thread's entry (see `workerScript()`); present when any function runs in worker threads. */
  readonly script?: string;
};

/** What one function's runtime is wired from: the host's shared parts. */
export interface FunctionRuntimeDeps {
  readonly fn: CompiledFunction;
  readonly clients: NatsClients;
  /** The `JETFN_LEASES` bucket, for an ordered function. */
  readonly leases?: KV;
  /** The `JETFN_DEBOUNCE_KEYS` bucket, for a debounced function. */
  readonly debounceKeys?: DebounceKeys;
  /** The `JETFN_RATE_LIMITS` bucket's cells, for a rate-limited function. */
  readonly rateCells?: KvCells<number>;
  /** How many replicas the KV buckets this host creates have (`JETFN_STEPS`). @default 1 */
  readonly replicas?: number;
  readonly replayWatch: ReplayWatch;
  /** The function's bundle, and its module when it runs in this thread (`isolation: none`). */
  readonly handler: PreparedHandler;
  /** What a handler thread is started with (`isolation: worker`). */
  readonly threads: ThreadSettings;
  readonly breakers: BreakerRegistry;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** This process among the function's replicas. */
  readonly hostId: string;
  /** Aborts when shutdown's grace period is over. */
  readonly stop: AbortSignal;
  /** This host's clock, epoch ms, as its schedules read it. */
  readonly now: () => number;
  /** Told when the function's own breaker (`breaker:`) changes state. */
  readonly onBreakerChange: (from: BreakerState, to: BreakerState) => void;
  /** Starts its handler thread (`isolation: worker`) before it pulls, not on its first event. */
  readonly warm?: boolean;
}

/**
 * One function on this host, from its admission to its pull loops: it wires the
 * function's executor, invoker, caller, capacity and consumption (a pull loop or an
 * ordered function's partitions, beside its replays), runs them (start, stop, settled,
 * release, close), applies pauses, and says what it is doing in one typed status, which
 * `/functions`, the NATS status endpoint and `jetfn status` all show.
 */
export class FunctionRuntime {
  readonly fn: CompiledFunction;
  readonly admission: Admission;
  readonly executor: Executor;
  readonly invoker: Invoker;
  readonly caller: Caller;
  /** How synchronous calls reach it (HTTP `invoke:` routes, the NATS service): its caller, behind its rate limit. */
  readonly calls: SyncCaller;
  readonly #deps: FunctionRuntimeDeps;
  readonly #consumption: Consumption;
  readonly #capacity: Capacity;
  /** Runs its batches (`batch:`). */
  readonly #batches?: BatchInvoker;
  /** Where its loops' events gather into batches: each flushed when pulling stops. */
  readonly #collectors: BatchCollector[] = [];
  /** Its fleet-wide `rateLimit:`. */
  readonly #limiter?: RateLimiter;
  /** Publishes its ticks (`schedule:`), with every other replica's ticker. */
  readonly #ticker?: Ticker;
  /** When this host expects its next tick. */
  #nextTick?: number;
  readonly #log: Logger;

  constructor(deps: FunctionRuntimeDeps) {
    const { fn, clients, metrics, stop } = deps;
    const { js, jsm, publisher } = clients;
    this.fn = fn;
    this.#deps = deps;
    this.#log = deps.log.child({ function: fn.name });
    this.admission = new Admission(fn.breaker, deps.onBreakerChange);
    if (this.admission.breaker) metrics.breakerState.set({ function: fn.name, breaker: "function" }, 0);
    this.#logBrokerHold();
    const store = stepStoreOf(clients.nc, deps.replicas ?? 1);
    const steps = new StepJournal({ fn, store, hostId: deps.hostId, metrics, log: this.#log, maxPayload: () => publisher.maxPayload });
    const host = new HostContext(fn, this.#log, publisher, deps.breakers, steps);
    this.executor = this.#executorFor(host);
    const replays = replayConsumer(fn);
    const gate = deps.replayWatch.gate(replays.durable, this.admission);
    this.#capacity = new Capacity(fn, this.executor, () => gate.waiting > 0);
    const { heartbeats, heartbeat } = this.#capacity;
    const limiter = fn.rateLimit && this.#limiterOf({ ...fn, rateLimit: fn.rateLimit });
    this.#limiter = limiter;
    this.invoker = new Invoker({
      host,
      executor: this.executor,
      admission: this.admission,
      metrics,
      stop,
      heartbeats,
      heartbeat,
      ...(fn.idempotency
        ? {
            idempotency: new IdempotencyGuard({
              fn: { ...fn, idempotency: fn.idempotency },
              store,
              hostId: deps.hostId,
              log: this.#log,
              maxPayload: () => publisher.maxPayload,
            }),
          }
        : {}),
      // A handler's RetryAfterError holds the whole fleet off (or its key), not only its event.
      ...(limiter
        ? {
            onSettled: (outcome, _settlement, delivery) =>
              outcome.kind === "error" &&
              isRetryAfterError(outcome.error) &&
              limiter.holdOff(outcome.error.delayMs, delivery, () => this.#consumption.interrupt()),
          }
        : {}),
    });
    this.caller = new Caller({ host, executor: this.executor, admission: this.admission, metrics, stop });
    this.calls = limiter ? limiter.calls(this.caller) : this.caller;
    // For the whole function, every loop that runs the handler pulls only what the rate
    // limit grants it, one pull at a time; per key, each event takes its key's permit.
    const perKey = fn.rateLimit?.key;
    const permits = () => (limiter && !perKey ? { permits: limiter.forLoop(), maxPulls: 1 } : {});
    const handBack = (delivery: Delivery, delayMs: number): ProcessResult => {
      (this.#batches ?? this.invoker).handBack(delivery, delayMs);
      return "again";
    };
    const limited = (dispatch: (delivery: Delivery) => Promise<ProcessResult>) =>
      limiter && perKey ? limiter.perKey(perKey, dispatch, handBack) : dispatch;
    // A batch function's events run in batches (`batch:`), each of its loops gathering its
    // own; under a rate limit each event takes its permit before it joins a batch.
    const batches =
      fn.batch &&
      new BatchInvoker({
        host,
        executor: this.executor,
        admission: this.admission,
        metrics,
        stop,
        heartbeats,
        ...(limiter
          ? {
              onRetryAfter: (delayMs: number, held: readonly Delivery[]) => {
                const interrupt = () => this.#consumption.interrupt();
                if (perKey) for (const delivery of held) limiter.holdOff(delayMs, delivery, interrupt);
                else limiter.holdOff(delayMs, undefined, interrupt);
              },
            }
          : {}),
      });
    this.#batches = batches || undefined;
    const batched = (into: (delivery: Delivery) => Delivery = (delivery) => delivery) => {
      if (!batches || !fn.batch) return undefined;
      const meters = metrics.forFunction(fn.name);
      const collector = new BatchCollector({
        batch: fn.batch,
        run: (batch) => batches.process(batch),
        heartbeats,
        beat: (delivery) => {
          delivery.working();
          meters.acks.working++;
        },
      });
      // Settled with its batch, one way or another (a nak hands it back too): nothing is pending here.
      this.#collectors.push(collector);
      return (delivery: Delivery): Promise<ProcessResult> => collector.take(into(delivery));
    };
    const run = limited(batched() ?? ((delivery: Delivery) => this.invoker.process(delivery)));
    const debouncer = fn.debounce && this.#debouncerOf({ ...fn, debounce: fn.debounce });
    const events = fn.ordering
      ? new OrderedFunction({
          nc: clients.nc,
          js,
          jsm,
          kv: deps.leases!,
          fn,
          hostId: deps.hostId,
          run,
          admission: this.admission,
          heartbeats,
          metrics,
          log: deps.log,
        })
      : new PullLoop(js, fn, debouncer ? (delivery) => debouncer.take(delivery) : run, deps.log, {
          rebind: () => ensureConsumer(jsm, fn, deps.log),
          admission: this.admission,
          budget: this.#capacity.live,
          // A debounced function's events are taken, not run: its fires take the permits.
          ...(debouncer ? {} : permits()),
        });
    const replayLoop = new PullLoop(
      js,
      replays,
      limited(batched(replayed) ?? ((delivery) => this.invoker.process(replayed(delivery)))),
      deps.log,
      {
        rebind: () => ensureConsumer(jsm, replays, deps.log),
        admission: gate,
        budget: this.#capacity.replays,
        ...permits(),
      },
    );
    // A function with a stream of its own reads its ticks through a second durable, in its live share.
    const ticks = scheduleConsumer(fn);
    const tickLoop =
      ticks &&
      new PullLoop(js, ticks, run, deps.log, {
        rebind: () => ensureConsumer(jsm, ticks, deps.log),
        admission: this.admission,
        budget: this.#capacity.live,
        ...permits(),
      });
    // A debounced function's fires come through a durable of their own, in its live share.
    const fires = debounceConsumer(fn);
    const fireLoop =
      fires &&
      debouncer &&
      new PullLoop(js, fires, (delivery) => debouncer.fire(delivery, run), deps.log, {
        rebind: () => ensureConsumer(jsm, fires, deps.log),
        admission: this.admission,
        budget: this.#capacity.live,
        ...permits(),
      });
    let live: Consumption = events;
    if (tickLoop) live = consumedTogether(live, tickLoop, { bothBound: true });
    if (fireLoop) live = consumedTogether(live, fireLoop, { bothBound: true });
    this.#consumption = withReplays(live, replayLoop, gate);
    this.#ticker = fn.schedule && this.#tickerOf({ ...fn, schedule: fn.schedule });
  }

  /** Taking part: its consumers are bound and pulling. */
  get bound(): boolean {
    return this.#consumption.bound;
  }

  /** Creates or updates its consumers, then starts pulling. */
  async start(): Promise<void> {
    // A rate-limited function's handler is ready before its first permit is taken; one
    // chosen to be warm at start is ready before its first event, as its host is.
    const keep = this.#limiter !== undefined;
    await Promise.all([
      provisionConsumers(this.#deps.clients.jsm, this.fn, this.#deps.log),
      (keep || this.#deps.warm) && this.executor.warm?.({ keep }),
    ]);
    await this.#consumption.start();
    // Once its consumers are bound: the ticks it publishes are read by them.
    await this.#ticker?.start();
  }

  /** Ends open pulls early (a reconnect): they are made anew. */
  interrupt(): void {
    this.#consumption.interrupt();
  }

  /** Stops publishing ticks and pulling. */
  async stop(): Promise<void> {
    await this.#ticker?.stop();
    await this.#consumption.stop();
    // Nothing more comes: a filling batch runs now rather than after its maxWait.
    for (const collector of this.#collectors) collector.flush();
  }

  /** Resolves when every delivery and call taken has settled. */
  async settled(): Promise<void> {
    await Promise.all([this.#consumption.settled(), this.caller.settled()]);
  }

  /** Hands over what this host holds for the function (an ordered function's partitions). */
  async release(): Promise<void> {
    await this.#consumption.release?.();
  }

  /** Releases its executor (threads) and timers. */
  async close(): Promise<void> {
    await this.executor.close();
    this.#capacity.heartbeats.close();
  }

  /** Applies `jetfn pause` / `jetfn resume` as read from `JETFN_CONTROL`. */
  setPaused(pause: Pause | undefined): void {
    const was = this.admission.paused;
    this.admission.setPaused(pause);
    this.#deps.metrics.functionPaused.set({ function: this.fn.name }, pause ? 1 : 0);
    if (pause && !was) this.#log.warn({ reason: pause.reason, by: pause.by, at: pause.at }, "function paused: pulling stopped");
    else if (!pause && was) this.#log.info("function resumed: pulling again");
  }

  /** What `/readyz` adds for it: its pulls held while the broker refuses its outputs. */
  readyNote(): string | undefined {
    const hold = this.admission.brokerHold;
    return hold
      ? `${this.fn.name}: waiting for the broker (${hold.reason}) since ${hold.since}, ${hold.waiting} waiting; not pulling`
      : undefined;
  }

  /** The one status of the function on this host; `poller` gives the consumer's last polled counts. */
  status(poller?: ConsumerPoller): FunctionStatus {
    const { fn, admission, invoker, caller, executor } = this;
    const { metrics, breakers } = this.#deps;
    const sample = poller?.sample(fn.name);
    const paused = admission.paused;
    return {
      name: fn.name,
      stream: fn.stream,
      durable: fn.durable,
      subjects: fn.subjects,
      bound: this.bound,
      paused: paused !== undefined,
      ...(paused ? { ...(paused.reason ? { pausedReason: paused.reason } : {}), pausedAt: paused.at, pausedBy: paused.by } : {}),
      inflight: invoker.inflight + (this.#batches?.inflight ?? 0),
      limit: fn.concurrency,
      calls: caller.inflight,
      ...(sample ? { pending: sample.pending, ackPending: sample.ackPending, sampledAt: sample.sampledAt.toISOString() } : {}),
      ...(admission.breaker ? { breaker: admission.breaker.state } : {}),
      breakers: breakers.statesOf(fn.name),
      ...(admission.brokerHold ? { brokerHold: admission.brokerHold } : {}),
      lastMinute: metrics.lastMinute(fn.name),
      ...(metrics.totals(fn.name) ? { totals: metrics.totals(fn.name) } : {}),
      deadLettered: metrics.deadLettered(fn.name),
      deadLetter: fn.deadLetter,
      ...(fn.schedule
        ? {
            schedule: {
              cron: fn.schedule.cron,
              timezone: fn.schedule.timezone,
              catchUp: fn.schedule.catchUp,
              ...(this.#nextTick !== undefined ? { nextTick: new Date(this.#nextTick).toISOString() } : {}),
            },
          }
        : {}),
      ...(this.#limiter ? { rateLimit: this.#limiter.status() } : {}),
      ...executor.status(),
      ...this.#consumption.status?.(),
    };
  }

  #limiterOf(fn: CompiledFunction & { readonly rateLimit: CompiledRateLimit }): RateLimiter {
    const { rateCells, metrics, now } = this.#deps;
    if (!rateCells) throw new Error(`function ${fn.name} is rate-limited, and the host opened no JETFN_RATE_LIMITS bucket`);
    const labels = { function: fn.name };
    metrics.rateLimited.inc(labels, 0);
    return new RateLimiter({ fn, cells: rateCells, now, log: this.#log, waited: (seconds) => metrics.rateLimited.inc(labels, seconds) });
  }

  #debouncerOf(fn: CompiledFunction & { readonly debounce: CompiledDebounce }): Debouncer {
    const { debounceKeys, clients, metrics, now } = this.#deps;
    if (!debounceKeys) throw new Error(`function ${fn.name} is debounced, and the host opened no JETFN_DEBOUNCE_KEYS bucket`);
    const labels = { function: fn.name };
    metrics.debounced.inc(labels, 0);
    return new Debouncer({
      fn,
      keys: debounceKeys,
      publisher: clients.publisher,
      now,
      log: this.#log,
      debounced: () => metrics.debounced.inc(labels),
    });
  }

  #tickerOf(fn: CompiledFunction & { readonly schedule: CompiledSchedule }): Ticker {
    const { clients, metrics, now } = this.#deps;
    const labels = { function: fn.name };
    for (const result of ["fired", "caught_up", "skipped"] as const) metrics.scheduleTicks.inc({ ...labels, result }, 0);
    return new Ticker({
      js: clients.js,
      jsm: clients.jsm,
      fn,
      log: this.#log,
      now,
      counted: (result, count) => metrics.scheduleTicks.inc({ ...labels, result }, count),
      next: (at) => {
        this.#nextTick = at;
        if (at === undefined) metrics.scheduleNextTick.remove(labels);
        else metrics.scheduleNextTick.set(labels, at / 1000);
      },
    });
  }

  /** Where the handler runs: `isolation:` in its entry. */
  #executorFor(host: HostContext): Executor {
    const { handler, threads, metrics } = this.#deps;
    if (handler.loaded) return new InProcessExecutor(handler.loaded, host);
    const { script, ...settings } = threads;
    if (script === undefined) throw new Error(`no handler thread entry for ${this.fn.name} (isolation: worker)`);
    return new WorkerExecutor(host, { ...settings, script, bundleFile: handler.bundleFile, metrics, gate: this.admission });
  }

  /** One line when the broker's hold on the function starts, one when it ends: not one per refused publish. */
  #logBrokerHold(): void {
    let since = 0;
    this.admission.onBrokerHold((hold) => {
      if (hold) {
        since = Date.now();
        this.#log.warn(
          { reason: hold.reason },
          "the broker refuses the function's outputs: pulling held, the waiting publishes retried in place",
        );
      } else {
        this.#log.info({ held_ms: Date.now() - since }, "the broker takes the function's outputs again: pulling resumed");
      }
    });
  }
}

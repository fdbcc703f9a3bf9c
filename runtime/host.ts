import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { loadRouteSchemas, type PreparedHandler } from "./bundle/load.ts";
import { encode, encodedType } from "./codec/codec.ts";
import { loadProject } from "./config/load.ts";
import type { CompiledConfig, CompiledEnv, CompiledRoute } from "./config/types.ts";
import type { SyncCaller } from "./contracts/call.ts";
import type { Pause } from "./contracts/control.ts";
import type { BreakerState, FunctionStatus, HostStatus } from "./contracts/status.ts";
import { FunctionRuntime, type ThreadSettings } from "./function/function-runtime.ts";
import { HttpServer } from "./http/server.ts";
import { IngressServer } from "./ingress/server.ts";
import { prepareHandlers } from "./isolation/check.ts";
import { workerScript } from "./isolation/script.ts";
import { threadStarts } from "./isolation/worker-executor.ts";
import { isJetStreamUnavailable } from "./nats/broker-failures.ts";
import { type NatsClients, openClients } from "./nats/clients.ts";
import { ConsumerPoller } from "./nats/consumer-poller.ts";
import { openControlBucket, PauseWatch } from "./nats/control.ts";
import { openDebounceKeys } from "./nats/debounce-keys.ts";
import { DelayedMover } from "./nats/delayed-mover.ts";
import { type EmbeddedOptions, type NatsEndpoint, resolveNats } from "./nats/embedded.ts";
import { JetStreamWatch } from "./nats/jetstream-watch.ts";
import { openLeaseBucket } from "./nats/leases.ts";
import { provisionStreams } from "./nats/provision.ts";
import { openRateCells } from "./nats/rate-cells.ts";
import { ReplayWatch } from "./nats/replay-watch.ts";
import { JetfnService } from "./nats/service.ts";
import { JETFN_VERSION } from "./package-root.ts";
import { BREAKER_STATE_VALUE } from "./resilience/breaker.ts";
import { BreakerRegistry } from "./resilience/breaker-registry.ts";
import type { EventSchema } from "./sdk/types.ts";
import { createLogger, type Logger } from "./telemetry/logger.ts";
import { Metrics } from "./telemetry/metrics.ts";
import { installTracing, type Tracing } from "./telemetry/tracing.ts";

/**
 * Lifecycle of a host:
 * - `created`: config validated, every handler bundled and loaded; no network I/O yet;
 * - `starting`: connecting, provisioning, reading which functions are paused, starting pull
 *   loops, the NATS service and HTTP;
 * - `running`: pulling and invoking, answering requests;
 * - `draining`: not ready, not pulling nor taking requests, in-flight invocations and calls finishing;
 * - `stopped`: connection drained, HTTP closed;
 * - `failed`: `start()` threw; `shutdown()` still releases what was acquired.
 */
export type HostState = "created" | "starting" | "running" | "draining" | "stopped" | "failed";

export interface HostOptions {
  readonly env: CompiledEnv;
  /** Defaults to loading `env.configFile`. */
  readonly config?: CompiledConfig;
  readonly logger?: Logger;
  /** Where the embedded nats-server would listen (tests). */
  readonly embedded?: EmbeddedOptions;
  /** How often consumer info is polled for the lag gauges. @default 5000 */
  readonly consumerPollMs?: number;
  /** Handler threads: idle time before one is closed, grace before a stuck one is terminated. */
  readonly isolation?: { readonly idleMs?: number; readonly graceMs?: number };
}

/** The jetfn host: one process running every function of one `functions.yaml`. */
export class Host {
  readonly config: CompiledConfig;
  readonly metrics = new Metrics();
  readonly log: Logger;
  /** This process among the function's replicas (partition leases name it). */
  readonly hostId = `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  readonly #startedAt = new Date();
  readonly #env: CompiledEnv;
  readonly #handlers: ReadonlyMap<string, PreparedHandler>;
  readonly #schemas: ReadonlyMap<CompiledRoute, EventSchema<unknown>>;
  readonly #embedded?: EmbeddedOptions;
  readonly #consumerPollMs: number;
  readonly #isolation: HostOptions["isolation"];
  readonly #workerScript?: string;
  readonly #stop = new AbortController();
  readonly #breakers: BreakerRegistry;
  #state: HostState = "created";
  #endpoint?: NatsEndpoint;
  #clients?: NatsClients;
  #connected = false;
  #running: FunctionRuntime[] = [];
  #http?: HttpServer;
  #ingress?: IngressServer;
  #ingressAddress?: AddressInfo;
  #service?: JetfnService;
  #pauses?: PauseWatch;
  #poller?: ConsumerPoller;
  #replays?: ReplayWatch;
  /** Moves the host to another server when no pull works through its own (a node cut off from its cluster). */
  #jetstreamWatch?: JetStreamWatch;
  #mover?: DelayedMover;
  #tracing?: Tracing;
  #httpAddress?: AddressInfo;
  #starting?: Promise<void>;
  #shutdown?: Promise<void>;

  private constructor(
    options: HostOptions,
    config: CompiledConfig,
    handlers: ReadonlyMap<string, PreparedHandler>,
    schemas: ReadonlyMap<CompiledRoute, EventSchema<unknown>>,
    workerScript: string | undefined,
    log: Logger,
  ) {
    this.#schemas = schemas;
    this.#env = options.env;
    this.#isolation = options.isolation;
    this.#workerScript = workerScript;
    this.#embedded = options.embedded;
    this.#consumerPollMs = options.consumerPollMs ?? 5000;
    this.config = config;
    this.#handlers = handlers;
    this.log = log;
    this.#breakers = new BreakerRegistry((name, from, to, functions) => {
      for (const fn of functions) this.#breakerChanged(fn, name, from, to);
    });
    // An open breaker whose time is up moves to half-open when read; a scrape reads them all.
    this.metrics.onBreakerScrape(() => {
      for (const { admission } of this.#running) admission.breaker?.refresh();
      this.#breakers.refresh();
    });
  }

  /**
   * Validates the config, bundles every handler and checks each one loads (in a worker
   * thread for `isolation: worker`): a broken handler fails here, before any connection.
   * Throws `ConfigError` or `BundleError`.
   */
  static async create(options: HostOptions): Promise<Host> {
    const log = options.logger ?? createLogger(options.env.logLevel);
    const config = loadProject(options.env, options.config);
    const schemas = await loadRouteSchemas(config);
    const handlers = await prepareHandlers(config, (fn, bundle) =>
      log.debug({ function: fn.name, bundle: bundle.file, reused: bundle.reused }, "handler loaded"),
    );
    log.info({ config: config.file, functions: config.functions.map((f) => f.name) }, "functions loaded");
    const isolated = config.functions.some((fn) => fn.isolation === "worker");
    return new Host(options, config, handlers, schemas, isolated ? await workerScript() : undefined, log);
  }

  get state(): HostState {
    return this.#state;
  }

  /** The HTTP server's bound address, once started. */
  get httpAddress(): AddressInfo | undefined {
    return this.#httpAddress;
  }

  /** The ingress listener's bound address, once started (only with `routes:`). */
  get ingressAddress(): AddressInfo | undefined {
    return this.#ingressAddress;
  }

  /** Connected to NATS, every consumer bound, and not draining. */
  ready(): boolean {
    return this.#state === "running" && !this.#shutdown && this.#connected && this.#running.every((r) => r.bound);
  }

  /**
   * Connects, provisions, applies each function's pause (`JETFN_CONTROL`), starts one pull
   * loop per function, joins the NATS service `jetfn` (status, and `invoke: true`), then HTTP.
   */
  start(): Promise<void> {
    if (this.#state !== "created") return Promise.reject(new Error(`cannot start a host that is ${this.#state}`));
    this.#starting = this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    this.#state = "starting";
    // A shutdown asked for meanwhile (SIGTERM during start-up) ends the start at the next step.
    const stillWanted = (): void => {
      if (this.#shutdown) throw new Error("start-up interrupted by shutdown");
    };
    try {
      // Handler code runs in this thread only for `isolation: none` functions.
      const handlersHere = this.config.functions.some((fn) => fn.isolation === "none");
      this.#tracing = await installTracing(this.#env.tracing, this.log, handlersHere);
      this.#endpoint = await resolveNats(this.#env.natsUrl, this.config.rootDir, this.log, this.#embedded);
      stillWanted();
      const clients = await openClients(
        this.#env,
        this.#endpoint.servers,
        this.log,
        (up) => {
          // Pull requests do not survive a reconnect (their server may be gone): pull anew.
          if (up && !this.#connected) for (const runtime of this.#running) runtime.interrupt();
          this.#connected = up;
        },
        (request) => this.#whenAvailable("reaching JetStream", request),
      );
      this.#clients = clients;
      stillWanted();
      await this.#whenAvailable("provisioning the streams", () => provisionStreams(clients.nc, clients.jsm, this.config, this.log));
      stillWanted();
      const fns = this.config.functions;
      const leases = fns.some((fn) => fn.ordering)
        ? await this.#whenAvailable("opening JETFN_LEASES", () => openLeaseBucket(clients.nc))
        : undefined;
      // The buckets a host creates are as replicated as the most replicated stream it declares.
      const replicas = Math.max(1, ...this.config.streams.map((stream) => stream.replicas));
      const debounceKeys = fns.some((fn) => fn.debounce)
        ? await this.#whenAvailable("opening JETFN_DEBOUNCE_KEYS", () => openDebounceKeys(clients.nc, replicas))
        : undefined;
      const rateCells = fns.some((fn) => fn.rateLimit)
        ? await this.#whenAvailable("opening JETFN_RATE_LIMITS", () => openRateCells(clients.nc, replicas))
        : undefined;
      this.#replays = new ReplayWatch(clients.jsm, this.log);
      // Delayed events (`ctx.publish(..., { delay })`, `jetfn publish --delay`): every host
      // runs a mover; the one holding its lease moves the due events to their targets.
      this.#mover = new DelayedMover({
        nc: clients.nc,
        js: clients.js,
        jsm: clients.jsm,
        hostId: this.hostId,
        log: this.log,
        clock: () => Date.now() + this.#env.clockOffsetMs,
        observer: {
          delivered: (latenessMs) => this.metrics.delayedLateness.observe(latenessMs / 1000),
          failed: (reason) => this.metrics.delayedFailures.inc({ reason }),
        },
      });
      const mover = this.#mover;
      await this.#whenAvailable("starting the delayed-event mover", () => mover.start());
      this.metrics.onDelayedScrape(() => this.#mover?.stats().waiting);
      const threads: ThreadSettings = {
        ...(this.#workerScript ? { script: this.#workerScript } : {}),
        rootDir: this.config.rootDir,
        logLevel: this.log.levelVal,
        starts: threadStarts(),
        ...(this.#env.tracing ? { tracing: this.#env.tracing } : {}),
        ...this.#isolation,
      };
      // The first JETFN_WARM_THREADS worker functions start their thread now, so that their
      // first events do not wait for one to start and load its bundle; the others start
      // theirs on their first event. Bounded: each thread costs memory and start-up CPU, and
      // a host may run many rarely used functions.
      let warmed = 0;
      for (const fn of this.config.functions) {
        const warm = fn.isolation === "worker" && warmed < this.#env.warmThreads;
        if (warm) warmed++;
        this.#running.push(
          new FunctionRuntime({
            fn,
            clients,
            ...(leases ? { leases } : {}),
            ...(debounceKeys ? { debounceKeys } : {}),
            ...(rateCells ? { rateCells } : {}),
            replicas,
            replayWatch: this.#replays,
            handler: this.#handlers.get(fn.name)!,
            threads,
            breakers: this.#breakers,
            metrics: this.metrics,
            log: this.log,
            hostId: this.hostId,
            stop: this.#stop.signal,
            now: () => Date.now() + this.#env.clockOffsetMs,
            onBreakerChange: (from, to) => this.#breakerChanged(fn.name, "function", from, to),
            warm,
          }),
        );
      }
      // Before any pull: a function paused across the fleet starts paused here too.
      this.#pauses = await this.#whenAvailable("reading the pauses", async () => {
        const pauses = new PauseWatch({
          kv: await openControlBucket(clients.nc),
          functions: this.config.functions.map((fn) => fn.name),
          apply: (name, pause) => this.#setPaused(name, pause),
          log: this.log,
        });
        try {
          await pauses.start();
          return pauses;
        } catch (error) {
          await pauses.stop().catch(() => {});
          throw error;
        }
      });
      stillWanted();
      // Every function's consumers at once, and each pulls as soon as its own are bound.
      await Promise.all(this.#running.map((runtime) => this.#whenAvailable(`starting ${runtime.fn.name}`, () => runtime.start())));
      this.#replays.start();
      // A host whose server cannot serve JetStream (a node cut off from its cluster) moves.
      const probed = this.config.functions[0];
      if (probed) {
        this.#jetstreamWatch = new JetStreamWatch({
          nc: clients.nc,
          jsm: clients.jsm,
          stream: probed.stream,
          durable: probed.durable,
          configured: this.#endpoint.servers.length,
          log: this.log,
        });
        this.#jetstreamWatch.start();
      }
      this.#service = await JetfnService.start(clients.nc, {
        hostId: this.hostId,
        names: this.config.functions.map((fn) => fn.name),
        functions: this.#running.filter((r) => r.fn.invoke).map((r) => ({ fn: r.fn, caller: r.calls })),
        status: () => this.status(),
        encode: (value) => ({ bytes: encode(value), type: encodedType(value) }),
        log: this.log,
      });
      this.#poller = new ConsumerPoller(clients.jsm, this.config.functions, this.metrics, this.log);
      this.#poller.start(this.#consumerPollMs);
      this.#http = new HttpServer({
        registry: this.metrics.registry,
        ready: () => this.ready(),
        readyNotes: () => this.readyNotes(),
        functions: () => this.functions(),
      });
      this.#httpAddress = await this.#http.listen(this.#env.httpHost, this.#env.httpPort);
      stillWanted();
      if (this.config.routes.length > 0) await this.#startIngress(clients);
      this.#state = "running";
      const ingress = this.#ingressAddress ? { ingress: `${this.#ingressAddress.address}:${this.#ingressAddress.port}` } : {};
      this.log.info({ http: `${this.#httpAddress.address}:${this.#httpAddress.port}`, ...ingress }, "jetfn is running");
    } catch (error) {
      this.#state = "failed";
      await this.#release();
      throw error;
    }
  }

  /**
   * Runs `step` of the start-up, again while JetStream cannot answer for now (a host started
   * during an election, or beside a node just restarted): 1 s, doubling to 5 s, until it works
   * or the host is shut down. Any other failure fails the start at once.
   */
  async #whenAvailable<T>(what: string, step: () => Promise<T>): Promise<T> {
    for (let waitMs = 1000; ; waitMs = Math.min(waitMs * 2, 5000)) {
      try {
        return await step();
      } catch (error) {
        if (this.#shutdown || !isJetStreamUnavailable(error)) throw error;
        this.log.warn({ err: error, retry_in_ms: waitMs }, `${what}: JetStream cannot answer for now; trying again`);
        await sleep(waitMs);
      }
    }
  }

  async #startIngress({ publisher }: NatsClients): Promise<void> {
    const env = this.#env;
    this.#ingress = new IngressServer({
      routes: this.config.routes,
      schemas: this.#schemas,
      publisher,
      caller: (name) => this.caller(name),
      connected: () => this.#connected,
      tokens: env.ingressTokens,
      maxBodyBytes: env.ingressMaxBodyBytes,
      readTimeoutMs: env.ingressReadTimeoutMs,
      metrics: this.metrics,
      log: this.log.child({ component: "ingress" }),
    });
    this.#ingressAddress = await this.#ingress.listen(env.ingressHost, env.ingressPort);
  }

  /** The function's synchronous caller (HTTP `invoke:` routes, the NATS service); undefined before start. */
  caller(name: string): SyncCaller | undefined {
    return this.#running.find((r) => r.fn.name === name)?.calls;
  }

  /** Applies `jetfn pause` / `jetfn resume` as read from `JETFN_CONTROL`. */
  #setPaused(name: string, pause: Pause | undefined): void {
    this.#running.find((r) => r.fn.name === name)?.setPaused(pause);
  }

  /** What `/readyz` adds to its answer: functions whose pulls are held while the broker refuses their outputs. */
  readyNotes(): string[] {
    return this.#running.flatMap((runtime) => runtime.readyNote() ?? []);
  }

  #breakerChanged(fn: string, breaker: string, from: BreakerState, to: BreakerState): void {
    this.metrics.breakerState.set({ function: fn, breaker }, BREAKER_STATE_VALUE[to]);
    if (from === to) return;
    const fields = { function: fn, breaker, from, to };
    if (to === "open") this.log.warn(fields, "breaker opened");
    else this.log.info(fields, `breaker ${to}`);
  }

  /** `/functions`: each function's status on this host (the same as the NATS status endpoint's). */
  functions(): FunctionStatus[] {
    return this.#running.map((runtime) => runtime.status(this.#poller));
  }

  /** What this host answers `jetfn status` (through the NATS service `jetfn`). */
  async status(): Promise<HostStatus> {
    const functions = this.functions();
    return {
      host: this.hostId,
      version: JETFN_VERSION,
      startedAt: this.#startedAt.toISOString(),
      uptimeMs: Date.now() - this.#startedAt.getTime(),
      state: this.#state,
      ready: this.ready(),
      ...(this.#clients && !this.#clients.nc.isClosed() ? { server: this.#clients.nc.getServer() } : {}),
      functions,
    };
  }

  /**
   * Stops the host; idempotent, every call returns the same promise. Not ready at once,
   * requests and pulling stop, in-flight invocations and calls get `JETFN_SHUTDOWN_TIMEOUT`, then their signal
   * aborts and they are nak'd; the connection drains, HTTP closes.
   */
  shutdown(): Promise<void> {
    // During start-up: let the start notice and unwind first, then drain what is left.
    this.#shutdown ??= (this.#starting ?? Promise.resolve()).catch(() => {}).then(() => this.#drain());
    return this.#shutdown;
  }

  async #drain(): Promise<void> {
    if (this.#state !== "failed") this.#state = "draining";
    // Requests first: no new request or call arrives; those running still answer, within
    // the same grace as deliveries.
    const ingressClosed = this.#ingress?.close();
    await this.#service?.stop();
    this.log.info({ inflight: this.#inflightCount() }, "shutting down: stopped pulling");
    await Promise.all(this.#running.map((runtime) => runtime.stop()));
    const settled = Promise.all(this.#running.map((runtime) => runtime.settled()));
    const grace = AbortSignal.timeout(this.#env.shutdownTimeoutMs);
    const inTime = await Promise.race([
      settled.then(() => true),
      new Promise<false>((resolve) => grace.addEventListener("abort", () => resolve(false), { once: true })),
    ]);
    if (!inTime) {
      this.log.warn({ inflight: this.#inflightCount() }, "grace period over: aborting in-flight invocations");
      this.#stop.abort();
      await settled;
    }
    // Nothing of theirs runs here any more: the other replicas may take the partitions now.
    await Promise.all(this.#running.map((runtime) => runtime.release()));
    await ingressClosed;
    await this.#release();
    await Promise.all(this.#running.map((runtime) => runtime.close()));
    if (this.#state !== "failed") this.#state = "stopped";
    this.log.info("stopped");
  }

  async #release(): Promise<void> {
    this.#stop.abort();
    await this.#poller?.stop();
    await this.#pauses?.stop();
    await this.#replays?.stop();
    await this.#jetstreamWatch?.stop();
    await this.#mover?.stop();
    const nc = this.#clients?.nc;
    if (nc && !nc.isClosed()) {
      await nc.drain().catch((error: unknown) => this.log.warn({ err: error }, "draining the NATS connection failed"));
    }
    this.#connected = false;
    await this.#tracing?.flush();
    await this.#ingress?.close();
    await this.#http?.close();
    await this.#endpoint?.stop?.();
  }

  #inflightCount(): number {
    return this.#running.reduce((sum, r) => sum + r.invoker.inflight + r.caller.inflight, 0);
  }
}

import type { EventKeySpec } from "../contracts/event-key.ts";

/**
 * The compiled configuration: what `functions.yaml` and the environment become after
 * validation. Defaults are applied, durations are milliseconds, paths are absolute, and
 * every object is frozen. Nothing downstream re-reads YAML or `process.env`.
 */

/** How a function's payload bytes become the handler's event. */
export type Encoding = "json" | "text" | "binary";

/** Where a new durable consumer starts in its stream. */
export type CompiledDeliverPolicy =
  | { readonly kind: "all" }
  | { readonly kind: "new" }
  | { readonly kind: "last" }
  | { readonly kind: "startTime"; readonly startTime: Date }
  | { readonly kind: "startSeq"; readonly startSeq: number };

export interface CompiledRetry {
  /** Deliveries before the message is dead-lettered (the first delivery counts). */
  readonly maxAttempts: number;
  readonly backoff: "exponential" | "fixed";
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly jitter: boolean;
}

export interface CompiledBreaker {
  readonly failureThreshold: number;
  readonly openForMs: number;
  readonly halfOpenRequests: number;
}

export interface CompiledStream {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly storage: "file" | "memory";
  readonly replicas: number;
  /** 0 means unlimited. */
  readonly maxAgeMs: number;
  /** The window in which `Nats-Msg-Id` de-duplicates publishes. */
  readonly duplicateWindowMs: number;
}

export interface CompiledFunction {
  readonly name: string;
  /** Absolute path of the handler source file. */
  readonly handlerPath: string;
  /** The export that holds the handler; `default` unless `handler:` says `#name`. */
  readonly exportName: string;
  readonly stream: string;
  readonly subjects: readonly string[];
  readonly durable: string;
  readonly concurrency: number;
  readonly timeoutMs: number;
  /** Server-side ack wait of the consumer; heartbeats keep longer invocations alive. */
  readonly ackWaitMs: number;
  readonly maxAckPending: number;
  readonly retry: CompiledRetry;
  readonly breaker?: CompiledBreaker;
  readonly output?: string;
  readonly deadLetter: string;
  readonly deliverPolicy: CompiledDeliverPolicy;
  readonly encoding: Encoding;
  readonly config: Readonly<Record<string, unknown>>;
  /** Where the handler runs: a worker thread of its own function, or the host's thread. */
  readonly isolation: Isolation;
  /** The heap cap of the function's worker thread, in MB (`memoryLimit:`). */
  readonly memoryLimitMb: number;
  /** Served as `jetfn.invoke.<name>` by the NATS service `jetfn` (`invoke: true`). */
  readonly invoke: boolean;
  /** `ordering:`: one event per key at a time, in stream order, across every replica. */
  readonly ordering?: CompiledOrdering;
  /** `schedule:`: it also runs on a clock, once per tick across every replica. */
  readonly schedule?: CompiledSchedule;
  /** `debounce:`: its events run once per key, with the last, after a quiet `period`. */
  readonly debounce?: CompiledDebounce;
  /** `rateLimit:`: at most `limit` runs per `period`, across every replica together. */
  readonly rateLimit?: CompiledRateLimit;
  /** `steps:`: the records of its `ctx.step` calls. */
  readonly steps: CompiledSteps;
  /** `idempotency:`: one successful run per business key within its ttl; later events with the key are duplicates. */
  readonly idempotency?: CompiledIdempotency;
  /** `batch:`: its handler (`defineBatchFunction`) takes its events in batches. */
  readonly batch?: CompiledBatch;
}

/** A function's `batch:` (see docs/batches.md). */
export interface CompiledBatch {
  /** A batch is handed over once it holds this many events. */
  readonly maxSize: number;
  /** ... or once this long has passed since its first event. @default 1s */
  readonly maxWaitMs: number;
  /** ... or once its events' payloads add up to this many bytes. @default no limit */
  readonly maxBytes?: number;
}

/** A function's `idempotency:`. */
export interface CompiledIdempotency {
  /** Where each event's business key is read (an event without one is not deduplicated). */
  readonly key: EventKeySpec;
  /** How long a key's successful run is remembered. @default 24h */
  readonly ttlMs: number;
}

/** A function's `steps:`. */
export interface CompiledSteps {
  /** How long a step's record is kept (and replayed). @default 168h (7 days) */
  readonly ttlMs: number;
  /** The largest step result, as JSON bytes; capped by the server's max_payload at run time. @default 256KB */
  readonly maxResultBytes: number;
}

/** A function's `rateLimit:`. */
export interface CompiledRateLimit {
  /** Runs per `period`, across every replica. */
  readonly limit: number;
  readonly periodMs: number;
  /** Runs that may start at once. @default a tenth of `limit`, at least 1 */
  readonly burst: number;
  /** Per key (read from each event): each key has its own `limit`, `period` and `burst`. */
  readonly key?: EventKeySpec;
}

/** A function's `debounce:`. */
export interface CompiledDebounce {
  /** Where each event's key is read. */
  readonly key: EventKeySpec;
  /** The key runs once no new event of it came for this long. */
  readonly periodMs: number;
  /** ... or once this long has passed since the first event of the window. @default no limit */
  readonly maxWaitMs?: number;
}

/** A function's `schedule:`. */
export interface CompiledSchedule {
  /** 5 fields, or 6 with seconds first. */
  readonly cron: string;
  /** IANA time zone. @default UTC */
  readonly timezone: string;
  /** Ticks missed while no replica ran: skipped, the last one run, or each run (up to `maxCatchUp`). @default latest */
  readonly catchUp: "none" | "latest" | "all";
  /** @default 10 */
  readonly maxCatchUp: number;
  /** Merged into each tick's event. */
  readonly payload: Readonly<Record<string, unknown>>;
}

export interface CompiledOrdering {
  readonly key: EventKeySpec;
  /** Keys hash into this many partitions; each is owned by one replica at a time. */
  readonly partitions: number;
  /** A lease not renewed for this long passes to another replica. */
  readonly leaseTtlMs: number;
}

/** One segment of a route's path: a literal, or a `:param`. */
export type RouteSegment = { readonly literal: string } | { readonly param: string };

/** One entry of `routes:`: an HTTP route of the ingress listener. */
export interface CompiledRoute {
  /** `POST /orders/:id`: the route as written, and its metric label. */
  readonly route: string;
  readonly method: string;
  readonly path: string;
  readonly segments: readonly RouteSegment[];
  /** Publish the body to a subject (its `{param}`s filled in), or invoke a function. */
  readonly target: { readonly kind: "publish"; readonly subject: string } | { readonly kind: "invoke"; readonly function: string };
  /** A schema export that checks the body before anything else happens. */
  readonly schema?: { readonly file: string; readonly exportName: string };
  readonly auth: "none" | "bearer";
  readonly encoding: Encoding;
}

/** `isolation:` in `functions.yaml`. */
export type Isolation = "worker" | "none";

export interface CompiledConfig {
  /** Absolute path of the `functions.yaml` this came from. */
  readonly file: string;
  /** Folder of that file: handler paths and the build folder are relative to it. */
  readonly rootDir: string;
  readonly streams: readonly CompiledStream[];
  readonly functions: readonly CompiledFunction[];
  readonly routes: readonly CompiledRoute[];
}

/** Validated environment (see DESIGN.md, "Environment"). */
export interface CompiledEnv {
  /** Set only when `NATS_URL` was given; unset means "local default, embedded if absent". */
  readonly natsUrl?: readonly string[];
  readonly natsCreds?: string;
  readonly natsUser?: string;
  readonly natsPassword?: string;
  readonly natsToken?: string;
  readonly natsNkeySeed?: string;
  readonly natsTlsCa?: string;
  readonly natsTlsCert?: string;
  readonly natsTlsKey?: string;
  readonly configFile: string;
  readonly httpHost: string;
  readonly httpPort: number;
  readonly shutdownTimeoutMs: number;
  /** `JETFN_TEST_CLOCK_OFFSET`: added to this host's clock where schedules read it (testing skew). */
  readonly clockOffsetMs: number;
  /** The ingress listener (`routes:`). */
  readonly ingressHost: string;
  readonly ingressPort: number;
  /** Bearer tokens that `auth: bearer` routes accept; never logged. */
  readonly ingressTokens: readonly string[];
  /** Request bodies larger than this get 413. @default 1MB */
  readonly ingressMaxBodyBytes: number;
  /** A request not fully read within this gets 408 and its connection closed. @default 10s */
  readonly ingressReadTimeoutMs: number;
  /**
   * `JETFN_WARM_THREADS`: how many `isolation: worker` functions (the first in
   * functions.yaml) start their handler thread before the host is ready. @default 4
   */
  readonly warmThreads: number;
  readonly logLevel: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
  /** Set only when an OTLP endpoint is configured: without one, no span is exported. */
  readonly tracing?: CompiledTracing;
}

/** Trace export from the standard `OTEL_*` variables. */
export interface CompiledTracing {
  /** OTLP/HTTP traces URL (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `/v1/traces` under `OTEL_EXPORTER_OTLP_ENDPOINT`). */
  readonly endpoint: string;
  /** `OTEL_SERVICE_NAME`. @default "jetfn" */
  readonly serviceName: string;
  /** `OTEL_TRACES_SAMPLER`. @default "parentbased_always_on" */
  readonly sampler:
    | "always_on"
    | "always_off"
    | "traceidratio"
    | "parentbased_always_on"
    | "parentbased_always_off"
    | "parentbased_traceidratio";
  /** `OTEL_TRACES_SAMPLER_ARG`, for the ratio samplers. @default 1 */
  readonly samplerRatio: number;
  /** `OTEL_RESOURCE_ATTRIBUTES`. */
  readonly resourceAttributes: Readonly<Record<string, string>>;
}

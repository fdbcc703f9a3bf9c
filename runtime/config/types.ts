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
}

export interface CompiledConfig {
  /** Absolute path of the `functions.yaml` this came from. */
  readonly file: string;
  /** Folder of that file: handler paths and the build folder are relative to it. */
  readonly rootDir: string;
  readonly streams: readonly CompiledStream[];
  readonly functions: readonly CompiledFunction[];
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
  readonly logLevel: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
}

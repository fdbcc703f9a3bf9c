/**
 * What the console's server sends its page (JSON over `/api/*` and server-sent events):
 * the one vocabulary of runtime/console/ and runtime/console/web/. Types only.
 */
import type { DeadLetter } from "../nats/dead-letters.ts";

/** The fleet page and the hosts page: everything one poll of the `jetfn` service found. */
export interface FleetView {
  /** ISO 8601: when the hosts were asked. */
  readonly at: string;
  /** The NATS servers the console talks to (credentials redacted). */
  readonly servers: string;
  readonly functions: readonly FunctionView[];
  readonly hosts: readonly HostView[];
  /** The history's bucket width: each chart point covers this long. */
  readonly stepMs: number;
}

/** One function across the fleet: every function of functions.yaml, running or not. */
export interface FunctionView {
  readonly name: string;
  readonly stream: string;
  readonly subjects: readonly string[];
  /** Names of the hosts that run it now. */
  readonly hosts: readonly string[];
  /** Every host that runs it has its consumer bound; false when none runs it. */
  readonly bound: boolean;
  readonly paused: boolean;
  readonly pausedReason?: string;
  readonly pausedAt?: string;
  readonly pausedBy?: string;
  /** Summed over its hosts. */
  readonly inflight: number;
  readonly limit: number;
  /** The consumer's, as the host that polled it last saw it. */
  readonly pending?: number;
  readonly ackPending?: number;
  /** The function's breaker on its hosts: the worst state, or "-" without one; named breakers not closed follow. */
  readonly breaker: string;
  /** In the last minute, over every host. */
  readonly successes: number;
  readonly failures: number;
  /** p99 of the invocation duration over the chart's window, in ms; absent without invocations (or from older hosts). */
  readonly p99Ms?: number;
  /** Held now in its dead-letter stream. */
  readonly deadLetters?: number;
  /** ISO 8601, for a scheduled function. */
  readonly nextTick?: string;
  /** `50/1s`, `10/1s per key`, with `waiting` or `FAILING`; absent without a rate limit. */
  readonly rateLimit?: string;
  readonly chart: ChartSeries;
}

/** Per bucket of `stepMs`, oldest first: the bucket's start (ms), settled invocations, p99 (ms; null without any). */
export interface ChartSeries {
  readonly t: readonly number[];
  readonly successes: readonly number[];
  readonly failures: readonly number[];
  readonly p99Ms: readonly (number | null)[];
}

export interface HostView {
  /** The service instance's id. */
  readonly id: string;
  readonly host: string;
  readonly version: string;
  readonly startedAt?: string;
  readonly uptimeMs?: number;
  readonly state?: string;
  readonly ready?: boolean;
  /** Why its status is missing. */
  readonly error?: string;
  readonly functions: readonly HostFunctionView[];
}

export interface HostFunctionView {
  readonly name: string;
  /** `worker` or `none`, when the host says. */
  readonly isolation?: string;
  /** Worker threads that ended and were replaced, and the last one's reason. */
  readonly restarts?: number;
  readonly lastRestart?: { readonly reason: string; readonly at: string; readonly error?: string };
}

/** One row of the dead-letter list: a dead letter as `jetfn dlq list` shows it, its function known from the page. */
export type DeadLetterRow = Omit<DeadLetter, "function">;

/** One dead letter opened. */
export interface DeadLetterPage extends DeadLetterRow {
  readonly function: string;
  readonly storedAt: string;
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
  /** The body: pretty JSON, or an `xxd` style hex dump. */
  readonly body: { readonly kind: "json" | "hex" | "empty"; readonly text: string };
  /** A link to its trace, when JETFN_CONSOLE_TRACE_URL is set and it carries a `traceparent`. */
  readonly traceUrl?: string;
}

/** What the replay form sends. */
export interface ReplayRequest {
  readonly fromSeq?: number;
  /** ISO time or a duration before now (`2h`), as `--since`. */
  readonly since?: string;
  /** A sequence, ISO time or duration, as `--until`. */
  readonly until?: string;
  readonly subject?: string;
  readonly limit?: number;
  readonly key?: string;
  readonly dryRun: boolean;
}

/** A replay's counts as it runs, and its end. */
export interface ReplayProgress {
  readonly id: string;
  readonly function: string;
  readonly dryRun: boolean;
  readonly state: "running" | "done" | "failed";
  readonly total: number;
  readonly read: number;
  readonly published: number;
  readonly duplicates: number;
  readonly seq?: number;
  readonly error?: string;
}

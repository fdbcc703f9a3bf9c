/** A circuit breaker's state (`jetfn_breaker_state`: 0 closed, 1 half-open, 2 open). */
export type BreakerState = "closed" | "half-open" | "open";

import type { BrokerHoldStatus } from "./broker.ts";

/**
 * What one host answers on its status endpoint of the NATS service `jetfn`, and what
 * `jetfn status --json` prints per host. A contract between hosts and CLIs of different
 * versions: fields are only ever added.
 */
export interface HostStatus {
  /** The host's id (`<hostname>-<pid>-<random>`), as partition leases name it. */
  readonly host: string;
  readonly version: string;
  /** ISO 8601. */
  readonly startedAt: string;
  readonly uptimeMs: number;
  /** The host's lifecycle state (`running`, `draining`, ...). */
  readonly state: string;
  /** What `/readyz` answers. */
  readonly ready: boolean;
  /** The NATS server this host is connected to now (`host:port`). */
  readonly server?: string;
  readonly functions: readonly FunctionStatus[];
}

/** One function on one host. */
export interface FunctionStatus {
  readonly name: string;
  /** Its stream, durable consumer and filter subjects (absent from hosts older than these fields). */
  readonly stream?: string;
  readonly durable?: string;
  readonly subjects?: readonly string[];
  /** Its consumer is known to exist and its last pull did not fail. */
  readonly bound: boolean;
  readonly paused: boolean;
  /** While paused: the operator's reason (when one was given), when and by whom. */
  readonly pausedReason?: string;
  readonly pausedAt?: string;
  readonly pausedBy?: string;
  /** Deliveries running on this host, and the function's `concurrency`. */
  readonly inflight: number;
  readonly limit: number;
  /** Synchronous calls running on this host (they have slots of their own). */
  readonly calls?: number;
  /** The consumer's backlog and un-acked deliveries (all replicas), as this host last polled them, and when. */
  readonly pending?: number;
  readonly ackPending?: number;
  readonly sampledAt?: string;
  /** The function's own breaker (`breaker:` in yaml); absent without one. */
  readonly breaker?: BreakerState;
  /** Named breakers (`ctx.breaker(name)`) the function used on this host. */
  readonly breakers: Readonly<Record<string, BreakerState>>;
  /**
   * Present while the broker refuses the function's outputs or dead letters on this host:
   * the waiting publishes are retried in place and the function pulls nothing new.
   */
  readonly brokerHold?: BrokerHoldStatus;
  /** Invocations on this host in the last 60 s: successes, and every other outcome. */
  readonly lastMinute: { readonly successes: number; readonly failures: number };
  /** Running totals on this host since it started (absent from older hosts): the console diffs them for its charts. */
  readonly totals?: FunctionTotals;
  /** Messages this host dead-lettered since it started. */
  readonly deadLettered: number;
  /** The function's dead-letter subject. */
  readonly deadLetter: string;
  /**
   * How it runs and what it holds, by kind: for `isolation: worker`, `isolation`, `thread`,
   * `restarts` and `lastRestart`; `replaysWaiting`; for an ordered function, `ordering`.
   */
  readonly [detail: string]: unknown;
}

/** A function's invocations on one host since it started. */
export interface FunctionTotals {
  /** Settled invocations: `success` and `duplicate`, and every other outcome. */
  readonly successes: number;
  readonly failures: number;
  /** `jetfn_invocation_duration_seconds`: bucket upper bounds (s), per-bucket counts (not cumulative; the last is +Inf), sum and count. */
  readonly duration: {
    readonly bounds: readonly number[];
    readonly counts: readonly number[];
    readonly sum: number;
    readonly count: number;
  };
}

/** One function in `jetfn status`: what its host said, and its dead letters held now. */
export interface FleetFunctionStatus extends FunctionStatus {
  /** Messages of this function in the stream capturing its dead-letter subject (all hosts'); absent when unknown. */
  readonly deadLetters?: number;
}

/** One replica found through the NATS service `jetfn`. */
export interface FleetHost extends Partial<Omit<HostStatus, "functions">> {
  /** The service instance's id. */
  readonly id: string;
  readonly host: string;
  readonly version: string;
  readonly functions: readonly FleetFunctionStatus[];
  /** Why the host's status is missing (it did not answer in time, or is an older jetfn). */
  readonly error?: string;
}

/** What `jetfn status --json` prints. */
export interface FleetStatus {
  /** ISO 8601: when it was gathered. */
  readonly at: string;
  readonly hosts: readonly FleetHost[];
}

/**
 * The messages between the host's thread and a function's worker thread. Everything that
 * crosses is plain data: payloads as bytes (transferred, not copied), errors rebuilt from
 * their fields with their brand, outputs already encoded.
 */
import type { CompiledTracing, Encoding } from "../config/types.ts";
import type { FieldIssue } from "../contracts/call.ts";
import type { Delivery } from "../contracts/delivery.ts";
import type { StepBegin, StepEnd } from "../invoke/steps.ts";
import { ERROR_BRAND, type ErrorKind } from "../sdk/errors.ts";
import type { BreakerOptions } from "../sdk/types.ts";
import type { BytesRef } from "./batch-port.ts";

/** `workerData` of a handler thread. */
export interface ThreadInit {
  readonly mode: "serve";
  readonly function: string;
  readonly bundleFile: string;
  readonly exportName: string;
  readonly handlerPath: string;
  readonly rootDir: string;
  readonly encoding: Encoding;
  /** Whether a return value is published (`output:`): only then is it encoded and sent back. */
  readonly output: boolean;
  readonly config: Readonly<Record<string, unknown>>;
  /** pino's numeric level: calls below it are dropped in the thread. */
  readonly logLevel: number;
  readonly tracing?: CompiledTracing;
  /**
   * The function's `concurrency`: a run sent as "start when a slot frees" (t 2) waits in
   * the thread until fewer than this many run. Runs sent as "start now" (t 0) always start.
   */
  readonly slots: number;
  /** Set for a batch function (`batch:`): its export must be a `defineBatchFunction`, and it runs `batch` messages. */
  readonly batch?: true;
}

/** `workerData` of the thread that checks every handler's shape before a host starts. */
export interface CheckInit {
  readonly mode: "check";
  readonly rootDir: string;
  readonly handlers: readonly { function: string; bundleFile: string; exportName: string; handlerPath: string; batch?: true }[];
}

/** W3C trace context of a span, as headers. */
export interface TraceCarrier {
  traceparent?: string;
  tracestate?: string;
}

/** One invocation, as a thread runs it. */
export interface Run extends Pick<Delivery, "data" | "subject" | "headers" | "stream" | "seq" | "deliveryCount" | "replayOf"> {
  readonly id: number;
  /** The stream timestamp, epoch ms. */
  readonly timestamp: number;
  readonly trace: TraceCarrier;
}

/**
 * A {@link Run} on the wire, the hottest message: a tuple, which clones faster than an
 * object, with its payload in the batch's bytes and the usually empty parts as 0.
 */
export type RunWire = readonly [
  /** 0: start now; 2: start when one of the thread's `slots` is free, and say `started`. */
  t: 0 | 2,
  id: number,
  subject: string,
  stream: string,
  seq: number,
  deliveryCount: number,
  timestamp: number,
  data: BytesRef,
  headers: Readonly<Record<string, string>> | 0,
  traceparent: string | 0,
  tracestate: string | 0,
  /** A replay's original event (`Delivery.replayOf`); left off otherwise. */
  replayOf?: readonly [stream: string, seq: number],
];

/**
 * A success on the wire: the encoded output in the batch's bytes, or 0 for none, and what
 * those bytes encode (absent for JSON). A synchronous call (an HTTP route's or a NATS
 * request's) runs with stream sequence 0: its return value always comes back, whether or
 * not the function has an `output:`.
 */
export type DoneWire = readonly [t: 1, id: number, value: BytesRef | 0, type?: "text" | "binary"];

/** One message of a batch on the wire: its payload in the batch's bytes, no headers as 0. */
export type BatchItemWire = readonly [
  subject: string,
  seq: number,
  deliveryCount: number,
  timestamp: number,
  data: BytesRef,
  headers: Readonly<Record<string, string>> | 0,
];

/** How the handler (or the runner) settled one message of a batch, on the wire. */
export type WireSettle =
  | { readonly kind: "ack" }
  | { readonly kind: "retry"; readonly delayMs?: number }
  | { readonly kind: "fail"; readonly error: WireError }
  | { readonly kind: "undecodable"; readonly message: string }
  | { readonly kind: "invalid"; readonly issues: readonly FieldIssue[] };

/** The host's thread to a handler thread. */
export type ToThread =
  | RunWire
  /** Run the batch handler on these messages now; it answers like a run (done), and `settle` for each message it settles first. */
  | { readonly t: "batch"; readonly id: number; readonly items: readonly BatchItemWire[]; readonly trace: TraceCarrier }
  /** The invocation's signal aborts; the thread answers `aborted` as soon as it reads this. */
  | { readonly t: "abort"; readonly id: number; readonly reason: WireError }
  | { readonly t: "reply"; readonly req: number; readonly value?: unknown; readonly error?: WireError }
  | { readonly t: "ping" }
  /** The function's gate closed (pause, open breaker): every run still waiting for a slot is handed back unrun. */
  | { readonly t: "release" }
  /** The host has settled the failures the thread reported: waiting runs may start again (or were released). */
  | { readonly t: "go" }
  /** Flush and exit: the thread has been idle. */
  | { readonly t: "close" };

/** A handler thread to the host's thread. */
export type FromThread =
  | DoneWire
  | { readonly t: "ready" }
  /** Any other outcome than a success (those travel as {@link DoneWire}). */
  | { readonly t: "done"; readonly id: number; readonly outcome: WireOutcome }
  | { readonly t: "aborted"; readonly id: number }
  /** A run sent to wait for a slot (t 2) started: its deadline starts now. */
  | { readonly t: "started"; readonly id: number }
  | { readonly t: "working"; readonly id: number }
  /** Message `index` of batch `id` settled before the batch ended. */
  | { readonly t: "settle"; readonly id: number; readonly index: number; readonly how: WireSettle }
  | { readonly t: "call"; readonly req: number; readonly id: number; readonly call: Call }
  | { readonly t: "breaker-result"; readonly id: number; readonly name: string; readonly ok: boolean }
  | {
      readonly t: "log";
      readonly id: number;
      readonly level: LogLevel;
      readonly bindings: Record<string, unknown>;
      readonly fields: Record<string, unknown>;
      readonly msg?: string;
    }
  | { readonly t: "span"; readonly id: number; readonly op: SpanOp; readonly args: unknown[] }
  | { readonly t: "pong" };

/** What a handler thread asks of the host on a handler's behalf. */
export type Call =
  | {
      readonly op: "publish";
      readonly subject: string;
      readonly data: BytesRef;
      readonly headers?: Record<string, string>;
      readonly msgId?: string;
      /** Deliver later: a duration or milliseconds. */
      readonly delay?: string | number;
      /** Deliver at: ISO 8601 or epoch ms (a Date crosses as its epoch ms). */
      readonly at?: string | number;
      /** The handler's active span, when it made one: the publish's parent. */
      readonly parent?: TraceCarrier;
    }
  | { readonly op: "breaker"; readonly name: string; readonly options?: BreakerOptions }
  /**
   * `ctx.step(name)`: claim the step or answer it from its record; the reply is a
   * {@link StepStart}. The step's function runs in the thread, under the span in `trace`.
   */
  | { readonly op: "step"; readonly name: string; readonly parent?: TraceCarrier }
  /** A claimed step ended: record it. Served even after its invocation ended (a late result is still recorded). */
  | { readonly op: "step-end"; readonly claim: number; readonly end: StepEnd };

/** The answer to a `step` call: how the step starts, and for one to run, its span's trace context. */
export type StepStart = StepBegin & { readonly trace?: TraceCarrier };

/** The answer to a `breaker` call: may the call go through the host's breaker? */
export interface BreakerAdmission {
  readonly admitted: boolean;
  readonly state: "closed" | "half-open" | "open";
  readonly retryAfterMs: number;
}

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal";

/** The span methods a handler may call on `ctx.span` from a thread. */
export type SpanOp = "setAttribute" | "setAttributes" | "addEvent" | "setStatus" | "updateName" | "recordException";

/** How an invocation ended other than in success, as a thread reports it. */
export type WireOutcome =
  | { readonly kind: "error"; readonly error: WireError }
  | { readonly kind: "undecodable"; readonly message: string }
  | { readonly kind: "invalid"; readonly issues: readonly FieldIssue[] }
  /** A run that waited for a slot and was handed back unrun (see `release`). */
  | { readonly kind: "released" };

/** A thrown value, taken apart: an Error's fields and brand, or a non-error's description. */
export interface WireError {
  readonly name?: string;
  readonly message: string;
  readonly stack?: string;
  /** Set when something other than an Error was thrown (a string, undefined). */
  readonly nonError?: true;
  readonly brand?: ErrorKind;
  readonly delayMs?: number;
  readonly retryAfterMs?: number;
  readonly breaker?: string;
  /** A `StepError`'s step and problem. */
  readonly step?: string;
  readonly problem?: string;
}

/**
 * Takes a thrown value apart for the trip across threads. Structured clone would drop the
 * brand of jetfn's error classes and refuse values it cannot clone, so this never clones
 * the value itself: it reads fields, and reading cannot throw.
 */
export function toWire(error: unknown, describe: (error: unknown) => string): WireError {
  if (!(error instanceof Error)) return { message: describe(error), nonError: true };
  const read = <T>(key: string, type: string): T | undefined => {
    try {
      const value = (error as unknown as Record<string, unknown>)[key];
      return typeof value === type ? (value as T) : undefined;
    } catch {
      return undefined;
    }
  };
  const brand = read<ErrorKind>(ERROR_BRAND as unknown as string, "string") ?? brandOf(error);
  return {
    name: read<string>("name", "string"),
    message: read<string>("message", "string") ?? describe(error),
    stack: read<string>("stack", "string"),
    ...(brand ? { brand } : {}),
    ...(read<number>("delayMs", "number") !== undefined ? { delayMs: read<number>("delayMs", "number") } : {}),
    ...(read<number>("retryAfterMs", "number") !== undefined ? { retryAfterMs: read<number>("retryAfterMs", "number") } : {}),
    ...(read<string>("breaker", "string") !== undefined ? { breaker: read<string>("breaker", "string") } : {}),
    ...(brand === "step" ? { step: read<string>("step", "string") ?? "", problem: read<string>("problem", "string") ?? "" } : {}),
  };
}

function brandOf(error: Error): ErrorKind | undefined {
  try {
    return (error as unknown as Record<symbol, ErrorKind | undefined>)[ERROR_BRAND];
  } catch {
    return undefined;
  }
}

/**
 * Rebuilds a thrown value on the host's side: an Error with the original name, message,
 * stack (source-mapped in the thread) and brand, so settlement reads it as it would have
 * read the original; a non-error as its description.
 */
export function fromWire(wire: WireError): unknown {
  if (wire.nonError) return wire.message;
  const error = new Error(wire.message) as Error & Record<string, unknown>;
  if (wire.name) Object.defineProperty(error, "name", { value: wire.name, enumerable: false, configurable: true, writable: true });
  if (wire.stack) error.stack = wire.stack;
  if (wire.brand) Object.defineProperty(error, ERROR_BRAND, { value: wire.brand });
  if (wire.delayMs !== undefined) error.delayMs = wire.delayMs;
  if (wire.retryAfterMs !== undefined) error.retryAfterMs = wire.retryAfterMs;
  if (wire.breaker !== undefined) error.breaker = wire.breaker;
  if (wire.step !== undefined) error.step = wire.step;
  if (wire.problem !== undefined) error.problem = wire.problem;
  return error;
}

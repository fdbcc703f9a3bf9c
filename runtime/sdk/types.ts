import type { Span } from "@opentelemetry/api";

/** A structured log call: `log.info({ orderId }, "charged")` or `log.info("charged")`. */
export interface LogFn {
  (message: string): void;
  (fields: object, message?: string): void;
}

/** The logger handed to handlers; every line carries the function, subject and seq. */
export interface Logger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
  child(bindings: Record<string, unknown>): Logger;
}

/** Options of `ctx.publish`. */
export interface PublishOptions {
  /** Extra NATS headers. */
  headers?: Record<string, string>;
  /** `Nats-Msg-Id`: the stream drops a second publish with the same id in its window. */
  msgId?: string;
  /**
   * Deliver it later, after this long: a duration such as `"10m"`, or milliseconds. It waits
   * in jetfn's stream `JETFN_DELAYED`, not in a consumer. At most a year; not with `at`.
   */
  delay?: string | number;
  /** Deliver it at this time (a Date, or ISO 8601 with a zone); one in the past is delivered at once. Not with `delay`. */
  at?: Date | string;
}

/** The stream's acknowledgement of a publish. */
export interface PublishAck {
  stream: string;
  seq: number;
  duplicate: boolean;
  /** A delayed publish's id (`jetfn delayed cancel <id>`); its stream is then `JETFN_DELAYED`. */
  id?: string;
}

/** Options of `ctx.breaker(name, options)`; the first call for a name decides them. */
export interface BreakerOptions {
  /** Consecutive failures that open it. @default 5 */
  failureThreshold?: number;
  /** How long it stays open: milliseconds or a duration such as `"30s"`. @default "30s" */
  openFor?: number | string;
  /** Probes let through while half-open. @default 1 */
  halfOpenRequests?: number;
}

/** A named circuit breaker, shared by every invocation in the host. */
export interface Breaker {
  readonly name: string;
  readonly state: "closed" | "half-open" | "open";
  /**
   * Runs `fn` when the breaker admits it and records how it ended; rejects at once with a
   * `BreakerOpenError` while open.
   */
  execute<T>(fn: () => T | Promise<T>): Promise<T>;
}

/** A message's place: its stream and its sequence there. */
export interface StreamPosition {
  readonly stream: string;
  readonly seq: number;
}

/** What `ctx.replay` says of a replayed delivery (`jetfn replay`, `jetfn dlq redrive --only`). */
export interface ReplayInfo {
  /** The original event this delivery is a copy of. */
  readonly of: StreamPosition;
}

/** What `ctx.schedule` says of a tick's run. */
export interface ScheduleInfo {
  readonly scheduledTime: Date;
  readonly lateMs: number;
}

/** What a step's function receives (`ctx.step(name, ({ key, signal }) => ...)`). */
export interface StepContext {
  /**
   * `<function>:<run id>:<step name>`: the same on every attempt of the run. Pass it to an
   * API that takes an idempotency key: it covers the one case a record cannot, a step that
   * completed on a host that died before recording it.
   */
  readonly key: string;
  /** The invocation's signal: aborts on timeout and shutdown. */
  readonly signal: AbortSignal;
}

/** What a handler receives besides its event. */
export interface FunctionContext<Config = Record<string, unknown>> {
  /** The function's name in `functions.yaml`. */
  readonly function: string;
  /** The subject the message was published on (for a replay, the original event's subject). */
  readonly subject: string;
  /** The message's NATS headers (first value of each). */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * Stream sequence of the message. For a replay, the copy's sequence in `JETFN_REPLAY`
   * (the original's is `replay.of.seq`).
   */
  readonly seq: number;
  /** 1 on the first delivery, 2 on the first retry, and so on. */
  readonly deliveryCount: number;
  /** When the message was stored in the stream. */
  readonly timestamp: Date;
  /** Aborts on timeout and on shutdown: pass it to fetch, database calls, timers. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** The CONSUMER span of this delivery; spans you start nest under it. */
  readonly span: Span;
  /** The function's `config:` map from `functions.yaml`. */
  readonly config: Config;
  /**
   * Set when this delivery is a replay sent to this function alone (`jetfn replay`, `jetfn
   * dlq redrive --only`): `replay.of` is where the original event is. Undefined otherwise.
   */
  readonly replay?: ReplayInfo;
  /**
   * Set when this run is a tick of the function's `schedule:`: the tick's time, and how late
   * the run started (negative when a replica whose clock runs ahead published it early).
   * Undefined for any other event.
   */
  readonly schedule?: ScheduleInfo;
  /**
   * Publish to JetStream: `data` is sent as is when bytes, as UTF-8 when a string, else as
   * JSON. Resolves with the stream's PubAck.
   */
  publish(subject: string, data: unknown, options?: PublishOptions): Promise<PublishAck>;
  /** The named breaker shared by all invocations in this host (created on first use). */
  breaker(name: string, options?: BreakerOptions): Breaker;
  /** Tell the server this message is still being worked on (resets its ack timer). */
  working(): void;
  /**
   * A durable step: runs `fn` once per run of the event and records its result (JSON, at
   * most `steps.maxResultSize`) in the KV bucket `JETFN_STEPS`; every later attempt of the
   * same run gets the recorded result without running `fn`. A thrown error is not recorded
   * (the step runs again next attempt) unless it is a `NonRetryableError`. The same name
   * again in one run is a step of its own (`name#2`, ...). See docs/steps.md.
   */
  step<T>(name: string, fn: (step: StepContext) => T | Promise<T>): Promise<T>;
}

/** A handler: return to succeed (the value goes to `output`), throw to fail. */
export type Handler<Event = unknown, Result = unknown, Config = Record<string, unknown>> = (
  event: Event,
  ctx: FunctionContext<Config>,
) => Result | Promise<Result>;

/**
 * Anything with zod's `safeParse`, or a Standard Schema (`~standard`): the event is
 * validated before the handler runs, and an invalid one is dead-lettered.
 */
export interface EventSchema<Event> {
  safeParse?(input: unknown): { success: true; data: Event } | { success: false; error: unknown };
  "~standard"?: unknown;
}

/** Options of a batch message's `retry()`. */
export interface RetryOptions {
  /** Deliver it again after this long (a duration such as `"5s"`, or milliseconds) rather than after the function's backoff. */
  delay?: string | number;
}

/**
 * One event of a batch (`defineBatchFunction`). Settle it with `ack()`, `retry()` or
 * `fail()`; the first settle wins and later ones are ignored. One the handler leaves
 * unsettled is acked when the handler returns, and retried when it throws or times out.
 */
export interface BatchMessage<Event = unknown> {
  /** The decoded (and, with a schema, validated) event. */
  readonly data: Event;
  readonly subject: string;
  /** Stream sequence of the message (for a replay, the copy's in `JETFN_REPLAY`). */
  readonly seq: number;
  /** 1 on the first delivery, 2 on the first retry, and so on. */
  readonly deliveryCount: number;
  /** The message's NATS headers (first value of each). */
  readonly headers: Readonly<Record<string, string>>;
  /** When the message was stored in the stream. */
  readonly timestamp: Date;
  /** Done with: acked now. */
  ack(): void;
  /**
   * Deliver it again: after `delay`, or the function's backoff. It counts as an attempt: one
   * on its last attempt is dead-lettered (attempts-exhausted).
   */
  retry(options?: RetryOptions): void;
  /**
   * It failed with `error`, settled as if a one-event handler had thrown it: a
   * `NonRetryableError` is dead-lettered at once, a `RetryAfterError` retried after its
   * delay, anything else retried with backoff until its attempts run out.
   */
  fail(error: unknown): void;
}

/** What a batch handler receives besides its messages: `ctx` without the one event's facts. */
export interface BatchContext<Config = Record<string, unknown>> {
  /** The function's name in `functions.yaml`. */
  readonly function: string;
  /** Aborts on the batch's timeout and on shutdown. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** The batch's CONSUMER span (linked to each message's trace); spans you start nest under it. */
  readonly span: Span;
  /** The function's `config:` map from `functions.yaml`. */
  readonly config: Config;
  /** As `FunctionContext.publish`. */
  publish(subject: string, data: unknown, options?: PublishOptions): Promise<PublishAck>;
  /** As `FunctionContext.breaker`. */
  breaker(name: string, options?: BreakerOptions): Breaker;
  /** Resets the ack timer of every message of the batch (they are heartbeated anyway while the handler runs). */
  working(): void;
}

/** A batch handler: settle messages one by one, or return (the rest are acked) or throw (the rest are retried). */
export type BatchHandler<Event = unknown, Config = Record<string, unknown>> = (
  messages: readonly BatchMessage<Event>[],
  ctx: BatchContext<Config>,
) => unknown;

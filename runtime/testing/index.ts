/**
 * `jetfn/testing`: run a handler without a broker and see what jetfn would do with the
 * delivery. `invoke()` drives the host's own invoker (decode, validate, run with timeout,
 * admission, the attempt tally, settlement, output and dead-letter publishing) with the
 * server side replaced by a captured delivery and publisher, so its answer is the host's.
 *
 * ```ts
 * import { invoke } from "jetfn/testing";
 * import chargePayment from "./charge-payment.ts";
 *
 * const result = await invoke(chargePayment, { orderId: "o-1", amount: 5 }, { deliveryCount: 2 });
 * expect(result.settlement).toMatchObject({ action: "nak", delayMs: 2000 });
 * ```
 */
import { handlerOf } from "../bundle/module.ts";
import { BUILT_IN_DEFAULTS, compileFunction } from "../config/compile.ts";
import { functionEntrySchema, parseOptions } from "../config/schema.ts";
import type { CompiledFunction, CompiledRetry, Encoding } from "../config/types.ts";
import type { Delivery } from "../contracts/delivery.ts";
import type { Outcome } from "../contracts/outcome.ts";
import { Admission } from "../invoke/admission.ts";
import { BatchInvoker } from "../invoke/batch-invoker.ts";
import { Heartbeats } from "../invoke/heartbeats.ts";
import { HostContext } from "../invoke/host-context.ts";
import { InProcessExecutor } from "../invoke/in-process.ts";
import { Invoker } from "../invoke/invoker.ts";
import { MemoryStepStore } from "../invoke/memory-step-store.ts";
import type { Settled } from "../invoke/settler.ts";
import { StepJournal } from "../invoke/steps.ts";
import { BreakerRegistry, type NamedBreaker } from "../resilience/breaker-registry.ts";
import type { BatchFunctionDefinition, FunctionDefinition } from "../sdk/index.ts";
import type { BreakerOptions, Handler } from "../sdk/types.ts";
import { createLogger } from "../telemetry/logger.ts";
import { Metrics } from "../telemetry/metrics.ts";
import { CapturingPublisher, LogCapture, type LogLine, type PublishedMessage } from "./capture.ts";

export type { Outcome, Settlement } from "../contracts/outcome.ts";
export { MemoryStepStore } from "../invoke/memory-step-store.ts";
export type { Settled } from "../invoke/settler.ts";
export type { LogLine, PublishedMessage } from "./capture.ts";

/** `retry:` as in `functions.yaml`; durations as milliseconds or strings such as `"1s"`. */
export interface RetryOptions {
  /** @default 5 */
  maxAttempts?: number;
  /** @default "exponential" */
  backoff?: "exponential" | "fixed";
  /** @default "1s" */
  initialDelay?: number | string;
  /** @default "5m" */
  maxDelay?: number | string;
  /** Takes effect only with {@link InvokeOptions.random}. @default true */
  jitter?: boolean;
}

/** Shapes the delivery and the function around the handler. Every option has the host's default. */
export interface InvokeOptions<Config = Record<string, unknown>> {
  /** `ctx.function`; also names the output's `Nats-Msg-Id`, the dead letter and log lines. @default "test" */
  function?: string;
  /** `ctx.subject`. @default "test" */
  subject?: string;
  /** The stream holding the message. @default "TEST" */
  stream?: string;
  /** `ctx.seq`. @default 1 */
  seq?: number;
  /** `ctx.deliveryCount`: which attempt this is, 1 the first. @default 1 */
  deliveryCount?: number;
  /** `ctx.headers`. @default {} */
  headers?: Record<string, string>;
  /** `ctx.config`. @default {} */
  config?: Config;
  /**
   * The clock of `ctx.breaker()`s and of the default `ctx.timestamp`, in epoch ms.
   * @default the time of the `invoke()` call, standing still: an open breaker's delays are exact
   */
  now?: () => number;
  /** `ctx.timestamp`. @default new Date(now()) */
  timestamp?: Date;
  /** The handler's timeout: milliseconds or a duration. @default "30s" */
  timeout?: number | string;
  /** The retry policy, over jetfn's built-in one. @default { maxAttempts: 5, backoff: "exponential", initialDelay: "1s", maxDelay: "5m", jitter: true } */
  retry?: RetryOptions;
  /**
   * Jitter's random numbers in [0, 1). Without it jitter is off, so a nak's delay is the
   * nominal backoff (1 s, 2 s, 4 s... by default).
   */
  random?: () => number;
  /** `output:`: where the return value is published. @default none */
  output?: string;
  /** `deadLetter:`. @default "jetfn.dlq.<function>" */
  deadLetter?: string;
  /** How the event's bytes decode. @default "json" */
  encoding?: Encoding;
  /**
   * Names of `ctx.breaker()`s that are open when the handler first asks for them: their
   * `execute()` rejects with the `BreakerOpenError` an open breaker of the host gives. The
   * others are real breakers, closed, fresh for each `invoke()`.
   */
  openBreakers?: readonly string[];
  /**
   * Sees each publish first (the handler's, the output, the dead letter); throw to fail it
   * as the broker would. The host tries a refused output or dead letter again in place,
   * until the broker takes it; `invoke()` tries 3 times, then settles with the nak that
   * shutdown would end the wait with (`delayMs: 0`, `spared: true`).
   */
  publish?: (message: PublishedMessage) => void | Promise<void>;
  /**
   * Where `ctx.step` records its steps. Pass the same store to two `invoke()`s of the same
   * event (same `seq`, or same `Nats-Msg-Id` header) and the second replays the steps the
   * first recorded, as a retry would. @default a fresh store for each call
   */
  steps?: MemoryStepStore;
}

/** What jetfn would do with the delivery. */
export interface InvokeResult<Result = unknown> {
  /** How the run ended: `success`, `error`, `timeout`, `invalid`, `undecodable`, `exhausted` or `duplicate` (both not run). */
  outcome: Outcome;
  /**
   * The one terminal action: `ack`, `nak` with `delayMs`, or `dead-letter` with `reason`;
   * with the error. A nak with `spared: true` spends none of the message's attempts (the
   * broker did not take its output or dead letter; see {@link InvokeOptions.publish}).
   */
  settlement: Settled;
  /** The handler's return value, when it returned. */
  output: Result | undefined;
  /** Every publish, in order: the handler's `ctx.publish`es, then the output or the dead letter. */
  published: PublishedMessage[];
  /** Every log line at any level: the handler's `ctx.log` ones and jetfn's "delivery failed". */
  logs: LogLine[];
}

/** A handler module's default export: `defineFunction({ handler, schema? })` or an async function. */
export type HandlerExport<Event, Result, Config> = FunctionDefinition<Event, Result, Config> | Handler<Event, Result, Config>;

/** Never aborts: a test has no shutdown. */
const NO_SHUTDOWN = new AbortController().signal;
/**
 * An output or dead letter that `publish` fails is tried again at once, 3 tries in all (a
 * host tries it until the broker takes it); when all fail, the settlement is the nak a
 * host would send if shutdown ended the wait: no delay, its attempt spared.
 */
const BROKER_TRIES: CompiledRetry = { maxAttempts: 3, backoff: "fixed", initialDelayMs: 0, maxDelayMs: 0, jitter: false };
let metrics: Metrics | undefined;

/**
 * Runs `handler` on one delivery of `event` and tells what jetfn would do: the outcome,
 * the settlement, the output, what was published and what was logged.
 *
 * @param handler a handler module's default export, or the module itself (`await import("./fn.ts")`).
 * @param event the event: bytes as they are, anything else encoded per `encoding`
 *   (JSON by default; a string for `text`).
 */
export async function invoke<Event, Result, Config = Record<string, unknown>>(
  handler: HandlerExport<Event, Result, Config> | { readonly default: HandlerExport<Event, Result, Config> },
  event: unknown,
  options: InvokeOptions<Config> = {},
): Promise<InvokeResult<Awaited<Result>>> {
  const exported = typeof handler === "object" && handler !== null && "default" in handler ? handler.default : handler;
  const loaded = handlerOf(exported);
  if (!loaded || loaded === "bad-schema") {
    throw new TypeError(
      loaded
        ? "invoke: the handler's schema has no safeParse() or ~standard"
        : "invoke: expected defineFunction({ handler }) or an async function",
    );
  }
  if (loaded.batch) throw new TypeError("invoke: a batch function (defineBatchFunction) runs on a batch: use invokeBatch(handler, events)");
  const fn = compiledFunction(options);
  const startedAt = Date.now();
  const now = options.now ?? (() => startedAt);
  const logs = new LogCapture();
  const log = createLogger("trace", logs).child({ function: fn.name });
  const publisher = new CapturingPublisher(options.publish);
  metrics ??= new Metrics();
  const store = options.steps ?? new MemoryStepStore();
  const steps = new StepJournal({ fn, store: async () => store, metrics, log, now });
  const host = new HostContext(fn, log, publisher, new TestBreakers(options.openBreakers ?? [], now), steps);
  let settled: { outcome: Outcome; settlement: Settled } | undefined;
  const invoker = new Invoker({
    host,
    executor: new InProcessExecutor(loaded, host),
    admission: new Admission(undefined, undefined, now),
    metrics,
    stop: NO_SHUTDOWN,
    heartbeats: Heartbeats.forAckWait(fn.ackWaitMs),
    heartbeat: false,
    brokerRetry: BROKER_TRIES,
    ...(options.random ? { random: options.random } : {}),
    onSettled: (outcome, settlement) => (settled = { outcome, settlement }),
  });
  const delivery: Delivery = {
    data: payload(event, fn.encoding),
    subject: options.subject ?? "test",
    headers: { ...options.headers },
    stream: fn.stream,
    seq: options.seq ?? 1,
    deliveryCount: options.deliveryCount ?? 1,
    timestamp: options.timestamp ?? new Date(now()),
    // What the server is told follows from `settled`, which says it with its reason.
    ack() {},
    nak() {},
    term() {},
    working() {},
  };
  await invoker.process(delivery);
  if (!settled) throw new Error(`invoke: the delivery was not settled; logged: ${JSON.stringify(logs.lines.at(-1))}`);
  const { outcome, settlement } = settled;
  return {
    outcome,
    settlement,
    output: outcome.kind === "success" ? (outcome.value as Awaited<Result>) : undefined,
    published: publisher.published,
    logs: logs.lines,
  };
}

/**
 * The function as a host would run it: the options written as a `functions.yaml` entry and
 * compiled by the host's own compiler (built-in defaults, durable and dead-letter names,
 * ack wait), so the test kit cannot drift from it. Its `config` is handed over as given.
 */
function compiledFunction(options: InvokeOptions<unknown>, extra: Record<string, unknown> = {}): CompiledFunction {
  const retry = options.retry ?? {};
  const entry = {
    ...extra,
    name: options.function ?? "test",
    handler: "handler.ts",
    stream: options.stream ?? "TEST",
    subjects: [options.subject ?? "test"],
    concurrency: 1,
    isolation: "none",
    ...(options.timeout !== undefined ? { timeout: duration(options.timeout) } : {}),
    retry: {
      ...(retry.maxAttempts !== undefined ? { maxAttempts: retry.maxAttempts } : {}),
      ...(retry.backoff !== undefined ? { backoff: retry.backoff } : {}),
      ...(retry.initialDelay !== undefined ? { initialDelay: duration(retry.initialDelay) } : {}),
      ...(retry.maxDelay !== undefined ? { maxDelay: duration(retry.maxDelay) } : {}),
      // Deterministic unless the test brings its own randomness.
      jitter: options.random !== undefined && (retry.jitter ?? BUILT_IN_DEFAULTS.retry.jitter),
    },
    ...(options.output ? { output: options.output } : {}),
    ...(options.deadLetter ? { deadLetter: options.deadLetter } : {}),
    ...(options.encoding ? { encoding: options.encoding } : {}),
  };
  const parsed = functionEntrySchema.safeParse(entry, parseOptions);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new TypeError(`invoke: ${optionName(issue.path)}: ${issue.message}`);
  }
  const { compiled, issues } = compileFunction(parsed.data, 0, {}, process.cwd());
  if (issues.length > 0) throw new TypeError(`invoke: ${optionName(issues[0]!.path.slice(2))}: ${issues[0]!.message}`);
  return { ...compiled, config: (options.config ?? {}) as Record<string, unknown> };
}

/** A duration option as `functions.yaml` writes it: a number is milliseconds. */
function duration(value: number | string): string {
  return typeof value === "number" ? `${value}ms` : value;
}

/** The option an entry's key came from: `function` for `name`, the rest by their own names. */
function optionName(path: readonly PropertyKey[]): string {
  const keys = path.map(String);
  if (keys[0] === "name") return "function";
  if (keys[0] === "subjects") return "subject";
  return keys.join(".");
}

const utf8 = new TextEncoder();

/** The message's bytes: as given, or the event encoded as a publisher would for `encoding`. */
function payload(event: unknown, encoding: Encoding): Uint8Array {
  if (event instanceof Uint8Array) return event;
  if (encoding === "text" && typeof event === "string") return utf8.encode(event);
  if (encoding === "json") {
    const json = JSON.stringify(event);
    if (json !== undefined) return utf8.encode(json);
  }
  const expected = encoding === "json" ? "a JSON value or bytes" : encoding === "text" ? "a string or bytes" : "bytes (a Uint8Array)";
  throw new TypeError(`invoke: the event for encoding ${encoding} must be ${expected}, got ${typeof event}`);
}

/** The host's named breakers, with the ones named open tripped on first use (with the handler's options). */
class TestBreakers extends BreakerRegistry {
  readonly #open: Set<string>;

  constructor(open: readonly string[], now: () => number) {
    super(undefined, now);
    this.#open = new Set(open);
  }

  override get(name: string, options: BreakerOptions | undefined, fn: string): NamedBreaker {
    const breaker = super.get(name, options, fn);
    if (this.#open.delete(name)) {
      while (breaker.state !== "open") {
        breaker.tryAcquire();
        breaker.failure();
      }
    }
    return breaker;
  }
}

/** Options of {@link invokeBatch}: {@link InvokeOptions} for the whole batch, and each message's own facts. */
export interface InvokeBatchOptions<Config = Record<string, unknown>>
  extends Omit<InvokeOptions<Config>, "seq" | "deliveryCount" | "headers" | "output" | "steps"> {
  /** Each message's `seq` (default its index + 1), `deliveryCount` (default 1) and `headers`, by index. */
  messages?: readonly { seq?: number; deliveryCount?: number; headers?: Record<string, string> }[];
}

/** What jetfn would do with each message of the batch. */
export interface InvokeBatchResult {
  /** Per event, in the order given: how it ended (`success` for an acked one) and its one terminal action. */
  messages: { outcome: Outcome; settlement: Settled }[];
  /** Every publish, in order: the handler's `ctx.publish`es and the dead letters. */
  published: PublishedMessage[];
  /** Every log line at any level. */
  logs: LogLine[];
}

/**
 * Runs a batch function (`defineBatchFunction`) on one batch of `events` and tells what
 * jetfn would do with each message: the host's own batch invoker (schema, the handler's
 * `ack`/`retry`/`fail`, the batch's end, settlement and dead letters), without a broker.
 *
 * ```ts
 * const { messages } = await invokeBatch(loadWarehouse, [{ orderId: "a" }, { orderId: 7 }]);
 * expect(messages[1]!.settlement).toMatchObject({ action: "dead-letter", reason: "invalid" });
 * ```
 */
export async function invokeBatch<Event, Config = Record<string, unknown>>(
  handler: BatchFunctionDefinition<Event, Config> | { readonly default: BatchFunctionDefinition<Event, Config> },
  events: readonly unknown[],
  options: InvokeBatchOptions<Config> = {},
): Promise<InvokeBatchResult> {
  const exported = typeof handler === "object" && handler !== null && "default" in handler ? handler.default : handler;
  const loaded = handlerOf(exported);
  if (!loaded || loaded === "bad-schema" || !loaded.batch) {
    throw new TypeError(
      loaded === "bad-schema"
        ? "invokeBatch: the handler's schema has no safeParse() or ~standard"
        : "invokeBatch: expected defineBatchFunction({ handler })",
    );
  }
  if (events.length === 0) throw new TypeError("invokeBatch: expected at least one event");
  const fn = compiledFunction(options, { batch: { maxSize: Math.min(10_000, events.length) } });
  const startedAt = Date.now();
  const now = options.now ?? (() => startedAt);
  const logs = new LogCapture();
  const log = createLogger("trace", logs).child({ function: fn.name });
  const publisher = new CapturingPublisher(options.publish);
  metrics ??= new Metrics();
  const host = new HostContext(fn, log, publisher, new TestBreakers(options.openBreakers ?? [], now));
  const deliveries: Delivery[] = events.map((event, index) => {
    const own = options.messages?.[index] ?? {};
    return {
      data: payload(event, fn.encoding),
      subject: options.subject ?? "test",
      headers: { ...own.headers },
      stream: fn.stream,
      seq: own.seq ?? index + 1,
      deliveryCount: own.deliveryCount ?? 1,
      timestamp: options.timestamp ?? new Date(now()),
      ack() {},
      nak() {},
      term() {},
      working() {},
    };
  });
  const settled = new Map<Delivery, { outcome: Outcome; settlement: Settled }>();
  const invoker = new BatchInvoker({
    host,
    executor: new InProcessExecutor(loaded, host),
    admission: new Admission(undefined, undefined, now),
    metrics,
    stop: NO_SHUTDOWN,
    heartbeats: Heartbeats.forAckWait(fn.ackWaitMs),
    brokerRetry: BROKER_TRIES,
    ...(options.random ? { random: options.random } : {}),
    onSettled: (outcome, settlement, delivery) => settled.set(delivery, { outcome, settlement }),
  });
  await invoker.process(deliveries);
  const messages = deliveries.map((delivery, index) => {
    const found = settled.get(delivery);
    if (!found) throw new Error(`invokeBatch: message ${index} was not settled; logged: ${JSON.stringify(logs.lines.at(-1))}`);
    return found;
  });
  return { messages, published: publisher.published, logs: logs.lines };
}

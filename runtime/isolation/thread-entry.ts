/**
 * The entry of a worker thread. In `serve` mode it loads one function's bundle and runs its
 * invocations as the host's thread sends them; in `check` mode it loads every handler once
 * to check its shape, answers, and ends. Handler code runs only in threads like this one.
 */
import { parentPort, workerData } from "node:worker_threads";
import { type Context, context, propagation, ROOT_CONTEXT, type Span, type SpanContext, trace } from "@opentelemetry/api";
import { type LoadedHandler, loadHandler } from "../bundle/module.ts";
import { type EncodedType, encode, encodedType, type ValidationError } from "../codec/codec.ts";
import type { CompiledFunction } from "../config/types.ts";
import type { BatchSettle } from "../contracts/batch.ts";
import { errorMessage } from "../contracts/error-message.ts";
import { runBatchHandler } from "../invoke/batch-runner.ts";
import { BaseContext } from "../invoke/function-context.ts";
import { runHandler } from "../invoke/handler-runner.ts";
import type { StepBegin, StepEnd } from "../invoke/steps.ts";
import { BreakerOpenError } from "../sdk/errors.ts";
import type { Breaker, BreakerOptions, Logger, PublishAck, PublishOptions } from "../sdk/types.ts";
import { installedTracing, installTracing } from "../telemetry/tracing.ts";
import { type Batch, BatchPort, bytesIn } from "./batch-port.ts";
import {
  type BreakerAdmission,
  type Call,
  type CheckInit,
  type FromThread,
  fromWire,
  type LogLevel,
  type Run,
  type RunWire,
  type SpanOp,
  type StepStart,
  type ThreadInit,
  type ToThread,
  type TraceCarrier,
  toWire,
  type WireOutcome,
  type WireSettle,
} from "./protocol.ts";

const port = parentPort!;
const init = workerData as ThreadInit | CheckInit;
process.setSourceMapsEnabled(true);

const outbox = new BatchPort<FromThread>(port);

function post(message: FromThread): void {
  outbox.send(message);
}

/**
 * Bytes of the handler's (a return value, a publish's data) for the next batch: copied now
 * when the handler could still change them, else read when the batch leaves.
 */
function outgoing(value: unknown, encoded: Uint8Array): ReturnType<typeof outbox.bytes> {
  return outbox.bytes(value instanceof Uint8Array ? new Uint8Array(encoded) : encoded);
}

/** What loadHandler needs to know of the function. */
function asFunction(h: { function: string; exportName: string; handlerPath: string; batch?: true }): CompiledFunction {
  // A batch function's export is checked against its `batch:` (any non-empty value says it has one).
  return { name: h.function, exportName: h.exportName, handlerPath: h.handlerPath, ...(h.batch ? { batch: {} } : {}) } as CompiledFunction;
}

if (init.mode === "check") {
  const results: { function: string; error?: string }[] = [];
  for (const handler of init.handlers) {
    try {
      await loadHandler(asFunction(handler), handler.bundleFile, init.rootDir);
      results.push({ function: handler.function });
    } catch (error) {
      results.push({ function: handler.function, error: (error as Error).message });
    }
  }
  port.postMessage({ t: "checked", results });
} else {
  await serve(init);
}

/** One invocation as the thread knows it. */
interface Running {
  controller?: AbortController;
  abortReason?: Error;
}

async function serve(init: ThreadInit): Promise<void> {
  const levels: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
  // The host already said where traces go; the thread only reports export failures.
  const hostLog = threadLogger(0, {}, levels, Math.max(init.logLevel, levels.warn));
  await installTracing(init.tracing, hostLog as never);
  const loaded: LoadedHandler = await loadHandler(asFunction(init), init.bundleFile, init.rootDir);
  const running = new Map<number, Running>();
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: unknown) => void }>();
  let nextReq = 1;

  const call = <T>(id: number, request: Call): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const req = nextReq++;
      pending.set(req, { resolve: resolve as (value: unknown) => void, reject });
      post({ t: "call", req, id, call: request });
    });

  // Runs sent to wait for a slot (the host keeps a few more than `slots` here, so a slot
  // that frees starts the next one without a trip to the host and back). After a failure
  // they are held until the host says `go`: the failure may open the function's breaker,
  // and then they are released instead of run.
  const waiting: Run[] = [];
  let busy = 0;
  let held = false;

  port.on("message", (batch: Batch<ToThread>) => {
    for (const message of batch.m) {
      if (!Array.isArray(message)) {
        const other = message as Exclude<ToThread, RunWire>;
        if (other.t === "batch") void invokeBatch(other, batch);
        else receive(other);
      } else if ((message as RunWire)[0] === 0) start(runOf(message as RunWire, batch));
      else if (!held && busy < init.slots) start(runOf(message as RunWire, batch), true);
      else waiting.push(runOf(message as RunWire, batch));
    }
  });

  function start(run: Run, waited = false): void {
    busy++;
    if (waited) post({ t: "started", id: run.id });
    void invoke(run).finally(next);
  }

  function next(): void {
    busy--;
    drain();
  }

  function drain(): void {
    while (!held && busy < init.slots && waiting.length > 0) start(waiting.shift()!, true);
  }

  function runOf(wire: RunWire, batch: Batch<ToThread>): Run {
    const [, id, subject, stream, seq, deliveryCount, timestamp, data, headers, traceparent, tracestate, replayOf] = wire;
    const bytes = bytesIn(batch, data);
    return {
      id,
      subject,
      stream,
      seq,
      deliveryCount,
      timestamp,
      // A handler given raw bytes gets its own copy, not a view of the whole batch.
      data: init.encoding === "binary" ? bytes.slice() : bytes,
      headers: headers || {},
      trace: traceparent ? { traceparent, ...(tracestate ? { tracestate } : {}) } : {},
      ...(replayOf ? { replayOf: { stream: replayOf[0], seq: replayOf[1] } } : {}),
    };
  }

  function receive(message: Exclude<ToThread, RunWire | { t: "batch" }>): void {
    switch (message.t) {
      case "abort": {
        const invocation = running.get(message.id);
        post({ t: "aborted", id: message.id });
        const at = waiting.findIndex((run) => run.id === message.id);
        if (at >= 0) {
          // Cut off before it started (shutdown): it never runs; the host has settled it.
          waiting.splice(at, 1);
          post({ t: "done", id: message.id, outcome: { kind: "error", error: { message: "aborted before it started" } } });
        }
        if (!invocation) break;
        invocation.abortReason = fromWire(message.reason) as Error;
        invocation.controller?.abort(invocation.abortReason);
        break;
      }
      case "reply": {
        const waiting = pending.get(message.req);
        pending.delete(message.req);
        if (message.error) waiting?.reject(fromWire(message.error));
        else waiting?.resolve(message.value);
        break;
      }
      case "ping":
        post({ t: "pong" });
        break;
      case "release":
        for (const run of waiting.splice(0)) post({ t: "done", id: run.id, outcome: { kind: "released" } });
        break;
      case "go":
        held = false;
        drain();
        break;
      case "close":
        void installedTracing()!
          .then((tracing) => tracing.flush())
          .finally(() => {
            outbox.flush();
            process.exit(0);
          });
        break;
    }
  }
  // Now, not with the next batch: a handler that spins from its first event would keep the
  // batch from ever leaving, and the host starts invocations' deadlines on "ready".
  post({ t: "ready" });
  outbox.flush();

  async function invoke(message: Run): Promise<void> {
    const { id } = message;
    const state: Running = {};
    running.set(id, state);
    let outcome: WireOutcome | undefined;
    let output: ReturnType<typeof outbox.bytes> | 0 = 0;
    let type: EncodedType = "json";
    const parent = remoteParent(message.trace);
    const ran = await runHandler(
      loaded,
      message.data,
      init.encoding,
      () => new ThreadContext(message, state, trace.getSpanContext(parent)),
      (handler, event, ctx) => context.with(parent, () => handler(event, ctx)),
    );
    switch (ran.kind) {
      case "undecodable":
        outcome = { kind: "undecodable", message: ran.error.message };
        break;
      case "invalid":
        outcome = { kind: "invalid", issues: (ran.error as ValidationError).issues };
        break;
      case "error":
        outcome = { kind: "error", error: toWire(ran.error, errorMessage) };
        break;
      case "success":
        try {
          if ((init.output || message.seq === 0) && ran.value !== undefined) {
            output = outgoing(ran.value, encode(ran.value));
            type = encodedType(ran.value);
          }
        } catch (error) {
          // A return value that cannot be encoded is the handler's failure.
          outcome = { kind: "error", error: toWire(error, errorMessage) };
        }
    }
    running.delete(id);
    if (outcome) held = true;
    post(outcome ? { t: "done", id, outcome } : type === "json" ? [1, id, output] : [1, id, output, type]);
  }

  /** A batch (`batch:`): each message settled first is reported as it happens, then the batch's end. */
  async function invokeBatch(message: Extract<ToThread, { t: "batch" }>, arena: Batch<ToThread>): Promise<void> {
    const { id } = message;
    const state: Running = {};
    running.set(id, state);
    const items = message.items.map(([subject, seq, deliveryCount, timestamp, data, headers]) => {
      const bytes = bytesIn(arena, data);
      // A handler given raw bytes gets its own copy, not a view of the whole batch.
      return { subject, seq, deliveryCount, timestamp, headers: headers || {}, data: init.encoding === "binary" ? bytes.slice() : bytes };
    });
    const first = items[0]!;
    // What the thread's ctx is made from: the batch's id and trace; its one-event facts are not shown.
    const run: Run = {
      id,
      subject: first.subject,
      stream: "",
      seq: first.seq,
      deliveryCount: first.deliveryCount,
      timestamp: first.timestamp,
      data: new Uint8Array(0),
      headers: {},
      trace: message.trace,
    };
    const parent = remoteParent(message.trace);
    const ran = await runBatchHandler(
      loaded,
      items,
      init.encoding,
      (index, how) => post({ t: "settle", id, index, how: wireSettle(how) }),
      () => new ThreadContext(run, state, trace.getSpanContext(parent)),
      (call) => context.with(parent, call),
    );
    running.delete(id);
    post(ran.kind === "success" ? [1, id, 0] : { t: "done", id, outcome: { kind: "error", error: toWire(ran.error, errorMessage) } });
  }

  /** The delivery's span, as the parent of what the handler does (its own spans, its publishes). */
  function remoteParent(carrier: TraceCarrier): Context {
    return carrier.traceparent ? propagation.extract(ROOT_CONTEXT, carrier) : ROOT_CONTEXT;
  }

  /** `ctx` in a handler thread: what lives in the host (publish, breakers, the span, log lines) is served by messages to it. */
  class ThreadContext extends BaseContext {
    readonly #message: Run;
    readonly #state: Running;
    readonly #spanContext: SpanContext | undefined;
    #span?: Span;
    #log?: Logger;
    #breakers?: Map<string, Breaker>;

    constructor(message: Run, state: Running, spanContext: SpanContext | undefined) {
      super(init.function, init.config as Record<string, unknown>, message);
      this.#message = message;
      this.#state = state;
      this.#spanContext = spanContext;
    }

    get timestamp(): Date {
      return new Date(this.#message.timestamp);
    }

    get signal(): AbortSignal {
      const state = this.#state;
      if (!state.controller) {
        state.controller = new AbortController();
        if (state.abortReason) state.controller.abort(state.abortReason);
      }
      return state.controller.signal;
    }

    get span(): Span {
      this.#span ??= remoteSpan(this.#message.id, this.#spanContext);
      return this.#span;
    }

    get log(): Logger {
      this.#log ??= threadLogger(this.#message.id, {}, levels, init.logLevel);
      return this.#log;
    }

    protected beat(): void {
      post({ t: "working", id: this.#message.id });
    }

    protected namedBreaker(name: string, options?: BreakerOptions): Breaker {
      this.#breakers ??= new Map();
      let breaker = this.#breakers.get(name);
      if (!breaker) {
        breaker = remoteBreaker(this.#message.id, name, options, call);
        this.#breakers.set(name, breaker);
      }
      return breaker;
    }

    /** The trace context of each step claimed and not ended: its function runs under it. */
    #steps?: Map<number, TraceCarrier | undefined>;

    protected async beginStep(step: string): Promise<StepBegin> {
      const start = await call<StepStart>(this.#message.id, { op: "step", name: step, ...this.#activeParent() });
      if (start.kind === "run") (this.#steps ??= new Map()).set(start.claim, start.trace);
      return start;
    }

    protected async inStep<T>(claim: number, fn: () => T | Promise<T>): Promise<T> {
      const carrier = this.#steps?.get(claim);
      return carrier?.traceparent ? context.with(propagation.extract(ROOT_CONTEXT, carrier), fn) : fn();
    }

    protected async endStep(claim: number, end: StepEnd): Promise<void> {
      this.#steps?.delete(claim);
      await call<void>(this.#message.id, { op: "step-end", claim, end });
    }

    /** The handler's active span, when it made one: the parent of what it asks the host to do. */
    #activeParent(): { parent?: TraceCarrier } {
      const active = trace.getSpanContext(context.active());
      const parentCarrier: TraceCarrier = {};
      if (active && active.spanId !== this.#spanContext?.spanId) propagation.inject(context.active(), parentCarrier);
      return parentCarrier.traceparent ? { parent: parentCarrier } : {};
    }

    protected sendPublish(subject: string, data: unknown, options?: PublishOptions): Promise<PublishAck> {
      const bytes = outgoing(data, encode(data));
      const active = trace.getSpanContext(context.active());
      const parentCarrier: TraceCarrier = {};
      if (active && active.spanId !== this.#spanContext?.spanId) propagation.inject(context.active(), parentCarrier);
      return call<PublishAck>(this.#message.id, {
        op: "publish",
        subject,
        data: bytes,
        ...(options?.headers ? { headers: { ...options.headers } } : {}),
        ...(options?.msgId ? { msgId: options.msgId } : {}),
        ...(options?.delay !== undefined ? { delay: options.delay } : {}),
        ...(options?.at !== undefined ? { at: options.at instanceof Date ? options.at.getTime() : options.at } : {}),
        ...(parentCarrier.traceparent ? { parent: parentCarrier } : {}),
      });
    }
  }
}

/**
 * `ctx.breaker(name)` in a thread: the breaker itself lives in the host, shared by every
 * thread; each call asks it for admission and reports how it ended. `state` is as of the
 * last call.
 */
function remoteBreaker(
  id: number,
  name: string,
  options: BreakerOptions | undefined,
  call: <T>(id: number, request: Call) => Promise<T>,
): Breaker {
  let state: Breaker["state"] = "closed";
  return {
    name,
    get state() {
      return state;
    },
    async execute<T>(fn: () => T | Promise<T>): Promise<T> {
      const admission = await call<BreakerAdmission>(id, { op: "breaker", name, ...(options ? { options } : {}) });
      state = admission.state;
      if (!admission.admitted) throw new BreakerOpenError(name, admission.retryAfterMs);
      let result: T;
      try {
        result = await fn();
      } catch (error) {
        post({ t: "breaker-result", id, name, ok: false });
        throw error;
      }
      post({ t: "breaker-result", id, name, ok: true });
      return result;
    },
  };
}

/**
 * `ctx.span` in a thread: the delivery's span lives in the host; what the handler sets on
 * it is sent there. Spans the handler starts itself are recorded and exported by the
 * thread's own tracer, as children of this one.
 */
function remoteSpan(id: number, spanContext: SpanContext | undefined): Span {
  const context = spanContext ?? trace.wrapSpanContext({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 }).spanContext();
  const send = (op: SpanOp, args: unknown[]): void => {
    try {
      post({ t: "span", id, op, args: structuredClone(args) });
    } catch {
      // an attribute value that cannot be cloned is dropped, as OpenTelemetry drops invalid ones
    }
  };
  const span: Span = {
    spanContext: () => context,
    setAttribute: (key, value) => (send("setAttribute", [key, value]), span),
    setAttributes: (attributes) => (send("setAttributes", [attributes]), span),
    addEvent: (name, attributes) => (
      send("addEvent", [name, typeof attributes === "object" && !(attributes instanceof Date) ? attributes : undefined]), span
    ),
    addLink: () => span,
    addLinks: () => span,
    setStatus: (status) => (send("setStatus", [status]), span),
    updateName: (name) => (send("updateName", [name]), span),
    end: () => {},
    isRecording: () => (context.traceFlags & 1) === 1,
    recordException: (exception) => send("recordException", [toWire(exception, errorMessage)]),
  };
  return span;
}

/** `ctx.log` in a thread: each line is written by the host's logger, with the delivery's fields. */
function threadLogger(id: number, bindings: Record<string, unknown>, levels: Record<LogLevel, number>, threshold: number): Logger {
  const at =
    (level: LogLevel) =>
    (first: string | object, message?: string): void => {
      if (levels[level] < threshold) return;
      const fields = typeof first === "string" ? {} : (first as Record<string, unknown>);
      const msg = typeof first === "string" ? first : message;
      post({ t: "log", id, level, bindings, fields: cloneable(fields), ...(msg !== undefined ? { msg } : {}) });
    };
  return {
    trace: at("trace"),
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    fatal: at("fatal"),
    child: (more) => threadLogger(id, { ...bindings, ...cloneable(more) }, levels, threshold),
  };
}

/** `fields` as they can cross to the host: as they are, or (a function, a socket in them) as JSON says them. */
function cloneable(fields: Record<string, unknown>): Record<string, unknown> {
  try {
    return structuredClone(fields);
  } catch {
    return jsonSafe(fields);
  }
}

function jsonSafe(fields: Record<string, unknown>): Record<string, unknown> {
  try {
    return JSON.parse(
      JSON.stringify(fields, (_key, value: unknown) => (value instanceof Error ? { message: value.message, stack: value.stack } : value)),
    ) as Record<string, unknown>;
  } catch {
    return { unserializable: true };
  }
}

/** A batch message's settle, taken apart for the trip to the host. */
function wireSettle(how: BatchSettle): WireSettle {
  switch (how.kind) {
    case "ack":
    case "retry":
      return how;
    case "fail":
      return { kind: "fail", error: toWire(how.error, errorMessage) };
    case "undecodable":
      return { kind: "undecodable", message: how.error.message };
    case "invalid":
      return { kind: "invalid", issues: (how.error as ValidationError).issues };
  }
}

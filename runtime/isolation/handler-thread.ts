import { performance } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import { type Attributes, propagation, ROOT_CONTEXT, type SpanStatus } from "@opentelemetry/api";
import { Encoded, ValidationError } from "../codec/codec.ts";
import type { BatchSettle } from "../contracts/batch.ts";
import { errorMessage } from "../contracts/error-message.ts";
import type { Outcome, ThreadEndReason } from "../contracts/outcome.ts";
import type { BatchInvocation, Invocation } from "../invoke/executor.ts";
import type { HostContext } from "../invoke/host-context.ts";
import type { CutOff, Deadline } from "../invoke/run.ts";
import type { NamedBreaker } from "../resilience/breaker-registry.ts";
import type { Logger } from "../telemetry/logger.ts";
import { type Batch, BatchPort, bytesIn } from "./batch-port.ts";
import {
  type BatchItemWire,
  type BreakerAdmission,
  type Call,
  type DoneWire,
  type FromThread,
  fromWire,
  type StepStart,
  type ThreadInit,
  type ToThread,
  type TraceCarrier,
  toWire,
  type WireOutcome,
  type WireSettle,
} from "./protocol.ts";

/** How a thread ended, when it was not asked to. */
export interface ThreadEnd {
  readonly reason: ThreadEndReason;
  readonly error: string;
}

export interface HandlerThreadOptions {
  /** The worker entry (`thread-entry.ts`, bundled). */
  readonly script: string;
  readonly init: ThreadInit;
  readonly memoryLimitMb: number;
  readonly host: HostContext;
  /** How long an aborted invocation's thread has to show it is still yielding. */
  readonly graceMs: number;
  /** The thread ended: `end` is set when it was not asked to (a crash, a hard timeout). */
  readonly onEnd: (thread: HandlerThread, end?: ThreadEnd) => void;
  /**
   * No invocation the invoker waits for is left (only, perhaps, aborted ones that still run:
   * closing the thread ends them).
   */
  readonly onIdle: (thread: HandlerThread) => void;
}

/** One invocation sent to the thread and not reported done. */
interface Pending {
  readonly invocation: Invocation;
  readonly resolve: (outcome: Outcome) => void;
  /** Its deadline passed (or shutdown cut it off): the invoker settled it already. */
  abandoned: boolean;
  /** Ends the thread unless it shows, within the grace, that it is still yielding. */
  killTimer?: NodeJS.Timeout;
  /** The thread read its abort: it yields. */
  acknowledged?: boolean;
  /** Named breakers that admitted a call of it which has not reported back. */
  readonly admitted: NamedBreaker[];
  log?: Logger;
  /** Sent to wait for a free slot in the thread: its deadline starts when the thread starts it. */
  waits?: Deadline;
  /** A synchronous call or a batch: it has slots of its own, and never waits in the thread. */
  readonly call: boolean;
}

/** A thread that has not been heard from for this long while busy is reported stuck. */
const STUCK_AFTER_MS = 2500;
const PING_EVERY_MS = 1000;
/** A thread that has not loaded its handler by then is ended (a module that never finishes loading). */
const START_LIMIT_MS = 30_000;

/**
 * One worker thread running one function's handler, seen from the host's thread: it sends
 * invocations, serves the handler's calls (publish, breakers, logs, span updates), and
 * turns the thread's end into outcomes. A thread that does not answer an abort within the
 * grace is not yielding (a sync loop): it is terminated, its invocation has already timed
 * out, and the others running on it are handed back as bystanders.
 */
export class HandlerThread {
  readonly #worker: Worker;
  readonly #outbox: BatchPort<ToThread>;
  readonly #options: HandlerThreadOptions;
  readonly #pending = new Map<number, Pending>();
  /** Steps claimed for the thread's handlers and not ended (see `ctx.step`). */
  readonly #claims = new Set<number>();
  #nextId = 1;
  /** Deliveries sent and not settled (calls have slots of their own): beyond `slots`, they wait in the thread. */
  #deliveries = 0;
  /** A `go` for the thread, sent once this turn's failures are settled (see thread-entry.ts, `held`). */
  #go?: NodeJS.Immediate;
  /** How many of #pending are abandoned. */
  #abandoned = 0;
  #ready = false;
  /** Deadlines of invocations sent before the thread was ready: they start when it is. */
  #starting: Deadline[] = [];
  #startTimer?: NodeJS.Timeout;
  #closing = false;
  /** Set when the host terminates the thread: the reason it gives. */
  #terminated?: ThreadEnd;
  #error?: unknown;
  #lastHeard = performance.now();
  #pinger?: NodeJS.Timeout;
  readonly ended: Promise<void>;
  /** Resolves once the thread loaded the handler and can run (never, if it ends first: see {@link ended}). */
  readonly started: Promise<void>;
  #started!: () => void;

  constructor(options: HandlerThreadOptions) {
    this.#options = options;
    this.#worker = new Worker(options.script, {
      workerData: options.init,
      resourceLimits: { maxOldGenerationSizeMb: options.memoryLimitMb },
      name: `jetfn:${options.init.function}`,
    });
    this.#outbox = new BatchPort(this.#worker);
    this.#worker.on("message", (batch: Batch<FromThread>) => {
      this.#lastHeard = performance.now();
      for (const message of batch.m) {
        if (Array.isArray(message)) this.#succeeded(message as DoneWire, batch);
        else this.#receive(message as Exclude<FromThread, DoneWire>, batch);
      }
    });
    this.#worker.on("error", (error) => {
      this.#error ??= error;
    });
    this.ended = new Promise((resolve) => this.#worker.once("exit", (code) => resolve(this.#exited(code))));
    this.started = new Promise((resolve) => (this.#started = resolve));
    this.#startTimer = setTimeout(() => {
      const seconds = START_LIMIT_MS / 1000;
      this.#terminate({ reason: "load", error: `loading the handler in its worker thread did not finish within ${seconds}s` });
    }, START_LIMIT_MS).unref();
  }

  /** Invocations running in the thread that the invoker still waits for. */
  get inflight(): number {
    return this.#pending.size - this.#abandoned;
  }

  /** Invocations whose deadline passed while their code still runs (it ignores its signal). */
  get abandoned(): number {
    return this.#abandoned;
  }

  /**
   * An invocation was aborted and the thread has not shown it read the abort yet: it may be
   * stuck, and about to be terminated. New invocations are better sent elsewhere.
   */
  get suspect(): boolean {
    for (const pending of this.#pending.values()) if (pending.killTimer && pending.abandoned && !pending.acknowledged) return true;
    return false;
  }

  /** Busy, and silent for longer than it should be: a handler is not yielding. */
  get stuck(): boolean {
    return this.#pending.size > 0 && performance.now() - this.#lastHeard > STUCK_AFTER_MS;
  }

  get ready(): boolean {
    return this.#ready;
  }

  run(invocation: Invocation, deadline: Deadline): Promise<Outcome> {
    const id = this.#nextId++;
    const { delivery } = invocation;
    const call = invocation.call === true;
    // More deliveries than slots (the pull loop keeps a few extra): this one waits in the
    // thread, and the timeout counts the handler's run, not the wait.
    const waits = !call && this.#deliveries >= this.#options.init.slots;
    if (!call) this.#deliveries++;
    return new Promise<Outcome>((resolve) => {
      this.#pending.set(id, { invocation, resolve, abandoned: false, admitted: [], call, ...(waits ? { waits: deadline } : {}) });
      deadline.onAbort((reason, cause) => this.#abort(id, reason, cause));
      // The timeout counts the handler's run, not the thread's start (nor, for one that
      // waits, its wait: its deadline starts when the thread says `started`).
      if (!waits) {
        if (this.#ready) deadline.start();
        else this.#starting.push(deadline);
      }
      const carrier: { traceparent?: string; tracestate?: string } = {};
      propagation.inject(invocation.context, carrier);
      let headers: Readonly<Record<string, string>> | 0 = 0;
      for (const _ in delivery.headers) {
        headers = delivery.headers;
        break;
      }
      const run = [
        waits ? 2 : 0,
        id,
        delivery.subject,
        delivery.stream,
        delivery.seq,
        delivery.deliveryCount,
        delivery.timestamp.getTime(),
        this.#outbox.bytes(delivery.data),
        headers,
        carrier.traceparent ?? 0,
        carrier.tracestate ?? 0,
      ] as const;
      const of = delivery.replayOf;
      this.#post(of ? [...run, [of.stream, of.seq]] : run);
      if (this.#pending.size === 1) this.#watch();
    });
  }

  /** Runs a batch (`batch:`) at once: the host's batch invoker has given it one of the function's slots. */
  runBatch(invocation: BatchInvocation, deadline: Deadline): Promise<Outcome> {
    const id = this.#nextId++;
    return new Promise<Outcome>((resolve) => {
      this.#pending.set(id, { invocation, resolve, abandoned: false, admitted: [], call: true });
      deadline.onAbort((reason, cause) => this.#abort(id, reason, cause));
      if (this.#ready) deadline.start();
      else this.#starting.push(deadline);
      const trace: TraceCarrier = {};
      propagation.inject(invocation.context, trace);
      const items = invocation.batch.map((delivery): BatchItemWire => {
        let headers: Readonly<Record<string, string>> | 0 = 0;
        for (const _ in delivery.headers) {
          headers = delivery.headers;
          break;
        }
        const data = this.#outbox.bytes(delivery.data);
        return [delivery.subject, delivery.seq, delivery.deliveryCount, delivery.timestamp.getTime(), data, headers];
      });
      this.#post({ t: "batch", id, items, trace });
      if (this.#pending.size === 1) this.#watch();
    });
  }

  /** Hands back every delivery still waiting in the thread for a slot (the function's gate closed). */
  releaseWaiting(): void {
    for (const pending of this.#pending.values()) {
      if (pending.waits) return this.#post({ t: "release" });
    }
  }

  /** Asks the thread to flush and exit; terminates it when it is busy or does not. */
  async close(): Promise<void> {
    if (this.#closing) return this.ended;
    this.#closing = true;
    if (this.#pending.size > 0) {
      await this.#worker.terminate();
      return this.ended;
    }
    this.#post({ t: "close" });
    const timer = setTimeout(() => void this.#worker.terminate(), 5000);
    await this.ended;
    clearTimeout(timer);
  }

  #post(message: ToThread): void {
    this.#outbox.send(message);
  }

  /** While busy, ping: a thread that answers nothing is reported stuck in `/functions`. */
  #watch(): void {
    this.#lastHeard = performance.now();
    this.#pinger ??= setInterval(() => {
      if (this.#pending.size === 0) {
        clearInterval(this.#pinger);
        this.#pinger = undefined;
      } else {
        this.#post({ t: "ping" });
      }
    }, PING_EVERY_MS).unref();
  }

  #abort(id: number, reason: unknown, cause: CutOff): void {
    const pending = this.#pending.get(id);
    if (!pending || pending.abandoned) return;
    pending.abandoned = true;
    this.#abandoned++;
    if (cause === "revoked") {
      // Another replica runs this event now: it must not go on here for a moment longer,
      // even if it would read its abort. The others running here are bystanders.
      const error = `ended: the lease of the partition of an event running in it (seq ${pending.invocation.delivery.seq}) was lost`;
      return this.#terminate({ reason: "lease-lost", error });
    }
    this.#post({ t: "abort", id, reason: toWire(reason, errorMessage) });
    pending.killTimer = setTimeout(() => {
      const error = `terminated: an invocation (seq ${pending.invocation.delivery.seq}) ignored its abort and did not yield for ${this.#options.graceMs}ms`;
      this.#terminate({ reason: "timeout", error });
    }, this.#options.graceMs);
    pending.killTimer.unref();
    if (this.inflight === 0) this.#options.onIdle(this);
  }

  #terminate(end: ThreadEnd): void {
    if (this.#terminated || this.#closing) return;
    this.#terminated = end;
    void this.#worker.terminate();
  }

  #receive(message: Exclude<FromThread, DoneWire>, batch: Batch<FromThread>): void {
    switch (message.t) {
      case "ready":
        this.#ready = true;
        this.#started();
        clearTimeout(this.#startTimer);
        for (const deadline of this.#starting) deadline.start();
        this.#starting = [];
        return;
      case "done":
        return this.#done(message.id, message.outcome);
      case "started": {
        const pending = this.#pending.get(message.id);
        pending?.waits?.start();
        if (pending) pending.waits = undefined;
        return;
      }
      case "aborted": {
        // It read the abort: the thread yields, so it is left to finish in its own time.
        const pending = this.#pending.get(message.id);
        if (pending) {
          pending.acknowledged = true;
          clearTimeout(pending.killTimer);
          if (this.inflight === 0) this.#options.onIdle(this);
        }
        return;
      }
      case "working": {
        const pending = this.#pending.get(message.id);
        if (pending && !pending.abandoned) pending.invocation.working();
        return;
      }
      case "settle": {
        const pending = this.#pending.get(message.id);
        if (pending && !pending.abandoned) (pending.invocation as BatchInvocation).settle(message.index, settleOf(message.how));
        return;
      }
      case "call":
        void this.#serve(message.req, message.id, message.call, batch);
        return;
      case "breaker-result": {
        const admitted = this.#pending.get(message.id)?.admitted;
        const at = admitted?.findIndex((breaker) => breaker.name === message.name) ?? -1;
        if (at < 0) return;
        const [breaker] = admitted!.splice(at, 1);
        if (message.ok) breaker!.success();
        else breaker!.failure();
        return;
      }
      case "log":
        return this.#log(message);
      case "span":
        return this.#span(message);
      case "pong":
        return;
    }
  }

  #succeeded([, id, value, type]: DoneWire, batch: Batch<FromThread>): void {
    this.#settled(id, { kind: "success", value: value ? new Encoded(bytesIn(batch, value), type ?? "json") : undefined });
  }

  #done(id: number, wire: WireOutcome): void {
    this.#settled(id, outcomeOf(wire));
    // The thread holds its waiting runs after a failure: once the invoker has counted it
    // (a breaker that opens releases them first), they may start.
    this.#go ??= setImmediate(() => {
      this.#go = undefined;
      this.#post({ t: "go" });
    });
  }

  #settled(id: number, outcome: Outcome): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    if (!pending.call) this.#deliveries--;
    clearTimeout(pending.killTimer);
    if (pending.abandoned) this.#abandoned--;
    else pending.resolve(outcome);
    if (this.inflight === 0) this.#options.onIdle(this);
  }

  async #serve(req: number, id: number, call: Call, batch: Batch<FromThread>): Promise<void> {
    const pending = this.#pending.get(id);
    try {
      if (call.op === "step-end") {
        // A claimed step is recorded however late it ends: its invocation may have timed out meanwhile.
        this.#claims.delete(call.claim);
        await this.#options.host.steps.end(call.claim, call.end);
        this.#post({ t: "reply", req });
        return;
      }
      if (!pending) throw new Error("the invocation has ended");
      let value: unknown;
      if (call.op === "step") {
        value = await this.#beginStep(pending.invocation, call.name, call.parent);
      } else if (call.op === "publish") {
        const parent = call.parent ? propagation.extract(ROOT_CONTEXT, call.parent) : pending.invocation.context;
        const options = {
          ...(call.headers ? { headers: call.headers } : {}),
          ...(call.msgId ? { msgId: call.msgId } : {}),
          ...(call.delay !== undefined ? { delay: call.delay } : {}),
          ...(call.at !== undefined ? { at: call.at } : {}),
        };
        value = await this.#options.host.publish(pending.invocation, call.subject, bytesIn(batch, call.data), options, parent);
      } else {
        const breaker = this.#options.host.breaker(pending.invocation, call.name, call.options);
        const admitted = breaker.tryAcquire();
        if (admitted) pending.admitted.push(breaker);
        value = { admitted, state: breaker.state, retryAfterMs: breaker.remainingOpenMs() || 1000 } satisfies BreakerAdmission;
      }
      this.#post({ t: "reply", req, value });
    } catch (error) {
      this.#post({ t: "reply", req, error: toWire(error, errorMessage) });
    }
  }

  /** `ctx.step` in the thread: the host claims it (or replays it); the thread runs it under the step's span. */
  async #beginStep(invocation: Invocation, name: string, parentCarrier?: TraceCarrier): Promise<StepStart> {
    const parent = parentCarrier ? propagation.extract(ROOT_CONTEXT, parentCarrier) : undefined;
    const begin = await this.#options.host.beginStep(invocation, name, parent);
    if (begin.kind !== "run") return begin;
    this.#claims.add(begin.claim);
    const trace: TraceCarrier = {};
    const stepContext = this.#options.host.steps.contextOf(begin.claim);
    if (stepContext) propagation.inject(stepContext, trace);
    return trace.traceparent ? { ...begin, trace } : begin;
  }

  #log(message: Extract<FromThread, { t: "log" }>): void {
    const pending = this.#pending.get(message.id);
    let log = this.#options.host.log;
    if (pending) log = pending.log ??= this.#options.host.logger(pending.invocation);
    if (Object.keys(message.bindings).length > 0) log = log.child(message.bindings);
    log[message.level](message.fields, message.msg);
  }

  #span(message: Extract<FromThread, { t: "span" }>): void {
    const span = this.#pending.get(message.id)?.invocation.span;
    if (!span) return;
    const [first, second] = message.args;
    switch (message.op) {
      case "setAttribute":
        span.setAttribute(String(first), second as never);
        break;
      case "setAttributes":
        span.setAttributes(first as Attributes);
        break;
      case "addEvent":
        span.addEvent(String(first), second as Attributes | undefined);
        break;
      case "setStatus":
        span.setStatus(first as SpanStatus);
        break;
      case "updateName":
        span.updateName(String(first));
        break;
      case "recordException":
        span.recordException(fromWire(first as never) as Error);
        break;
    }
  }

  #exited(code: number): void {
    clearInterval(this.#pinger);
    if (this.#go) clearImmediate(this.#go);
    clearTimeout(this.#startTimer);
    const end = this.#terminated ?? (this.#closing ? undefined : this.#crash(code));
    // Steps its handlers were running will never report: their claims are released, so the
    // next attempt runs them at once rather than after their lease.
    for (const claim of this.#claims) this.#options.host.steps.abandon(claim);
    this.#claims.clear();
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.killTimer);
      // A call let through a breaker never reported back: count it as failed.
      for (const breaker of pending.admitted) breaker.failure();
      if (pending.abandoned) continue;
      if (end?.reason === "timeout" || end?.reason === "lease-lost") pending.resolve({ kind: "aborted", cause: "bystander" });
      else pending.resolve({ kind: "crashed", reason: end?.reason ?? "exit", error: end?.error ?? "its worker thread was stopped" });
    }
    this.#pending.clear();
    this.#abandoned = 0;
    this.#options.onEnd(this, end);
  }

  /** Why a thread ended that nobody asked to end. */
  #crash(code: number): ThreadEnd {
    const error = this.#error;
    if ((error as { code?: string } | undefined)?.code === "ERR_WORKER_OUT_OF_MEMORY") {
      return { reason: "out-of-memory", error: `its worker thread ran out of memory (memoryLimit ${this.#options.memoryLimitMb}MB)` };
    }
    if (error !== undefined && !this.#ready) {
      return { reason: "load", error: `loading the handler in its worker thread failed: ${errorMessage(error)}` };
    }
    if (error !== undefined) {
      return {
        reason: "uncaught",
        error: `handler code threw outside any invocation (an uncaught exception or unhandled rejection), ending its worker thread: ${errorMessage(error)}`,
      };
    }
    return { reason: "exit", error: `handler code ended its worker thread with process.exit(${code})` };
  }
}

function outcomeOf(wire: WireOutcome): Outcome {
  switch (wire.kind) {
    case "error":
      return { kind: "error", error: fromWire(wire.error) };
    case "undecodable":
      return { kind: "undecodable", error: new Error(wire.message) };
    case "invalid":
      return { kind: "invalid", error: new ValidationError(wire.issues) };
    case "released":
      return { kind: "aborted", cause: "released" };
  }
}

function settleOf(wire: WireSettle): BatchSettle {
  switch (wire.kind) {
    case "ack":
    case "retry":
      return wire;
    case "fail":
      return { kind: "fail", error: fromWire(wire.error) };
    case "undecodable":
      return { kind: "undecodable", error: new Error(wire.message) };
    case "invalid":
      return { kind: "invalid", error: new ValidationError(wire.issues) };
  }
}

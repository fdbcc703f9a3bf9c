import { INVALID_SPAN_CONTEXT, type Link, propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { CompiledFunction, CompiledRetry } from "../config/types.ts";
import type { BatchSettle } from "../contracts/batch.ts";
import type { Delivery } from "../contracts/delivery.ts";
import { errorMessage } from "../contracts/error-message.ts";
import type { Outcome } from "../contracts/outcome.ts";
import { isRetryAfterError, RetryAfterError } from "../sdk/errors.ts";
import type { FunctionMeters, Metrics } from "../telemetry/metrics.ts";
import { type Admission, NO_BREAKERS } from "./admission.ts";
import { AttemptLedger } from "./attempts.ts";
import type { BatchInvocation, Executor } from "./executor.ts";
import type { Heartbeats } from "./heartbeats.ts";
import type { HostContext } from "./host-context.ts";
import { invocationOutcome, spendsAttempt } from "./outcome-table.ts";
import { runWithTimeout } from "./run.ts";
import { type Settled, Settler } from "./settler.ts";

const tracer = trace.getTracer("jetfn");
const ACKED: Outcome = Object.freeze({ kind: "success", value: undefined });

const headerGetter = {
  keys: (carrier: Readonly<Record<string, string>>) => Object.keys(carrier),
  get: (carrier: Readonly<Record<string, string>>, key: string) => carrier[key],
};

export interface BatchInvokerDeps {
  readonly host: HostContext;
  readonly executor: Executor;
  readonly admission: Admission;
  readonly metrics: Metrics;
  /** Aborts when shutdown's grace period is over: running batches are cut off. */
  readonly stop: AbortSignal;
  /** The function's heartbeats: every message of a batch is kept alive through them until it is settled. */
  readonly heartbeats: Heartbeats;
  readonly random?: () => number;
  /** Between tries of a dead letter the broker refused (see `SettlerOptions.retry`). */
  readonly brokerRetry?: CompiledRetry;
  /** Told each settled message's outcome and settlement. */
  readonly onSettled?: (outcome: Outcome, settlement: Settled, delivery: Delivery) => void;
  /**
   * Told when the handler said an API wants no calls for `delayMs` (a `RetryAfterError`
   * thrown for the batch, or given to a message's `fail()`), with the messages it settled
   * so: a rate limit holds the fleet off. A message's `retry({ delay })` is its own business.
   */
  readonly onRetryAfter?: (delayMs: number, messages: readonly Delivery[]) => void;
}

/** One batch on its way: which of its messages are settled, and the settlements under way. */
interface Running {
  readonly messages: readonly Delivery[];
  readonly attempts: readonly number[];
  readonly settled: boolean[];
  readonly settling: Promise<void>[];
  /** The batch's span, as the settler sees it for each message: its trace ids, nothing recorded on it. */
  readonly messageSpan: Span;
  readonly invocation: BatchInvocation;
  breakerOpenMs?: number;
}

/**
 * Runs a batch function's batches (`batch:`), each to the settlement of every message:
 *
 * - a message delivered more often than `retry.maxAttempts` allows is dead-lettered before
 *   the batch and not handed over (the poison guard);
 * - at most `concurrency` batches run at once; the others wait for a slot, heartbeated;
 * - the batch runs in one CONSUMER span, linked to each message's incoming trace context,
 *   under the function's `timeout`, every unsettled message heartbeated meanwhile;
 * - a message the handler settles (`ack`, `retry`, `fail`), or the runner finds invalid,
 *   is settled at once, the first settle winning; when the batch ends, the rest are
 *   settled by its outcome: acked on success, else retried by their own attempts (or
 *   dead-lettered, each alone with its own bytes and headers) as one event would be.
 *
 * Each message's outcome is counted in `jetfn_invocations_total` as one event's is; the
 * batch's duration in `jetfn_invocation_duration_seconds`, its size in `jetfn_batch_size`.
 * Never throws.
 */
export class BatchInvoker {
  readonly #fn: CompiledFunction;
  readonly #deps: BatchInvokerDeps;
  readonly #settler: Settler;
  readonly #attempts = new AttemptLedger();
  readonly #meters: FunctionMeters;
  readonly #sizes: { observe(size: number): void };
  /** Batches running; at most the function's `concurrency`. */
  #running = 0;
  /** Batches waiting for a slot, first come first served. */
  readonly #waiting: (() => void)[] = [];

  constructor(deps: BatchInvokerDeps) {
    this.#fn = deps.host.fn;
    this.#deps = deps;
    this.#meters = deps.metrics.registerFunction(this.#fn.name);
    this.#sizes = deps.metrics.batchSize.labels({ function: this.#fn.name });
    this.#settler = new Settler(this.#fn, deps.host.publisher, deps.metrics, deps.host.log, deps.random, {
      stop: deps.stop,
      waits: deps.admission,
      heartbeats: deps.heartbeats,
      ...(deps.brokerRetry ? { retry: deps.brokerRetry } : {}),
    });
  }

  /** Batches running now. */
  get inflight(): number {
    return this.#running;
  }

  /** Runs one batch to the settlement of each of its messages. */
  async process(batch: readonly Delivery[]): Promise<void> {
    const meters = this.#meters;
    meters.received += batch.length;
    this.#sizes.observe(batch.length);
    // Kept alive from now until each is settled: waiting for a slot, running, settling.
    const settled = new Set<Delivery>();
    const unbeat = this.#deps.heartbeats.add(() => {
      for (const delivery of batch) {
        if (settled.has(delivery)) continue;
        delivery.working();
        meters.acks.working++;
      }
    });
    try {
      await this.#process(batch, (delivery) => settled.add(delivery));
    } catch (error) {
      // Only a bug in the host gets here; the unsettled messages come back after their ack wait.
      this.#deps.host.log.error({ err: error, batch_size: batch.length }, "batch processing failed");
    } finally {
      unbeat();
    }
  }

  async #process(batch: readonly Delivery[], done: (delivery: Delivery) => void): Promise<void> {
    const { admission } = this.#deps;
    const poisoned: Promise<void>[] = [];
    const runnable: Delivery[] = [];
    const attempts: number[] = [];
    for (const delivery of batch) {
      const attempt = this.#attempts.attempt(delivery);
      if (attempt > this.#fn.retry.maxAttempts) {
        const span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
        const outcome: Outcome = { kind: "exhausted", attempts: attempt };
        poisoned.push(this.#settle(delivery, attempt, outcome, span, undefined, undefined, done));
      } else {
        runnable.push(delivery);
        attempts.push(attempt);
      }
    }
    if (runnable.length === 0) {
      await Promise.all(poisoned);
      return;
    }
    await this.#slot();
    try {
      if (!admission.tryAdmit("delivery")) {
        // Paused, or its breaker open: handed back unrun, no attempt spent.
        const delayMs = admission.closedForMs() || 1000;
        for (const delivery of runnable) {
          delivery.nak(delayMs);
          this.#attempts.spare(delivery);
          this.#meters.acks.nak++;
          done(delivery);
        }
      } else {
        await this.#run(runnable, attempts, done);
      }
    } finally {
      this.#release();
    }
    await Promise.all(poisoned);
  }

  async #run(messages: readonly Delivery[], attempts: readonly number[], done: (delivery: Delivery) => void): Promise<void> {
    const fn = this.#fn;
    const { executor, admission, stop } = this.#deps;
    const meters = this.#meters;
    const span = tracer.startSpan(
      "process batch",
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "process",
          "messaging.consumer.group.name": fn.durable,
          "messaging.batch.message_count": messages.length,
          "jetfn.function": fn.name,
          "jetfn.batch.first_seq": messages[0]!.seq,
        },
        links: linksOf(messages),
      },
      ROOT_CONTEXT,
    );
    const context = trace.setSpan(ROOT_CONTEXT, span);
    const running: Running = {
      messages,
      attempts,
      settled: messages.map(() => false),
      settling: [],
      messageSpan: trace.wrapSpanContext(span.spanContext()),
      invocation: {
        delivery: messages[0]!,
        span,
        context,
        batch: messages,
        working: () => {
          for (let i = 0; i < messages.length; i++) {
            if (running.settled[i]) continue;
            messages[i]!.working();
            meters.acks.working++;
          }
        },
        settle: (index, how) => {
          const outcome = outcomeOf(how);
          if (this.#settleOne(running, index, outcome, done) && how.kind === "fail") this.#retryAfter(outcome, [messages[index]!]);
        },
      },
    };
    meters.inflight++;
    try {
      const started = performance.now();
      const runBatch = executor.runBatch?.bind(executor);
      const outcome: Outcome = runBatch
        ? await runWithTimeout((deadline) => runBatch(running.invocation, deadline), fn.timeoutMs, stop)
        : { kind: "error", error: new Error(`the executor of ${fn.name} cannot run batches`) };
      meters.duration.observe((performance.now() - started) / 1000);
      running.breakerOpenMs = admission.finish(outcome, running.invocation.breakers ?? NO_BREAKERS);
      span.setAttribute("jetfn.outcome", outcome.kind);
      if (outcome.kind === "error") span.recordException(outcome.error instanceof Error ? outcome.error : errorMessage(outcome.error));
      if (outcome.kind !== "success") span.setStatus({ code: SpanStatusCode.ERROR, message: describe(outcome) });
      // What the handler left unsettled is settled by how the batch ended.
      const rest = outcome.kind === "success" ? ACKED : outcome;
      const unsettled = messages.filter((_, i) => this.#settleOne(running, i, rest, done));
      this.#retryAfter(rest, unsettled);
      await Promise.all(running.settling);
    } finally {
      meters.inflight--;
      span.end();
    }
  }

  /** A `RetryAfterError` the handler threw or failed messages with: told to `onRetryAfter`. */
  #retryAfter(outcome: Outcome, messages: readonly Delivery[]): void {
    if (messages.length === 0 || outcome.kind !== "error" || !isRetryAfterError(outcome.error)) return;
    this.#deps.onRetryAfter?.(outcome.error.delayMs, messages);
  }

  /** Hands a message back unrun, to come again in `delayMs`, without spending an attempt (a rate limit's key waits). */
  handBack(delivery: Delivery, delayMs: number): void {
    delivery.nak(delayMs);
    this.#attempts.spare(delivery);
    this.#meters.acks.nak++;
  }

  /**
   * Settles message `index` of a running batch, unless it was settled before (the first
   * settle wins); says whether it settled it now.
   */
  #settleOne(running: Running, index: number, outcome: Outcome, done: (delivery: Delivery) => void): boolean {
    if (index < 0 || index >= running.messages.length || running.settled[index]) return false;
    running.settled[index] = true;
    const delivery = running.messages[index]!;
    const counted = invocationOutcome(outcome);
    if (counted) this.#meters.invoked(counted);
    running.settling.push(
      this.#settle(
        delivery,
        running.attempts[index]!,
        outcome,
        running.messageSpan,
        running.invocation.context,
        running.breakerOpenMs,
        done,
      ),
    );
    return true;
  }

  /** One message's settlement, as one event's would be: exactly one of ack, nak or dead letter. */
  async #settle(
    delivery: Delivery,
    attempt: number,
    outcome: Outcome,
    span: Span,
    context: BatchInvocation["context"] | undefined,
    breakerOpenMs: number | undefined,
    done: (delivery: Delivery) => void,
  ): Promise<void> {
    try {
      const settlement = await this.#settler.settle({
        delivery,
        attempt,
        outcome,
        span,
        context: context ?? trace.setSpan(ROOT_CONTEXT, span),
        ...(breakerOpenMs !== undefined ? { breakerOpenMs } : {}),
      });
      this.#deps.onSettled?.(outcome, settlement, delivery);
      if (settlement.action !== "nak") this.#attempts.forget(delivery);
      else if (settlement.spared || !spendsAttempt(outcome, breakerOpenMs)) this.#attempts.spare(delivery);
      this.#meters.endToEnd.observe(Math.max(0, Date.now() - delivery.timestamp.getTime()) / 1000);
    } catch (error) {
      this.#deps.host.log.error({ err: error, subject: delivery.subject, seq: delivery.seq }, "settling a batch message failed");
    } finally {
      done(delivery);
    }
  }

  /** Waits for one of the function's `concurrency` slots. */
  #slot(): Promise<void> {
    if (this.#running < this.#fn.concurrency) {
      this.#running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Frees a slot: the next waiting batch takes it. */
  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#running--;
  }
}

/** What a message's settle before the batch's end means for it, as one event's outcome. */
function outcomeOf(how: BatchSettle): Outcome {
  switch (how.kind) {
    case "ack":
      return ACKED;
    case "retry":
      return {
        kind: "error",
        error:
          how.delayMs !== undefined
            ? new RetryAfterError(`retried by the batch handler after ${how.delayMs}ms`, how.delayMs)
            : new Error("retried by the batch handler"),
      };
    case "fail":
      return { kind: "error", error: how.error };
    case "undecodable":
    case "invalid":
      return { kind: how.kind, error: how.error };
  }
}

/** A link to each message's incoming trace, for those that carry one. */
function linksOf(messages: readonly Delivery[]): Link[] {
  const links: Link[] = [];
  for (const message of messages) {
    let traced = false;
    for (const key in message.headers) if (key.toLowerCase() === "traceparent") traced = true;
    if (!traced) continue;
    const context = trace.getSpanContext(propagation.extract(ROOT_CONTEXT, message.headers, headerGetter));
    if (context) links.push({ context, attributes: { "messaging.message.id": String(message.seq) } });
  }
  return links;
}

function describe(outcome: Outcome): string {
  switch (outcome.kind) {
    case "error":
      return errorMessage(outcome.error);
    case "timeout":
      return `timed out after ${outcome.timeoutMs}ms`;
    case "crashed":
      return outcome.error;
    default:
      return outcome.kind;
  }
}

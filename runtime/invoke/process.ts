import { context, propagation, ROOT_CONTEXT, SpanKind, trace, type Context, type Span } from "@opentelemetry/api";
import type { CompiledFunction } from "../config/types.ts";
import type { CircuitBreaker } from "../resilience/breaker.ts";
import type { BreakerRegistry, NamedBreaker } from "../resilience/breakers.ts";
import { isBreakerOpenError, isNonRetryableError } from "../sdk/errors.ts";
import type { FunctionContext } from "../sdk/types.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { decode, encode, validate } from "./decode.ts";
import type { LoadedHandler } from "../bundle/load.ts";
import type { Delivery, Publisher } from "../contracts/delivery.ts";
import { Heartbeat } from "./heartbeat.ts";
import { runWithTimeout } from "./run.ts";
import { errorMessage, invocationOutcome, type Outcome } from "./settle.ts";
import { Settler, traceFields } from "./settler.ts";
import { tracedPublish } from "./traced-publisher.ts";

const tracer = trace.getTracer("jetfn");
const headerGetter = {
  keys: (carrier: Readonly<Record<string, string>>) => Object.keys(carrier),
  get: (carrier: Readonly<Record<string, string>>, key: string) => carrier[key],
};

export interface InvokerDeps {
  readonly publisher: Publisher;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Aborts when shutdown's grace period is over: in-flight handlers are cut off. */
  readonly stop: AbortSignal;
  /** The host's named breakers, behind `ctx.breaker(name)`. */
  readonly breakers: BreakerRegistry;
  readonly random?: () => number;
}

/** What one invocation carries besides its delivery. */
interface Invocation {
  readonly delivery: Delivery;
  readonly span: Span;
  /** The delivery's trace context (its CONSUMER span): the parent of what it publishes. */
  readonly context: Context;
  /** Named breakers the handler went through: while one is open, a failure is held. */
  readonly breakers: Set<NamedBreaker>;
}

/**
 * Runs one function's deliveries: decode, validate, invoke with timeout and heartbeats
 * inside a CONSUMER span, then settle exactly once. Never throws: every failure becomes a
 * settlement.
 */
export class Invoker {
  readonly #fn: CompiledFunction;
  readonly #loaded: LoadedHandler;
  readonly #deps: InvokerDeps;
  readonly #log: Logger;
  readonly #settler: Settler;
  readonly #breaker?: CircuitBreaker;
  readonly #pause: (ms: number) => void;
  #inflight = 0;

  /**
   * @param options.breaker the function's breaker (`breaker:` in yaml). The pull loop
   *   admits each delivery through it; the invoker reports how each admitted one ended.
   * @param options.pause stops the function's pulling for a while: called when the handler
   *   met an open named breaker, so the backlog waits in the stream rather than failing fast.
   */
  constructor(
    fn: CompiledFunction,
    loaded: LoadedHandler,
    deps: InvokerDeps,
    options: { breaker?: CircuitBreaker; pause?: (ms: number) => void } = {},
  ) {
    this.#fn = fn;
    this.#loaded = loaded;
    this.#deps = deps;
    this.#breaker = options.breaker;
    this.#pause = options.pause ?? (() => {});
    this.#log = deps.logger.child({ function: fn.name });
    this.#settler = new Settler(fn, deps.publisher, deps.metrics, this.#log, deps.random);
    deps.metrics.registerFunction(fn.name);
  }

  /** Invocations running now. */
  get inflight(): number {
    return this.#inflight;
  }

  async process(delivery: Delivery): Promise<void> {
    const fn = this.#fn;
    const { metrics } = this.#deps;
    const labels = { function: fn.name };
    metrics.received.inc(labels);
    metrics.inflight.inc(labels);
    this.#inflight++;
    const parent = propagation.extract(ROOT_CONTEXT, delivery.headers, headerGetter);
    const span = tracer.startSpan(
      `process ${delivery.subject}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "process",
          "messaging.destination.name": delivery.subject,
          "messaging.consumer.group.name": fn.durable,
          "messaging.message.id": String(delivery.seq),
          "messaging.message.body.size": delivery.data.length,
          "jetfn.function": fn.name,
          "jetfn.delivery_count": delivery.deliveryCount,
        },
      },
      parent,
    );
    const invocation: Invocation = { delivery, span, context: trace.setSpan(parent, span), breakers: new Set() };
    const started = performance.now();
    try {
      const outcome = await context.with(invocation.context, () => this.#invoke(invocation));
      metrics.duration.observe(labels, (performance.now() - started) / 1000);
      this.#recordOnBreaker(outcome);
      if (outcome.kind === "error" && isBreakerOpenError(outcome.error)) this.#pause(outcome.error.retryAfterMs);
      if (outcome.kind === "error") span.recordException(outcome.error instanceof Error ? outcome.error : errorMessage(outcome.error));
      span.setAttribute("jetfn.outcome", outcome.kind);
      await this.#settler.settle({ delivery, outcome, span, context: invocation.context, holdMs: this.#holdMs(invocation.breakers) });
      metrics.invocations.inc({ ...labels, outcome: invocationOutcome(outcome) });
      metrics.endToEnd.observe(labels, Math.max(0, Date.now() - delivery.timestamp.getTime()) / 1000);
    } catch (error) {
      // Only a bug in the host gets here; the message will be redelivered after ack wait.
      this.#log.error({ err: error, subject: delivery.subject, seq: delivery.seq }, "delivery processing failed");
    } finally {
      span.end();
      this.#inflight--;
      metrics.inflight.dec(labels);
    }
  }

  async #invoke(invocation: Invocation): Promise<Outcome> {
    const fn = this.#fn;
    const decoded = decode(invocation.delivery.data, fn.encoding);
    if (!decoded.ok) return { kind: "undecodable", error: decoded.error };
    let event = decoded.value;
    if (this.#loaded.schema) {
      const valid = await validate(this.#loaded.schema, event);
      if (!valid.ok) return { kind: "invalid", error: valid.error };
      event = valid.value;
    }
    const working = (): void => {
      invocation.delivery.working();
      this.#deps.metrics.acks.inc({ function: fn.name, action: "working" });
    };
    // Only an invocation allowed to outlive half the ack wait needs heartbeats.
    const heartbeat = fn.timeoutMs > fn.ackWaitMs / 2 ? new Heartbeat(fn.ackWaitMs, working) : undefined;
    try {
      return await runWithTimeout(
        (signal) => this.#loaded.handler(event, this.#context(invocation, signal, working)),
        fn.timeoutMs,
        this.#deps.stop,
      );
    } finally {
      heartbeat?.stop();
    }
  }

  #context(invocation: Invocation, signal: () => AbortSignal, working: () => void): FunctionContext {
    const { delivery, span } = invocation;
    const fn = this.#fn;
    const { breakers, publisher } = this.#deps;
    const parentLog = this.#log;
    let log: Logger | undefined;
    return {
      function: fn.name,
      subject: delivery.subject,
      headers: delivery.headers,
      seq: delivery.seq,
      deliveryCount: delivery.deliveryCount,
      timestamp: delivery.timestamp,
      get signal() {
        return signal();
      },
      span,
      config: fn.config as Record<string, unknown>,
      // Built on first use: most handlers never log.
      get log(): Logger {
        log ??= parentLog.child({
          subject: delivery.subject,
          seq: delivery.seq,
          delivery_count: delivery.deliveryCount,
          ...traceFields(span),
        });
        return log;
      },
      working,
      breaker: (name, options) => {
        const breaker = breakers.get(name, options, fn.name);
        invocation.breakers.add(breaker);
        return breaker;
      },
      publish: (subject, data, options) =>
        tracedPublish(publisher, invocation.context, subject, encode(data), options?.headers, options?.msgId),
    };
  }

  /**
   * Tells the function's breaker how an admitted delivery ended. Only handler errors and
   * timeouts speak of the dependency; a NonRetryableError, bad input, an open named
   * breaker or shutdown say nothing about it.
   */
  #recordOnBreaker(outcome: Outcome): void {
    const breaker = this.#breaker;
    if (!breaker) return;
    if (outcome.kind === "success") breaker.success();
    else if (outcome.kind === "timeout") breaker.failure();
    else if (outcome.kind === "error" && !isNonRetryableError(outcome.error) && !isBreakerOpenError(outcome.error)) breaker.failure();
    else breaker.release();
  }

  /**
   * While a breaker this delivery went through is open (the function's, or a named one
   * the handler used): how long to hold a failed message instead of spending its attempts.
   */
  #holdMs(usedBreakers: ReadonlySet<NamedBreaker>): number | undefined {
    let hold: number | undefined;
    for (const breaker of [this.#breaker, ...usedBreakers]) {
      if (breaker?.state === "open") hold = Math.max(hold ?? 0, breaker.remainingOpenMs());
    }
    return hold;
  }
}

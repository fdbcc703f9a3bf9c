import { context, isSpanContextValid, propagation, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import type { CompiledFunction } from "../config/types.ts";
import type { FunctionContext, PublishOptions } from "../sdk/types.ts";
import { backoffDelay } from "../resilience/backoff.ts";
import type { CircuitBreaker } from "../resilience/breaker.ts";
import type { BreakerRegistry, NamedBreaker } from "../resilience/breakers.ts";
import { isBreakerOpenError, isNonRetryableError } from "../sdk/errors.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { decode, encode, validate } from "./decode.ts";
import type { Delivery, LoadedHandler, Publisher } from "./delivery.ts";
import { Heartbeat } from "./heartbeat.ts";
import { runWithTimeout } from "./run.ts";
import { errorMessage, invocationOutcome, settle, type Outcome, type Settlement } from "./settle.ts";

const tracer = trace.getTracer("jetfn");
/** Room kept for an output's headers (Nats-Msg-Id, traceparent, tracestate). */
const HEADER_ALLOWANCE = 512;
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

/**
 * Runs one function's deliveries: decode, validate, invoke with timeout and heartbeats,
 * then settle exactly once. Never throws: every failure becomes a settlement.
 */
export class Invoker {
  readonly #fn: CompiledFunction;
  readonly #loaded: LoadedHandler;
  readonly #deps: InvokerDeps;
  readonly #log: Logger;
  readonly #breaker?: CircuitBreaker;
  #inflight = 0;

  /**
   * @param breaker the function's breaker (`breaker:` in yaml). The pull loop admits each
   *   delivery through it; the invoker reports how each admitted one ended.
   */
  constructor(fn: CompiledFunction, loaded: LoadedHandler, deps: InvokerDeps, breaker?: CircuitBreaker) {
    this.#fn = fn;
    this.#loaded = loaded;
    this.#deps = deps;
    this.#breaker = breaker;
    this.#log = deps.logger.child({ function: fn.name });
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
    const parent = propagation.extract(context.active(), delivery.headers, headerGetter);
    const span = tracer.startSpan(
      `process ${delivery.subject}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "nats",
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
    const started = performance.now();
    try {
      const usedBreakers = new Set<NamedBreaker>();
      const outcome = await context.with(trace.setSpan(parent, span), () => this.#invoke(delivery, span, usedBreakers));
      metrics.duration.observe(labels, (performance.now() - started) / 1000);
      this.#recordOnBreaker(outcome);
      const settlement = await this.#settle(delivery, outcome, span, this.#holdMs(usedBreakers));
      metrics.invocations.inc({ ...labels, outcome: invocationOutcome(outcome) });
      metrics.endToEnd.observe(labels, Math.max(0, Date.now() - delivery.timestamp.getTime()) / 1000);
      if (outcome.kind !== "success") {
        span.setStatus({ code: SpanStatusCode.ERROR, message: settlementError(settlement) });
        if (outcome.kind === "error") span.recordException(toException(outcome.error));
      }
      span.setAttribute("jetfn.settlement", settlement.action);
    } catch (error) {
      // Only a bug in the host gets here; the message will be redelivered after ack wait.
      this.#log.error({ err: error, subject: delivery.subject, seq: delivery.seq }, "delivery processing failed");
    } finally {
      span.end();
      this.#inflight--;
      metrics.inflight.dec(labels);
    }
  }

  async #invoke(delivery: Delivery, span: Span, usedBreakers: Set<NamedBreaker>): Promise<Outcome> {
    const fn = this.#fn;
    const decoded = decode(delivery.data, fn.encoding);
    if (!decoded.ok) return { kind: "undecodable", error: decoded.error };
    let event = decoded.value;
    if (this.#loaded.schema) {
      const valid = await validate(this.#loaded.schema, event);
      if (!valid.ok) return { kind: "invalid", error: valid.error };
      event = valid.value;
    }
    const working = (): void => {
      delivery.working();
      this.#deps.metrics.acks.inc({ function: fn.name, action: "working" });
    };
    const heartbeat = new Heartbeat(fn.ackWaitMs, working);
    try {
      return await runWithTimeout(
        (signal) => this.#loaded.handler(event, this.#context(delivery, signal, span, working, usedBreakers)),
        fn.timeoutMs,
        this.#deps.stop,
      );
    } finally {
      heartbeat.stop();
    }
  }

  #context(
    delivery: Delivery,
    signal: AbortSignal,
    span: Span,
    working: () => void,
    usedBreakers: Set<NamedBreaker>,
  ): FunctionContext {
    const fn = this.#fn;
    const parentLog = this.#log;
    let log: Logger | undefined;
    return {
      function: fn.name,
      subject: delivery.subject,
      headers: delivery.headers,
      seq: delivery.seq,
      deliveryCount: delivery.deliveryCount,
      timestamp: delivery.timestamp,
      signal,
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
        const breaker = this.#deps.breakers.get(name, options, fn.name);
        usedBreakers.add(breaker);
        return breaker;
      },
      publish: (subject: string, data: unknown, options?: PublishOptions) =>
        this.#publish(subject, encode(data), options?.headers ?? {}, options?.msgId),
    };
  }

  /** Publishes with a PRODUCER span and `traceparent` injected into the headers. */
  #publish(subject: string, data: Uint8Array, headers: Record<string, string>, msgId?: string) {
    return tracer.startActiveSpan(`send ${subject}`, { kind: SpanKind.PRODUCER }, async (span) => {
      try {
        const carrier = { ...headers };
        propagation.inject(context.active(), carrier);
        return await this.#deps.publisher.publish(subject, data, { headers: carrier, msgId });
      } catch (error) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
        throw error;
      } finally {
        span.end();
      }
    });
  }

  /** Carries out the settlement; a failed publish turns it into a nak, never a drop. */
  async #settle(delivery: Delivery, outcome: Outcome, span: Span, holdMs: number | undefined): Promise<Settlement> {
    const fn = this.#fn;
    const { metrics } = this.#deps;
    let settlement = settle(outcome, delivery.deliveryCount, fn.retry, this.#deps.random, holdMs);
    if (settlement.action === "ack" && fn.output && settlement.output !== undefined) {
      settlement = await this.#publishOutput(delivery, fn.output, settlement.output, holdMs);
    }
    if (settlement.action === "dead-letter") {
      settlement = await this.#deadLetter(delivery, settlement);
    }
    switch (settlement.action) {
      case "ack":
        delivery.ack();
        break;
      case "nak":
        delivery.nak(settlement.delayMs);
        break;
      case "dead-letter":
        delivery.term();
        metrics.deadLetters.inc({ function: fn.name, reason: settlement.reason });
        break;
    }
    const action = settlement.action === "dead-letter" ? "term" : settlement.action;
    metrics.acks.inc({ function: fn.name, action });
    if (outcome.kind !== "success" || settlement.action !== "ack") this.#logFailure(delivery, outcome, settlement, span);
    return settlement;
  }

  async #publishOutput(delivery: Delivery, subject: string, value: unknown, holdMs: number | undefined): Promise<Settlement> {
    let data: Uint8Array;
    try {
      data = encode(value);
    } catch (error) {
      // A return value that cannot be encoded is the handler's failure, retried like one.
      return settle({ kind: "error", error }, delivery.deliveryCount, this.#fn.retry, this.#deps.random, holdMs);
    }
    const limit = this.#deps.publisher.maxPayload - HEADER_ALLOWANCE;
    if (data.length > limit) {
      // Retrying cannot shrink it: the server would refuse every publish of it.
      const error = `output of ${data.length} bytes exceeds the server's max_payload (${this.#deps.publisher.maxPayload} bytes, headers included)`;
      return { action: "dead-letter", reason: "non-retryable", error };
    }
    try {
      await this.#publish(subject, data, {}, `${this.#fn.name}:${delivery.stream}:${delivery.seq}`);
      return { action: "ack", output: value };
    } catch (error) {
      return this.#retryLater(delivery, `output publish to ${subject} failed: ${errorMessage(error)}`);
    }
  }

  async #deadLetter(
    delivery: Delivery,
    settlement: Extract<Settlement, { action: "dead-letter" }>,
  ): Promise<Settlement> {
    const fn = this.#fn;
    const headers: Record<string, string> = {
      "Jetfn-Function": fn.name,
      "Jetfn-Subject": delivery.subject,
      "Jetfn-Stream": delivery.stream,
      "Jetfn-Stream-Seq": String(delivery.seq),
      "Jetfn-Deliveries": String(delivery.deliveryCount),
      "Jetfn-Error": settlement.error,
      "Jetfn-Reason": settlement.reason,
      "Jetfn-Failed-At": new Date().toISOString(),
    };
    const traceparent = delivery.headers["traceparent"];
    if (traceparent) headers["traceparent"] = traceparent;
    try {
      // The original bytes, never a re-serialisation; the id makes a redelivered
      // dead-letter (its term lost) land once.
      await this.#publish(fn.deadLetter, delivery.data, headers, `dlq:${fn.name}:${delivery.stream}:${delivery.seq}`);
      return settlement;
    } catch (error) {
      return this.#retryLater(delivery, `dead-letter publish to ${fn.deadLetter} failed: ${errorMessage(error)}`);
    }
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

  /** A publish of ours failed: the broker is the problem, so retry with backoff and never drop. */
  #retryLater(delivery: Delivery, error: string): Settlement {
    return { action: "nak", delayMs: backoffDelay(this.#fn.retry, delivery.deliveryCount, this.#deps.random), error };
  }

  #logFailure(delivery: Delivery, outcome: Outcome, settlement: Settlement, span: Span): void {
    this.#log.warn(
      {
        subject: delivery.subject,
        seq: delivery.seq,
        delivery_count: delivery.deliveryCount,
        ...traceFields(span),
        outcome: outcome.kind,
        action: settlement.action,
        ...(settlement.action === "nak" ? { delay_ms: settlement.delayMs } : {}),
        ...(settlement.action === "dead-letter" ? { reason: settlement.reason, dead_letter: this.#fn.deadLetter } : {}),
        error: settlementError(settlement),
        // Source maps make this point at the handler's own .ts lines.
        ...(outcome.kind === "error" && outcome.error instanceof Error ? { stack: outcome.error.stack } : {}),
      },
      "delivery failed",
    );
  }
}

/** trace_id and span_id for log lines, when tracing is on (the no-op span's ids are zeros). */
function traceFields(span: Span): { trace_id?: string; span_id?: string } {
  const context = span.spanContext();
  return isSpanContextValid(context) ? { trace_id: context.traceId, span_id: context.spanId } : {};
}

function settlementError(settlement: Settlement): string | undefined {
  return settlement.action === "ack" ? undefined : settlement.error;
}

function toException(error: unknown): Error | string {
  return error instanceof Error ? error : errorMessage(error);
}

import { isSpanContextValid, SpanStatusCode, type Context, type Span } from "@opentelemetry/api";
import type { CompiledFunction } from "../config/types.ts";
import { backoffDelay } from "../resilience/backoff.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { FunctionMeters, Metrics } from "../telemetry/metrics.ts";
import { encode } from "./decode.ts";
import { DeadLetterHeader, isOwnHeader } from "../contracts/dead-letter.ts";
import type { Delivery, Publisher } from "../contracts/delivery.ts";
import { formatReplayOf, ReplayHeader } from "../contracts/replay.ts";
import { errorMessage, settle, type Outcome, type Settlement } from "./settle.ts";
import { tracedPublish } from "./traced-publisher.ts";

/** Trace context headers: each publish of ours sets them anew. */
const TRACE_CONTEXT = /^(traceparent|tracestate)$/i;

/** Room kept for an output's headers (Nats-Msg-Id, traceparent, tracestate). */
const HEADER_ALLOWANCE = 512;

/** One delivery on its way to settlement. */
export interface Settling {
  readonly delivery: Delivery;
  /** The delivery's attempt, 1-based (see AttemptLedger). */
  readonly attempt: number;
  readonly outcome: Outcome;
  readonly span: Span;
  /** The delivery's trace context: the parent of output and dead-letter publishes. */
  readonly context: Context;
  /** Set while a breaker the delivery went through is open: how long to hold it. */
  readonly holdMs?: number;
}

/**
 * Carries out the settlement `settle()` decides: publishes the output or the dead letter
 * first, then sends exactly one ack, nak or term. A failed publish of ours turns into a
 * nak with backoff: nothing is ever dropped.
 */
export class Settler {
  readonly #fn: CompiledFunction;
  readonly #publisher: Publisher;
  readonly #metrics: Metrics;
  readonly #meters: FunctionMeters;
  readonly #log: Logger;
  readonly #random?: () => number;

  constructor(fn: CompiledFunction, publisher: Publisher, metrics: Metrics, log: Logger, random?: () => number) {
    this.#fn = fn;
    this.#publisher = publisher;
    this.#metrics = metrics;
    this.#meters = metrics.forFunction(fn.name);
    this.#log = log;
    this.#random = random;
  }

  async settle(item: Settling): Promise<Settlement> {
    const { delivery, outcome } = item;
    const fn = this.#fn;
    let settlement = settle(outcome, item.attempt, fn.retry, this.#random, item.holdMs);
    if (settlement.action === "ack" && fn.output && settlement.output !== undefined) {
      settlement = await this.#publishOutput(item, fn.output, settlement.output);
    }
    if (settlement.action === "dead-letter") settlement = await this.#deadLetter(item, settlement);
    switch (settlement.action) {
      case "ack":
        delivery.ack();
        break;
      case "nak":
        delivery.nak(settlement.delayMs);
        break;
      case "dead-letter":
        delivery.term();
        this.#metrics.deadLetters.inc({ function: fn.name, reason: settlement.reason });
        break;
    }
    this.#meters.acks[settlement.action === "dead-letter" ? "term" : settlement.action]++;
    item.span.setAttribute("jetfn.settlement", settlement.action);
    if (outcome.kind !== "success" || settlement.action !== "ack") {
      item.span.setStatus({ code: SpanStatusCode.ERROR, message: settlementError(settlement) });
      this.#logFailure(item, settlement);
    }
    return settlement;
  }

  async #publishOutput(item: Settling, subject: string, value: unknown): Promise<Settlement> {
    const { delivery } = item;
    let data: Uint8Array;
    try {
      data = encode(value);
    } catch (error) {
      // A return value that cannot be encoded is the handler's failure, retried like one.
      return settle({ kind: "error", error }, item.attempt, this.#fn.retry, this.#random, item.holdMs);
    }
    const maxPayload = this.#publisher.maxPayload;
    if (data.length > maxPayload - HEADER_ALLOWANCE) {
      // Retrying cannot shrink it: the server would refuse every publish of it.
      const error = `output of ${data.length} bytes exceeds the server's max_payload (${maxPayload} bytes, headers included)`;
      return { action: "dead-letter", reason: "non-retryable", error };
    }
    try {
      const msgId = `${this.#fn.name}:${delivery.stream}:${delivery.seq}`;
      await tracedPublish(this.#publisher, item.context, subject, data, {}, msgId);
      return { action: "ack", output: value };
    } catch (error) {
      return this.#retryLater(item, `output publish to ${subject} failed: ${errorMessage(error)}`);
    }
  }

  async #deadLetter(item: Settling, settlement: Extract<Settlement, { action: "dead-letter" }>): Promise<Settlement> {
    const { delivery } = item;
    const fn = this.#fn;
    const headers: Record<string, string> = {
      // The message's own headers travel with it (a redrive sends them back out), but not
      // the server's Nats-* ones (an expectation would fail this publish) or the trace
      // context, which the publish sets anew.
      ...Object.fromEntries(Object.entries(delivery.headers).filter(([key]) => !isOwnHeader(key) && !TRACE_CONTEXT.test(key))),
      [DeadLetterHeader.Function]: fn.name,
      [DeadLetterHeader.Subject]: delivery.subject,
      [DeadLetterHeader.Stream]: delivery.stream,
      [DeadLetterHeader.StreamSeq]: String(delivery.seq),
      [DeadLetterHeader.Deliveries]: String(delivery.deliveryCount),
      [DeadLetterHeader.Error]: settlement.error,
      [DeadLetterHeader.Reason]: settlement.reason,
      [DeadLetterHeader.FailedAt]: new Date().toISOString(),
      // A replay's copy that failed says which event it was a copy of (its Jetfn-Stream is
      // JETFN_REPLAY): `dlq redrive --only` sends it back as a replay of that event.
      ...(delivery.replayOf ? { [ReplayHeader.Of]: formatReplayOf(delivery.replayOf) } : {}),
    };
    try {
      // The original bytes, never a re-serialisation; the id makes a redelivered dead
      // letter (its term lost) land once.
      const msgId = `dlq:${fn.name}:${delivery.stream}:${delivery.seq}`;
      await tracedPublish(this.#publisher, item.context, fn.deadLetter, delivery.data, headers, msgId);
      return settlement;
    } catch (error) {
      return this.#retryLater(item, `dead-letter publish to ${fn.deadLetter} failed: ${errorMessage(error)}`);
    }
  }

  /** A publish of ours failed: the broker is the problem, so retry with backoff and never drop. */
  #retryLater(item: Settling, error: string): Settlement {
    return { action: "nak", delayMs: backoffDelay(this.#fn.retry, item.attempt, this.#random), error };
  }

  /** The one log line of a failed delivery. Never the payload. */
  #logFailure({ delivery, outcome, span }: Settling, settlement: Settlement): void {
    this.#log.warn(
      {
        subject: delivery.subject,
        seq: delivery.seq,
        delivery_count: delivery.deliveryCount,
        ...(delivery.replayOf ? { replay_of: formatReplayOf(delivery.replayOf) } : {}),
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
export function traceFields(span: Span): { trace_id?: string; span_id?: string } {
  const spanContext = span.spanContext();
  return isSpanContextValid(spanContext) ? { trace_id: spanContext.traceId, span_id: spanContext.spanId } : {};
}

function settlementError(settlement: Settlement): string | undefined {
  return settlement.action === "ack" ? undefined : settlement.error;
}

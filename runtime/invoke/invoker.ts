import { type Attributes, propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import type { CompiledFunction, CompiledRetry } from "../config/types.ts";
import type { Delivery } from "../contracts/delivery.ts";
import type { Outcome } from "../contracts/outcome.ts";
import { formatReplayOf } from "../contracts/replay.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { FunctionMeters, Metrics } from "../telemetry/metrics.ts";
import { traceFields } from "../telemetry/trace-fields.ts";
import { spansRecorded } from "../telemetry/tracing.ts";
import type { Admission } from "./admission.ts";
import { AttemptLedger } from "./attempts.ts";
import type { Executor } from "./executor.ts";
import type { Heartbeats } from "./heartbeats.ts";
import type { HostContext } from "./host-context.ts";
import type { IdempotencyGuard, KeyClaim } from "./idempotency.ts";
import { InvocationCore, type InvocationStart, type Ran } from "./invocation-core.ts";
import { spendsAttempt } from "./outcome-table.ts";
import { type Settled, Settler } from "./settler.ts";

const CONSUMER = Object.freeze({ kind: SpanKind.CONSUMER });
const DUPLICATE: Outcome = Object.freeze({ kind: "duplicate" });

/** Whether a message carries W3C trace context to continue (most header-less ones do not). */
function hasTraceContext(headers: Readonly<Record<string, string>>): boolean {
  for (const key in headers) if (key.length === 11 && key.toLowerCase() === "traceparent") return true;
  return false;
}

const headerGetter = {
  keys: (carrier: Readonly<Record<string, string>>) => Object.keys(carrier),
  get: (carrier: Readonly<Record<string, string>>, key: string) => carrier[key],
};

/** What became of a delivery: done with, or back at the server to be delivered again. */
export type ProcessResult = "settled" | "again";

export interface InvokerDeps {
  readonly host: HostContext;
  readonly executor: Executor;
  readonly admission: Admission;
  readonly metrics: Metrics;
  /** Aborts when shutdown's grace period is over: in-flight handlers are cut off. */
  readonly stop: AbortSignal;
  /** The function's heartbeats: what it holds is kept alive through them. */
  readonly heartbeats: Heartbeats;
  /**
   * Whether a running delivery is heartbeated: it may outlive half its ack wait, or wait in
   * its executor for a slot (see `Capacity`).
   */
  readonly heartbeat: boolean;
  readonly random?: () => number;
  /** Between tries of an output or dead letter the broker refused (see `SettlerOptions.retry`). */
  readonly brokerRetry?: CompiledRetry;
  /** The function's `idempotency:`: each delivery's business key is claimed before it runs. */
  readonly idempotency?: IdempotencyGuard;
  /** Told each settled delivery's outcome and settlement (`jetfn/testing` reads them here). */
  readonly onSettled?: (outcome: Outcome, settlement: Settled, delivery: Delivery) => void;
}

/**
 * Runs one function's deliveries: the poison guard and completion records (a redelivery of
 * a run that completed is acked as a duplicate, unrun), then the invocation core (admission,
 * the executor in a CONSUMER span with a deadline and heartbeats), then settlement,
 * exactly once. Never throws: every failure becomes a settlement.
 */
export class Invoker {
  readonly #fn: CompiledFunction;
  readonly #deps: InvokerDeps;
  readonly #log: Logger;
  readonly #settler: Settler;
  readonly #attempts = new AttemptLedger();
  readonly #meters: FunctionMeters;
  readonly #core: InvocationCore;

  constructor(deps: InvokerDeps) {
    this.#fn = deps.host.fn;
    this.#deps = deps;
    this.#log = deps.host.log;
    this.#meters = deps.metrics.registerFunction(this.#fn.name);
    this.#settler = new Settler(this.#fn, deps.host.publisher, deps.metrics, this.#log, deps.random, {
      stop: deps.stop,
      waits: deps.admission,
      heartbeats: deps.heartbeats,
      ...(deps.brokerRetry ? { retry: deps.brokerRetry } : {}),
    });
    this.#core = new InvocationCore({
      executor: deps.executor,
      timeoutMs: this.#fn.timeoutMs,
      admission: deps.admission,
      meters: this.#meters,
      stop: deps.stop,
      deliveries: { heartbeats: deps.heartbeats, heartbeat: deps.heartbeat },
    });
  }

  /** Invocations running now. */
  get inflight(): number {
    return this.#core.inflight;
  }

  /**
   * Runs one delivery to its settlement. Resolves with `"settled"` when the message is done
   * with (acked or dead-lettered), `"again"` when it was handed back to the server (a nak)
   * and will be delivered again.
   */
  async process(delivery: Delivery): Promise<ProcessResult> {
    const attempt = this.#attempts.attempt(delivery);
    const steps = this.#deps.host.steps;
    let decided: Outcome | undefined = attempt > this.#fn.retry.maxAttempts ? { kind: "exhausted", attempts: attempt } : undefined;
    // A redelivery of a run that completed (its ack lost) is settled from its completion record.
    if (decided === undefined && steps.mayBeCompleted(delivery) && (await steps.completed(delivery))) decided = DUPLICATE;
    // Its idempotency key: held by this delivery (it runs), done before (a duplicate), or busy (handed back unspent).
    let key: KeyClaim | undefined;
    const idempotency = this.#deps.idempotency;
    if (decided === undefined && idempotency) {
      key = await idempotency.claim(delivery, this.#deps.stop);
      if (key.kind === "busy") {
        this.handBack(delivery, key.retryAfterMs);
        return "again";
      }
      if (key.kind === "duplicate") decided = key.outcome;
    }
    const parent = hasTraceContext(delivery.headers) ? propagation.extract(ROOT_CONTEXT, delivery.headers, headerGetter) : ROOT_CONTEXT;
    const start: InvocationStart = {
      delivery,
      span: {
        name: `process ${delivery.subject}`,
        // Attributes only for a span that is recorded: building them is most of a no-op span's cost.
        options: spansRecorded() ? { kind: SpanKind.CONSUMER, attributes: this.#attributes(delivery) } : CONSUMER,
        parent,
      },
      decided,
    };
    try {
      const result = await this.#core.invoke(start, (ran) => this.#settle(delivery, attempt, ran, key));
      if (result !== undefined) return result;
      this.#release(delivery);
      return "again";
    } catch (error) {
      // Only a bug in the host gets here; the message will be redelivered after ack wait.
      this.#log.error({ err: error, subject: delivery.subject, seq: delivery.seq }, "delivery processing failed");
      return "again";
    } finally {
      // Not recorded done (it failed, was handed back or cut off): the key's next event runs.
      if (key?.kind === "run") await idempotency!.release(key);
    }
  }

  /** Settles a run: exactly one of ack, nak or dead letter, unless the delivery was revoked. */
  async #settle(delivery: Delivery, attempt: number, { invocation, outcome, breakerOpenMs }: Ran, key?: KeyClaim): Promise<ProcessResult> {
    const { span } = invocation;
    // Its partition's lease was lost (an ordered function): another replica runs it, and
    // nothing of this run may be sent, not even a nak.
    if (delivery.revoked?.aborted) return this.#revoked(delivery, span);
    // Its ack wait ran out while this host stalled: the server delivers it again, and a late
    // ack or nak of this delivery would be taken for the next one's.
    if ((outcome.kind === "aborted" && outcome.cause === "expired") || delivery.expired?.()) return this.#expired(delivery, span);
    const complete = outcome.kind === "success" ? this.#completion(delivery, invocation.stepped, key, outcome.value) : undefined;
    const settlement = await this.#settler.settle({
      delivery,
      attempt,
      outcome,
      span,
      context: invocation.context,
      breakerOpenMs,
      ...(complete ? { complete } : {}),
    });
    if (settlement.unsent) return this.#revoked(delivery, span);
    this.#deps.onSettled?.(outcome, settlement, delivery);
    if (settlement.action !== "nak") this.#attempts.forget(delivery);
    else if (settlement.spared || !spendsAttempt(outcome, breakerOpenMs)) this.#attempts.spare(delivery);
    this.#meters.endToEnd.observe(Math.max(0, Date.now() - delivery.timestamp.getTime()) / 1000);
    return settlement.action === "nak" ? "again" : "settled";
  }

  /**
   * What is recorded of a successful run after its output is published and before its ack:
   * its completion record (it used steps), its idempotency key's run; undefined for neither.
   */
  #completion(
    delivery: Delivery,
    stepped: boolean | undefined,
    key: KeyClaim | undefined,
    value: unknown,
  ): (() => Promise<void>) | undefined {
    const held = key?.kind === "run" ? key : undefined;
    if (!stepped && !held) return undefined;
    return async () => {
      if (stepped) await this.#deps.host.steps.complete(delivery);
      if (held) await this.#deps.idempotency!.done(held, delivery, value);
    };
  }

  #attributes(delivery: Delivery): Attributes {
    const fn = this.#fn;
    return {
      "messaging.system": "nats",
      "messaging.operation.type": "process",
      "messaging.destination.name": delivery.subject,
      "messaging.consumer.group.name": fn.durable,
      "messaging.message.id": String(delivery.seq),
      "messaging.message.body.size": delivery.data.length,
      "jetfn.function": fn.name,
      "jetfn.delivery_count": delivery.deliveryCount,
      ...(delivery.replayOf ? { "jetfn.replay_of": formatReplayOf(delivery.replayOf) } : {}),
    };
  }

  /** Settles nothing: the delivery is no longer this host's (see `Delivery.revoked`). */
  #revoked(delivery: Delivery, span: Span): ProcessResult {
    return this.#unsent(
      delivery,
      span,
      "cut off: the partition's lease was lost",
      "run cut off: this host lost the lease of the event's partition; nothing was sent, and its next owner runs it",
    );
  }

  /** Settles nothing: the server gave the delivery up (see `Delivery.expired`). */
  #expired(delivery: Delivery, span: Span): ProcessResult {
    return this.#unsent(
      delivery,
      span,
      "expired: its ack wait ran out while this host stalled",
      "delivery expired: its ack wait ran out while this host stalled; nothing was sent, and the server delivers it again",
    );
  }

  /** Nothing of the delivery is sent (not even a nak): its span and the log say why. */
  #unsent(delivery: Delivery, span: Span, status: string, message: string): ProcessResult {
    span.setAttribute("jetfn.settlement", "none");
    span.setStatus({ code: SpanStatusCode.ERROR, message: status });
    this.#log.warn({ subject: delivery.subject, seq: delivery.seq, delivery_count: delivery.deliveryCount, ...traceFields(span) }, message);
    return "again";
  }

  /** The gate is closed (breaker open, paused): hand the message back unrun, unspent. */
  #release(delivery: Delivery): void {
    this.handBack(delivery, this.#deps.admission.closedForMs() || 1000);
  }

  /** Hands a delivery back unrun, to come again in `delayMs`, without spending an attempt (a rate limit's key waits). */
  handBack(delivery: Delivery, delayMs: number): void {
    delivery.nak(delayMs);
    this.#attempts.spare(delivery);
    this.#meters.acks.nak++;
  }
}

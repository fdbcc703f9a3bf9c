import { type Context, context, trace } from "@opentelemetry/api";
import type { CompiledFunction } from "../config/types.ts";
import type { BrokerPublisher } from "../contracts/broker.ts";
import { resolveDeliverAt } from "../contracts/delayed.ts";
import { formatReplayOf } from "../contracts/replay.ts";
import type { BreakerRegistry, NamedBreaker } from "../resilience/breaker-registry.ts";
import type { BreakerOptions, PublishAck } from "../sdk/types.ts";
import type { Logger } from "../telemetry/logger.ts";
import { traceFields } from "../telemetry/trace-fields.ts";
import { tracedPublish } from "../telemetry/traced-publish.ts";
import type { BatchInvocation, Invocation } from "./executor.ts";
import { type StepBegin, StepJournal } from "./steps.ts";

/**
 * The parts of `ctx` that live in the host, whichever thread the handler runs in: its
 * publishing, its named breakers (host-wide state) and its log lines.
 */
export class HostContext {
  readonly fn: CompiledFunction;
  /** The function's logger. */
  readonly log: Logger;
  /** JetStream publishing: the handler's `ctx.publish`, and the settler's outputs and dead letters. */
  readonly publisher: BrokerPublisher;
  /** `ctx.step`'s records: claims, results, replays. */
  readonly steps: StepJournal;
  readonly #breakers: BreakerRegistry;

  /** @param steps the function's step journal; by default one that records nothing (steps run every time). */
  constructor(fn: CompiledFunction, log: Logger, publisher: BrokerPublisher, breakers: BreakerRegistry, steps?: StepJournal) {
    this.fn = fn;
    this.log = log;
    this.publisher = publisher;
    this.#breakers = breakers;
    this.steps = steps ?? new StepJournal({ fn, log });
  }

  /**
   * `ctx.step`'s start: its span under `parent` (by default the handler's active span, else
   * the delivery's), then the step claimed or answered from its record.
   */
  beginStep(invocation: Invocation, name: string, parent?: Context, signal?: AbortSignal): Promise<StepBegin> {
    const { delivery } = invocation;
    invocation.stepped = true;
    return this.steps.begin(
      {
        headers: delivery.headers,
        stream: delivery.stream,
        seq: delivery.seq,
        ...(delivery.replayOf ? { replayOf: delivery.replayOf } : {}),
        parent: parent ?? this.#parent(invocation),
        ...(signal ? { signal } : {}),
      },
      name,
    );
  }

  /**
   * `ctx.publish`: a PRODUCER span under `parent`; by default the span the handler made
   * itself when one is active here, else the delivery's span.
   */
  publish(
    invocation: Invocation,
    subject: string,
    data: Uint8Array,
    options: { headers?: Record<string, string>; msgId?: string; delay?: string | number; at?: Date | string | number } = {},
    parent?: Context,
  ): Promise<PublishAck> {
    // A delay or time that cannot be scheduled throws at the handler's call (a DelayError).
    const deliverAt = options.delay !== undefined || options.at !== undefined ? resolveDeliverAt(options, Date.now()) : undefined;
    return tracedPublish(this.publisher, parent ?? this.#parent(invocation), subject, data, options.headers, options.msgId, deliverAt);
  }

  #parent(invocation: Invocation): Context {
    const active = context.active();
    return trace.getSpan(active) ? active : invocation.context;
  }

  /** `ctx.breaker(name)`: the host's breaker of that name, noted as used by this invocation. */
  breaker(invocation: Invocation, name: string, options?: BreakerOptions): NamedBreaker {
    const breaker = this.#breakers.get(name, options, this.fn.name);
    (invocation.breakers ??= new Set()).add(breaker);
    return breaker;
  }

  /** `ctx.log`: the function's logger with the delivery's subject, seq and trace ids. */
  logger(invocation: Invocation): Logger {
    const { delivery, span } = invocation;
    // A batch's lines carry its size and first sequence, not one message's facts.
    const batch = (invocation as Partial<BatchInvocation>).batch;
    if (batch) return this.log.child({ batch_size: batch.length, first_seq: delivery.seq, ...traceFields(span) });
    return this.log.child({
      subject: delivery.subject,
      seq: delivery.seq,
      delivery_count: delivery.deliveryCount,
      ...(delivery.replayOf ? { replay_of: formatReplayOf(delivery.replayOf) } : {}),
      ...traceFields(span),
    });
  }
}

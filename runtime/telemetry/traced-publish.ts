import { type Context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Publisher } from "../contracts/delivery.ts";
import { errorMessage } from "../contracts/error-message.ts";
import type { PublishAck } from "../sdk/types.ts";

const tracer = trace.getTracer("jetfn");

/**
 * Publishes with a PRODUCER span `send <subject>` and its `traceparent` (and `tracestate`)
 * injected into the headers, so a chain of functions is one trace, under `parent`. With
 * `deliverAt`, the event is scheduled for then and the span is its scheduling: its headers
 * (the `traceparent` too) travel with it to its target.
 */
export async function tracedPublish(
  publisher: Publisher,
  parent: Context,
  subject: string,
  data: Uint8Array,
  headers: Record<string, string> = {},
  msgId?: string,
  deliverAt?: number,
): Promise<PublishAck> {
  const span = tracer.startSpan(
    `send ${subject}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        "messaging.system": "nats",
        "messaging.operation.type": "send",
        "messaging.destination.name": subject,
        "messaging.message.body.size": data.length,
      },
    },
    parent,
  );
  try {
    const carrier = { ...headers };
    propagation.inject(trace.setSpan(parent, span), carrier);
    return await publisher.publish(subject, data, {
      headers: carrier,
      ...(msgId ? { msgId } : {}),
      ...(deliverAt !== undefined ? { deliverAt } : {}),
    });
  } catch (error) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
    throw error;
  } finally {
    span.end();
  }
}

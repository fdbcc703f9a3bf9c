import { context, propagation, SpanKind, SpanStatusCode, trace, type Context } from "@opentelemetry/api";
import type { PublishAck } from "../sdk/types.ts";
import type { Publisher } from "../contracts/delivery.ts";
import { errorMessage } from "./settle.ts";

const tracer = trace.getTracer("jetfn");

/**
 * Publishes with a PRODUCER span `send <subject>` and its `traceparent` (and `tracestate`)
 * injected into the headers, so a chain of functions is one trace. `parent` is the
 * delivery's context; a span the handler made itself, when active, comes first.
 */
export async function tracedPublish(
  publisher: Publisher,
  parent: Context,
  subject: string,
  data: Uint8Array,
  headers: Record<string, string> = {},
  msgId?: string,
): Promise<PublishAck> {
  const active = context.active();
  const base = trace.getSpan(active) ? active : parent;
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
    base,
  );
  try {
    const carrier = { ...headers };
    propagation.inject(trace.setSpan(base, span), carrier);
    return await publisher.publish(subject, data, { headers: carrier, ...(msgId ? { msgId } : {}) });
  } catch (error) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
    throw error;
  } finally {
    span.end();
  }
}

import { isSpanContextValid, type Span } from "@opentelemetry/api";

/** trace_id and span_id for log lines, when tracing is on (the no-op span's ids are zeros). */
export function traceFields(span: Span): { trace_id?: string; span_id?: string } {
  const spanContext = span.spanContext();
  return isSpanContextValid(spanContext) ? { trace_id: spanContext.traceId, span_id: spanContext.spanId } : {};
}

/**
 * Reads the OTLP/HTTP protobuf body jetfn's exporter sends (an ExportTraceServiceRequest,
 * opentelemetry/proto/collector/trace/v1): just the fields the tests and the benchmark's
 * sink look at. Field numbers from opentelemetry/proto/trace/v1/trace.proto and
 * common/v1/common.proto.
 */

/** One span, attributes flattened, ids in hex (as the JSON encoding writes them). */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  status: { code?: number; message?: string };
  events: { name: string }[];
  links: { traceId: string; spanId: string }[];
  serviceName?: string;
}

/** A protobuf message's fields, in order: varints as numbers, length-delimited as bytes. */
function* fields(bytes: Uint8Array): Generator<{ field: number; wire: number; value: number | Uint8Array }> {
  let at = 0;
  const varint = (): number => {
    let result = 0;
    let shift = 1;
    for (;;) {
      const byte = bytes[at++]!;
      result += (byte & 0x7f) * shift;
      if (byte < 0x80) return result;
      shift *= 128;
    }
  };
  while (at < bytes.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    const start = at;
    if (wire === 0) {
      yield { field, wire, value: varint() };
    } else if (wire === 1) {
      at += 8;
      yield { field, wire, value: bytes.subarray(start, at) };
    } else if (wire === 5) {
      at += 4;
      yield { field, wire, value: bytes.subarray(start, at) };
    } else if (wire === 2) {
      const length = varint();
      const from = at;
      at += length;
      yield { field, wire, value: bytes.subarray(from, at) };
    } else {
      throw new Error(`OTLP protobuf: wire type ${wire} not expected (field ${field})`);
    }
  }
}

const text = (value: number | Uint8Array): string => Buffer.from(value as Uint8Array).toString("utf8");
const hex = (value: number | Uint8Array): string => Buffer.from(value as Uint8Array).toString("hex");

/** AnyValue: string 1, bool 2, int64 3, double 4. */
function anyValue(bytes: Uint8Array): string | number | boolean {
  for (const { field, value } of fields(bytes)) {
    if (field === 1) return text(value);
    if (field === 2) return value === 1;
    if (field === 3) return value as number;
    if (field === 4) return Buffer.from(value as Uint8Array).readDoubleLE(0);
  }
  return "";
}

/** KeyValue: key 1, value 2. */
function keyValue(bytes: Uint8Array, into: Record<string, string | number | boolean>): void {
  let key = "";
  let value: string | number | boolean = "";
  for (const field of fields(bytes)) {
    if (field.field === 1) key = text(field.value);
    if (field.field === 2) value = anyValue(field.value as Uint8Array);
  }
  into[key] = value;
}

function span(bytes: Uint8Array, serviceName: string | undefined): ReceivedSpan {
  const decoded: ReceivedSpan = {
    traceId: "",
    spanId: "",
    name: "",
    kind: 0,
    attributes: {},
    status: {},
    events: [],
    links: [],
    serviceName,
  };
  for (const { field, value } of fields(bytes)) {
    switch (field) {
      case 1:
        decoded.traceId = hex(value);
        break;
      case 2:
        decoded.spanId = hex(value);
        break;
      case 4:
        if ((value as Uint8Array).length > 0) decoded.parentSpanId = hex(value);
        break;
      case 5:
        decoded.name = text(value);
        break;
      case 6:
        decoded.kind = value as number;
        break;
      case 9:
        keyValue(value as Uint8Array, decoded.attributes);
        break;
      case 11:
        // Event: name 2.
        for (const event of fields(value as Uint8Array)) if (event.field === 2) decoded.events.push({ name: text(event.value) });
        break;
      case 13: {
        // Link: trace_id 1, span_id 2.
        const link = { traceId: "", spanId: "" };
        for (const part of fields(value as Uint8Array)) {
          if (part.field === 1) link.traceId = hex(part.value);
          if (part.field === 2) link.spanId = hex(part.value);
        }
        decoded.links.push(link);
        break;
      }
      case 15:
        // Status: message 2, code 3.
        for (const status of fields(value as Uint8Array)) {
          if (status.field === 2) decoded.status.message = text(status.value);
          if (status.field === 3) decoded.status.code = status.value as number;
        }
        break;
    }
  }
  return decoded;
}

/** Every span of one request body, with its resource's `service.name`. */
export function decodeSpans(body: Uint8Array): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  // ExportTraceServiceRequest: resource_spans 1. ResourceSpans: resource 1, scope_spans 2.
  for (const resourceSpans of fields(body)) {
    if (resourceSpans.field !== 1) continue;
    let serviceName: string | undefined;
    const scopes: Uint8Array[] = [];
    for (const { field, value } of fields(resourceSpans.value as Uint8Array)) {
      if (field === 1) {
        const resource: Record<string, string | number | boolean> = {};
        // Resource: attributes 1.
        for (const attribute of fields(value as Uint8Array)) if (attribute.field === 1) keyValue(attribute.value as Uint8Array, resource);
        const name = resource["service.name"];
        serviceName = typeof name === "string" ? name : undefined;
      }
      if (field === 2) scopes.push(value as Uint8Array);
    }
    // ScopeSpans: spans 2.
    for (const scope of scopes) {
      for (const { field, value } of fields(scope)) if (field === 2) spans.push(span(value as Uint8Array, serviceName));
    }
  }
  return spans;
}

/** How many spans one request body holds, without decoding them (the benchmark's sink). */
export function countSpans(body: Uint8Array): number {
  let count = 0;
  for (const resourceSpans of fields(body)) {
    if (resourceSpans.field !== 1) continue;
    for (const scope of fields(resourceSpans.value as Uint8Array)) {
      if (scope.field !== 2) continue;
      for (const { field } of fields(scope.value as Uint8Array)) if (field === 2) count++;
    }
  }
  return count;
}

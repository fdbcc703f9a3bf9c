import type { Context, SpanKind } from "@opentelemetry/api";

/**
 * A function called synchronously, as the ingress (HTTP) and the NATS service see it: the
 * seam between them and invoke/, so neither imports the other.
 */
export interface SyncCaller {
  /** Never rejects. */
  call(request: CallRequest): Promise<CallResult>;
}

/** One field a schema refused: `path` is dotted (`items.0.sku`), empty for the value itself. */
export interface FieldIssue {
  readonly path: string;
  readonly message: string;
}

/** One synchronous call of a function: an HTTP route's request, or a NATS request. */
export interface CallRequest {
  readonly data: Uint8Array;
  /** `ctx.subject`: the route (`POST /quote`), or the request's subject. */
  readonly subject: string;
  /** `ctx.headers`. */
  readonly headers: Readonly<Record<string, string>>;
  /** The caller's trace context: the call's span is its child. */
  readonly parent: Context;
  /** SERVER for a NATS request; INTERNAL under an HTTP request's own SERVER span. */
  readonly spanKind: SpanKind;
}

/** How a call ended, in the terms both HTTP and the NATS service answer with. */
export type CallResult =
  | { readonly kind: "ok"; readonly value: unknown }
  | { readonly kind: "invalid"; readonly message: string; readonly issues: readonly FieldIssue[] }
  | { readonly kind: "rejected"; readonly message: string }
  | { readonly kind: "unavailable"; readonly message: string; readonly retryAfterMs: number }
  | { readonly kind: "timeout"; readonly message: string }
  | { readonly kind: "failed"; readonly message: string };

/** The status code of each result: HTTP's, and `Nats-Service-Error-Code`'s. */
export const CALL_STATUS: Readonly<Record<CallResult["kind"], number>> = Object.freeze({
  ok: 200,
  invalid: 400,
  rejected: 422,
  unavailable: 503,
  timeout: 504,
  failed: 500,
});

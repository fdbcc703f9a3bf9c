import { ServiceError } from "@nats-io/services";
import { type MsgHdrs, type NatsConnection, headers as natsHeaders, RequestError, TimeoutError } from "@nats-io/transport-node";
import { invokeSubject } from "./service.ts";

/** How a request to `jetfn.invoke.<function>` ended, as `jetfn invoke` reports it. */
export type InvokeReply =
  /** The return value's bytes; `contentType` absent for a function that returned nothing. */
  | { readonly kind: "ok"; readonly data: Uint8Array; readonly contentType?: string }
  /** The function answered with an error: `Nats-Service-Error-Code` and `Nats-Service-Error`. */
  | { readonly kind: "error"; readonly code: number; readonly message: string; readonly data: Uint8Array; readonly retryAfter?: string }
  /** No host serves the function: no host runs, or its entry lacks `invoke: true`. */
  | { readonly kind: "no-responders" }
  | { readonly kind: "timeout"; readonly timeoutMs: number };

export interface InvokeRequestOptions {
  readonly timeoutMs: number;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Calls a function through the `jetfn` NATS service. Rejects only on a connection failure. */
export async function requestInvoke(
  nc: NatsConnection,
  fn: string,
  data: Uint8Array,
  { timeoutMs, headers }: InvokeRequestOptions,
): Promise<InvokeReply> {
  let h: MsgHdrs | undefined;
  if (headers && Object.keys(headers).length > 0) {
    h = natsHeaders();
    for (const [key, value] of Object.entries(headers)) h.set(key, value);
  }
  try {
    const reply = await nc.request(invokeSubject(fn), data, { timeout: timeoutMs, ...(h ? { headers: h } : {}) });
    const error = ServiceError.toServiceError(reply);
    if (!error) {
      const contentType = reply.headers?.get("Content-Type");
      return { kind: "ok", data: reply.data, ...(contentType ? { contentType } : {}) };
    }
    const retryAfter = reply.headers?.get("Retry-After");
    return { kind: "error", code: error.code, message: error.message, data: reply.data, ...(retryAfter ? { retryAfter } : {}) };
  } catch (error) {
    if (error instanceof RequestError && error.isNoResponders()) return { kind: "no-responders" };
    if (error instanceof TimeoutError) return { kind: "timeout", timeoutMs };
    throw error;
  }
}

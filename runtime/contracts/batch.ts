/**
 * How one message of a batch is settled before its batch ends: by the handler (`ack()`,
 * `retry()`, `fail()`), or by the runner before the handler sees it (not decodable, not
 * valid). The words the batch runner, both executors and the batch invoker share.
 */
export type BatchSettle =
  | { readonly kind: "ack" }
  /** `retry()`: after `delayMs`, or the function's backoff when absent. */
  | { readonly kind: "retry"; readonly delayMs?: number }
  /** `fail(error)`: settled as if a one-event handler had thrown `error`. */
  | { readonly kind: "fail"; readonly error: unknown }
  | { readonly kind: "undecodable"; readonly error: Error }
  | { readonly kind: "invalid"; readonly error: Error };

/** One message of a batch as a runner needs it: what the handler's `BatchMessage` shows. */
export interface BatchItem {
  readonly data: Uint8Array;
  readonly subject: string;
  readonly seq: number;
  readonly deliveryCount: number;
  readonly headers: Readonly<Record<string, string>>;
  /** Epoch ms the message was stored. */
  readonly timestamp: number;
}

import type { LoadedHandler } from "../bundle/module.ts";
import { decode, validate } from "../codec/codec.ts";
import type { Encoding } from "../config/types.ts";
import type { Outcome } from "../contracts/outcome.ts";
import type { FunctionContext, Handler } from "../sdk/types.ts";

/** How a handler's run can end, as far as the handler itself decides it. */
export type HandlerOutcome = Extract<Outcome, { kind: "success" | "error" | "undecodable" | "invalid" }>;

/** Calls the handler; a thread wraps the call in the delivery's trace context. */
export type CallHandler = (handler: Handler, event: unknown, ctx: FunctionContext) => unknown;

const direct: CallHandler = (handler, event, ctx) => handler(event, ctx);

/**
 * One run of a handler, the same in the host's thread (`isolation: none`) and in a handler
 * thread: decode the payload per the function's `encoding`, validate it with the handler's
 * schema, call the handler with the `ctx` that `context` makes. Never rejects. No async
 * frame of its own when there is no schema: this is the hot path.
 */
export function runHandler(
  loaded: LoadedHandler,
  data: Uint8Array,
  encoding: Encoding,
  context: () => FunctionContext,
  call: CallHandler = direct,
): Promise<HandlerOutcome> {
  const decoded = decode(data, encoding);
  if (!decoded.ok) return Promise.resolve({ kind: "undecodable", error: decoded.error });
  if (!loaded.schema) return invoke(loaded.handler, decoded.value, context, call);
  return validate(loaded.schema, decoded.value).then(
    (valid): Promise<HandlerOutcome> | HandlerOutcome =>
      valid.ok ? invoke(loaded.handler, valid.value, context, call) : { kind: "invalid", error: valid.error },
    (error: unknown): HandlerOutcome => ({ kind: "error", error }),
  );
}

function invoke(handler: Handler, event: unknown, context: () => FunctionContext, call: CallHandler): Promise<HandlerOutcome> {
  let result: unknown;
  try {
    result = call(handler, event, context());
  } catch (error) {
    return Promise.resolve({ kind: "error", error });
  }
  return Promise.resolve(result).then(
    (value): HandlerOutcome => ({ kind: "success", value }),
    (error: unknown): HandlerOutcome => ({ kind: "error", error }),
  );
}

import type { LoadedHandler } from "../bundle/module.ts";
import { decode, validate } from "../codec/codec.ts";
import type { Encoding } from "../config/types.ts";
import type { BatchItem, BatchSettle } from "../contracts/batch.ts";
import { isDuration, parseDuration } from "../sdk/duration.ts";
import type { BatchContext, BatchHandler, BatchMessage, FunctionContext, RetryOptions } from "../sdk/types.ts";
import type { HandlerOutcome } from "./handler-runner.ts";

/** How a batch handler's run ends, as far as the handler decides it (invalid events are settled one by one). */
export type BatchOutcome = Extract<HandlerOutcome, { kind: "success" | "error" }>;

/** Calls the batch handler; a thread wraps the call in the batch's trace context. */
export type CallBatchHandler = (call: () => unknown) => unknown;

const direct: CallBatchHandler = (call) => call();
const SUCCESS: BatchOutcome = Object.freeze({ kind: "success", value: undefined });

/**
 * One run of a batch handler, the same in the host's thread and in a handler thread: each
 * item is decoded per the function's `encoding` and validated with the handler's schema;
 * one that fails is settled at once through `settle` (undecodable, invalid: the host
 * dead-letters it) and never handed over. The others become {@link BatchMessage}s whose
 * `ack`/`retry`/`fail` reach `settle` once each (the first settle wins), and the handler
 * is called with them, unless none is left. Never rejects.
 */
export async function runBatchHandler(
  loaded: LoadedHandler,
  items: readonly BatchItem[],
  encoding: Encoding,
  settle: (index: number, how: BatchSettle) => void,
  context: () => FunctionContext,
  call: CallBatchHandler = direct,
): Promise<BatchOutcome> {
  const messages: BatchMessage[] = [];
  try {
    const events = await Promise.all(
      items.map(async (item, index) => {
        const decoded = decode(item.data, encoding);
        if (!decoded.ok) {
          settle(index, { kind: "undecodable", error: decoded.error });
          return undefined;
        }
        if (!loaded.schema) return decoded;
        const valid = await validate(loaded.schema, decoded.value);
        if (!valid.ok) settle(index, { kind: "invalid", error: valid.error });
        return valid.ok ? valid : undefined;
      }),
    );
    events.forEach((event, index) => {
      if (event) messages.push(new Message(items[index]!, event.value, index, settle));
    });
  } catch (error) {
    // A schema that throws is the handler's failure: the whole batch is retried.
    return { kind: "error", error };
  }
  if (messages.length === 0) return SUCCESS;
  const handler = loaded.handler as unknown as BatchHandler;
  try {
    const ctx = batchContext(context());
    await call(() => handler(messages, ctx));
    return SUCCESS;
  } catch (error) {
    return { kind: "error", error };
  }
}

/**
 * A batch's `ctx`: the members of a function's `ctx` that mean something for a batch (not
 * one event's subject, seq, headers or steps), read from `ctx` when asked.
 */
function batchContext(ctx: FunctionContext): BatchContext {
  return Object.freeze({
    function: ctx.function,
    config: ctx.config,
    get signal() {
      return ctx.signal;
    },
    get log() {
      return ctx.log;
    },
    get span() {
      return ctx.span;
    },
    publish: ctx.publish,
    breaker: ctx.breaker,
    working: ctx.working,
  });
}

/** One event handed to a batch handler. */
class Message implements BatchMessage {
  readonly data: unknown;
  readonly subject: string;
  readonly seq: number;
  readonly deliveryCount: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly #timestamp: number;
  readonly #index: number;
  readonly #settle: (index: number, how: BatchSettle) => void;
  #settled = false;

  constructor(item: BatchItem, data: unknown, index: number, settle: (index: number, how: BatchSettle) => void) {
    this.data = data;
    this.subject = item.subject;
    this.seq = item.seq;
    this.deliveryCount = item.deliveryCount;
    this.headers = item.headers;
    this.#timestamp = item.timestamp;
    this.#index = index;
    this.#settle = settle;
  }

  get timestamp(): Date {
    return new Date(this.#timestamp);
  }

  ack(): void {
    this.#once({ kind: "ack" });
  }

  retry(options?: RetryOptions): void {
    const delay = options?.delay;
    if (delay === undefined) return this.#once({ kind: "retry" });
    const delayMs = typeof delay === "string" && isDuration(delay) ? parseDuration(delay) : delay;
    if (typeof delayMs !== "number" || !Number.isFinite(delayMs) || delayMs < 0) {
      throw new TypeError(`retry({ delay }): expected a duration such as "5s" or milliseconds, got ${String(delay)}`);
    }
    this.#once({ kind: "retry", delayMs: Math.round(delayMs) });
  }

  fail(error: unknown): void {
    this.#once({ kind: "fail", error });
  }

  #once(how: BatchSettle): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#settle(this.#index, how);
  }
}

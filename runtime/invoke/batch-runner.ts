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
  const schema = loaded.schema;
  try {
    // Decoded in one pass, without a promise per event: this runs for every message.
    const decoded: unknown[] = new Array(items.length);
    const ok: boolean[] = new Array(items.length);
    for (let index = 0; index < items.length; index++) {
      const result = decode(items[index]!.data, encoding);
      ok[index] = result.ok;
      if (result.ok) decoded[index] = result.value;
      else settle(index, { kind: "undecodable", error: result.error });
    }
    if (schema) {
      const checked = await Promise.all(decoded.map((value, index) => (ok[index] ? validate(schema, value) : undefined)));
      checked.forEach((valid, index) => {
        if (!valid) return;
        if (valid.ok) decoded[index] = valid.value;
        else settle(index, { kind: "invalid", error: valid.error });
        ok[index] = valid.ok;
      });
    }
    for (let index = 0; index < items.length; index++) {
      if (ok[index]) messages.push(new Message(items[index]!, decoded[index], index, settle));
    }
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

/** One event handed to a batch handler; its facts are read from its item when asked (most handlers read few). */
class Message implements BatchMessage {
  readonly data: unknown;
  readonly #item: BatchItem;
  readonly #index: number;
  readonly #settle: (index: number, how: BatchSettle) => void;
  #settled = false;

  constructor(item: BatchItem, data: unknown, index: number, settle: (index: number, how: BatchSettle) => void) {
    this.data = data;
    this.#item = item;
    this.#index = index;
    this.#settle = settle;
  }

  get subject(): string {
    return this.#item.subject;
  }

  get seq(): number {
    return this.#item.seq;
  }

  get deliveryCount(): number {
    return this.#item.deliveryCount;
  }

  get headers(): Readonly<Record<string, string>> {
    return this.#item.headers;
  }

  get timestamp(): Date {
    return new Date(this.#item.timestamp);
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

import type { Span } from "@opentelemetry/api";
import type { LoadedHandler } from "../bundle/module.ts";
import type { FunctionContext } from "../sdk/types.ts";
import type { Logger } from "../telemetry/logger.ts";
import { decode, encode, validate } from "./decode.ts";
import type { Executor, Invocation } from "./executor.ts";
import type { HostContext } from "./host-context.ts";
import type { Deadline } from "./run.ts";
import type { Outcome } from "./settle.ts";

/**
 * `isolation: none`: the handler runs in the host's own thread. The fastest way, for code
 * you trust: a handler that spins or exhausts the heap stops the whole host.
 */
export class InProcessExecutor implements Executor {
  readonly #loaded: LoadedHandler;
  readonly #host: HostContext;

  constructor(loaded: LoadedHandler, host: HostContext) {
    this.#loaded = loaded;
    this.#host = host;
  }

  run(invocation: Invocation, deadline: Deadline): Promise<Outcome> {
    deadline.start();
    const decoded = decode(invocation.delivery.data, this.#host.fn.encoding);
    if (!decoded.ok) return Promise.resolve({ kind: "undecodable", error: decoded.error });
    if (!this.#loaded.schema) return this.#invoke(decoded.value, invocation, deadline);
    return validate(this.#loaded.schema, decoded.value).then((valid) =>
      valid.ok ? this.#invoke(valid.value, invocation, deadline) : { kind: "invalid", error: valid.error },
    );
  }

  /** The handler's result as an outcome, without an async frame of its own: this is the hot path. */
  #invoke(event: unknown, invocation: Invocation, deadline: Deadline): Promise<Outcome> {
    let result: unknown;
    try {
      result = this.#loaded.handler(event, this.#context(invocation, deadline));
    } catch (error) {
      return Promise.resolve({ kind: "error", error });
    }
    return Promise.resolve(result).then(
      (value): Outcome => ({ kind: "success", value }),
      (error: unknown): Outcome => ({ kind: "error", error }),
    );
  }

  status(): undefined {
    return undefined;
  }

  async close(): Promise<void> {}

  #context(invocation: Invocation, deadline: Deadline): FunctionContext {
    return new InProcessContext(this.#host, invocation, deadline);
  }

}

/**
 * `ctx` of an in-process handler. One is made per delivery, so what a handler may never use
 * (its log, its publish and breaker functions, the timestamp) is made on first use.
 */
class InProcessContext implements FunctionContext {
  readonly function: string;
  readonly subject: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly seq: number;
  readonly deliveryCount: number;
  readonly span: Span;
  readonly config: Record<string, unknown>;
  readonly replay: FunctionContext["replay"];
  readonly working: () => void;
  readonly #host: HostContext;
  readonly #invocation: Invocation;
  readonly #deadline: Deadline;
  #log?: Logger;
  #publish?: FunctionContext["publish"];
  #breaker?: FunctionContext["breaker"];

  constructor(host: HostContext, invocation: Invocation, deadline: Deadline) {
    const { delivery } = invocation;
    this.#host = host;
    this.#invocation = invocation;
    this.#deadline = deadline;
    this.function = host.fn.name;
    this.subject = delivery.subject;
    this.headers = delivery.headers;
    this.seq = delivery.seq;
    this.deliveryCount = delivery.deliveryCount;
    this.span = invocation.span;
    this.config = host.fn.config as Record<string, unknown>;
    this.replay = delivery.replayOf ? { of: delivery.replayOf } : undefined;
    this.working = invocation.working;
  }

  get timestamp(): Date {
    return this.#invocation.delivery.timestamp;
  }

  get signal(): AbortSignal {
    return this.#deadline.signal();
  }

  get log(): Logger {
    this.#log ??= this.#host.logger(this.#invocation);
    return this.#log;
  }

  // Functions, not methods: handlers destructure them (`const { publish } = ctx`).
  get publish(): FunctionContext["publish"] {
    this.#publish ??= (subject, data, options) => this.#host.publish(this.#invocation, subject, encode(data), options);
    return this.#publish;
  }

  get breaker(): FunctionContext["breaker"] {
    this.#breaker ??= (name, options) => this.#host.breaker(this.#invocation, name, options);
    return this.#breaker;
  }
}

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
    const { delivery, span } = invocation;
    const host = this.#host;
    let log: Logger | undefined;
    return {
      function: host.fn.name,
      subject: delivery.subject,
      headers: delivery.headers,
      seq: delivery.seq,
      deliveryCount: delivery.deliveryCount,
      timestamp: delivery.timestamp,
      get signal() {
        return deadline.signal();
      },
      span,
      config: host.fn.config as Record<string, unknown>,
      replay: delivery.replayOf ? { of: delivery.replayOf } : undefined,
      // Built on first use: most handlers never log.
      get log(): Logger {
        log ??= host.logger(invocation);
        return log;
      },
      working: invocation.working,
      breaker: (name, options) => host.breaker(invocation, name, options),
      publish: (subject, data, options) => host.publish(invocation, subject, encode(data), options),
    };
  }
}

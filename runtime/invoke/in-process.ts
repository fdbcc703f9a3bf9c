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

  async run(invocation: Invocation, deadline: Deadline): Promise<Outcome> {
    deadline.start();
    const decoded = decode(invocation.delivery.data, this.#host.fn.encoding);
    if (!decoded.ok) return { kind: "undecodable", error: decoded.error };
    let event = decoded.value;
    if (this.#loaded.schema) {
      const valid = await validate(this.#loaded.schema, event);
      if (!valid.ok) return { kind: "invalid", error: valid.error };
      event = valid.value;
    }
    try {
      return { kind: "success", value: await this.#loaded.handler(event, this.#context(invocation, deadline)) };
    } catch (error) {
      return { kind: "error", error };
    }
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

import { SpanStatusCode } from "@opentelemetry/api";
import { ValidationError } from "../codec/codec.ts";
import type { CompiledFunction } from "../config/types.ts";
import type { CallRequest, CallResult, SyncCaller } from "../contracts/call.ts";
import type { Delivery } from "../contracts/delivery.ts";
import type { Outcome } from "../contracts/outcome.ts";
import { isBreakerOpenError, isNonRetryableError, isRetryAfterError, isStepError } from "../sdk/errors.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import type { Admission } from "./admission.ts";
import type { Executor } from "./executor.ts";
import type { HostContext } from "./host-context.ts";
import { InvocationCore } from "./invocation-core.ts";

export interface CallerDeps {
  readonly host: HostContext;
  readonly executor: Executor;
  readonly admission: Admission;
  readonly metrics: Metrics;
  /** Aborts when shutdown's grace period is over. */
  readonly stop: AbortSignal;
}

/**
 * Runs a function synchronously through the same core as a delivery (admission, executor,
 * deadline, span, metrics) and answers with the outcome. Nothing is acked, retried,
 * published to `output` or dead-lettered: the caller gets the answer and decides.
 */
export class Caller implements SyncCaller {
  readonly #fn: CompiledFunction;
  readonly #deps: CallerDeps;
  readonly #log: Logger;
  readonly #core: InvocationCore;
  #idle: (() => void)[] = [];

  constructor(deps: CallerDeps) {
    this.#fn = deps.host.fn;
    this.#deps = deps;
    this.#log = deps.host.log;
    this.#core = new InvocationCore({
      executor: deps.executor,
      timeoutMs: this.#fn.timeoutMs,
      admission: deps.admission,
      meters: deps.metrics.forFunction(this.#fn.name),
      stop: deps.stop,
    });
  }

  /** Calls running now. */
  get inflight(): number {
    return this.#core.inflight;
  }

  /** Resolves once no call is running: at once when none is. Shutdown waits on it. */
  settled(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Never rejects. */
  async call(request: CallRequest): Promise<CallResult> {
    const fn = this.#fn;
    const { admission, stop } = this.#deps;
    if (stop.aborted) return { kind: "unavailable", message: "the host is shutting down", retryAfterMs: 1000 };
    // Calls get their own `concurrency` slots: a burst of them waits for no delivery, and
    // beyond the limit the caller is told to come back rather than queued without bound.
    if (this.inflight >= fn.concurrency) {
      return { kind: "unavailable", message: `function ${fn.name} is running ${fn.concurrency} calls already`, retryAfterMs: 1000 };
    }
    try {
      const start = {
        delivery: callDelivery(request),
        span: {
          name: `invoke ${fn.name}`,
          options: { kind: request.spanKind, attributes: { "jetfn.function": fn.name, "jetfn.call": true } },
          parent: request.parent,
        },
      };
      const answered = await this.#core.invoke(start, ({ invocation, outcome }) => {
        const result = callResult(fn, outcome);
        if (result.kind !== "ok") {
          invocation.span.setStatus({ code: SpanStatusCode.ERROR, message: result.message });
          this.#log.warn(
            { subject: request.subject, outcome: outcome.kind, err: outcome.kind === "error" ? outcome.error : undefined },
            `call failed: ${result.message}`,
          );
        }
        return result;
      });
      if (answered) return answered;
      const paused = admission.paused;
      const why = paused ? `it is paused${paused.reason ? ` (${paused.reason})` : ""}` : "a breaker is open";
      return {
        kind: "unavailable",
        message: `function ${fn.name} is not taking calls: ${why}`,
        retryAfterMs: admission.closedForMs() || 1000,
      };
    } catch (error) {
      // Only a bug in the host gets here.
      this.#log.error({ err: error, subject: request.subject }, "call failed in the host");
      return { kind: "failed", message: `function ${fn.name} failed` };
    } finally {
      if (this.inflight === 0) for (const resolve of this.#idle.splice(0)) resolve();
    }
  }
}

/** A call seen as a delivery: stream sequence 0 and first delivery; nothing to settle. */
function callDelivery(request: CallRequest): Delivery {
  const nothing = (): void => {};
  return {
    data: request.data,
    subject: request.subject,
    headers: request.headers,
    stream: "",
    seq: 0,
    deliveryCount: 1,
    timestamp: new Date(),
    ack: nothing,
    nak: nothing,
    term: nothing,
    working: nothing,
  };
}

/**
 * The outcome as the caller sees it. A handler's own error messages reach the caller only
 * where they are meant for it (a `NonRetryableError`, a schema's issues); any other failure
 * is logged in full and answered with a generic message.
 */
function callResult(fn: CompiledFunction, outcome: Outcome): CallResult {
  switch (outcome.kind) {
    case "success":
      return { kind: "ok", value: outcome.value };
    case "invalid": {
      const issues = outcome.error instanceof ValidationError ? outcome.error.issues : [{ path: "", message: outcome.error.message }];
      return { kind: "invalid", message: "the event does not match the function's schema", issues };
    }
    case "undecodable":
      return { kind: "invalid", message: outcome.error.message, issues: [{ path: "", message: outcome.error.message }] };
    case "error": {
      const error = outcome.error;
      if (isNonRetryableError(error)) return { kind: "rejected", message: error.message };
      if (isBreakerOpenError(error))
        return { kind: "unavailable", message: `breaker ${error.breaker} is open`, retryAfterMs: error.retryAfterMs };
      if (isRetryAfterError(error)) return { kind: "unavailable", message: error.message, retryAfterMs: error.delayMs };
      if (isStepError(error) && error.problem === "busy")
        return { kind: "unavailable", message: error.message, retryAfterMs: error.retryAfterMs ?? 1000 };
      return { kind: "failed", message: `function ${fn.name} failed` };
    }
    case "timeout":
      return { kind: "timeout", message: `function ${fn.name} did not answer within ${outcome.timeoutMs} ms` };
    case "aborted":
      // Cut off by shutdown, or by another invocation's hard timeout: worth trying again.
      return { kind: "unavailable", message: `function ${fn.name} was interrupted`, retryAfterMs: 1000 };
    case "crashed":
      return { kind: "failed", message: `function ${fn.name} failed: its worker thread ended (${outcome.reason})` };
    case "exhausted":
      return { kind: "failed", message: `function ${fn.name} failed` };
    case "duplicate":
      // Never for a call: only deliveries are settled from a completion record.
      return { kind: "ok", value: undefined };
  }
}

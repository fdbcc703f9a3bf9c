import { type Context, context as otelContext, type SpanOptions, trace } from "@opentelemetry/api";
import type { Delivery } from "../contracts/delivery.ts";
import { errorMessage } from "../contracts/error-message.ts";
import type { Outcome } from "../contracts/outcome.ts";
import type { FunctionMeters } from "../telemetry/metrics.ts";
import { type Admission, NO_BREAKERS } from "./admission.ts";
import type { Executor, Invocation } from "./executor.ts";
import type { Heartbeats } from "./heartbeats.ts";
import { invocationOutcome } from "./outcome-table.ts";
import { runWithTimeout } from "./run.ts";

const tracer = trace.getTracer("jetfn");

/** What an adapter asks the core to run. */
export interface InvocationStart {
  readonly delivery: Delivery;
  /** The span's name, options and parent. */
  readonly span: { readonly name: string; readonly options: SpanOptions; readonly parent: Context };
  /** Decided before any run (the poison guard): nothing is admitted or run, the span only records it. */
  readonly decided?: Outcome;
}

/** How a run ended, for the adapter to act on. */
export interface Ran {
  readonly invocation: Invocation;
  readonly outcome: Outcome;
  /** Set while a breaker the run went through is open: milliseconds until it lets probes through. */
  readonly breakerOpenMs?: number;
}

export interface InvocationCoreDeps {
  readonly executor: Executor;
  /** The function's `timeout`. */
  readonly timeoutMs: number;
  readonly admission: Admission;
  readonly meters: FunctionMeters;
  /** Aborts when shutdown's grace period is over: runs are cut off. */
  readonly stop: AbortSignal;
  /**
   * Deliveries: `received` is counted, `working()` reaches the server, and runs are
   * heartbeated through `heartbeats` when `heartbeat` says so. Absent for synchronous calls,
   * which have their own slots, are never held by the broker's hold, and have no message.
   */
  readonly deliveries?: { readonly heartbeats: Heartbeats; readonly heartbeat: boolean };
}

/**
 * One function's way of running an invocation, the same for a delivery and a synchronous
 * call: it admits (or refuses), counts it in flight, opens its span, runs the executor
 * under the deadline (timeout, shutdown, revocation) in the span's context, observes its
 * duration, tells admission how it ended and counts the outcome. The adapter's `then`
 * runs inside, before the span ends: the invoker settles the delivery there, the caller
 * makes its answer.
 */
export class InvocationCore {
  readonly #deps: InvocationCoreDeps;
  #inflight = 0;

  constructor(deps: InvocationCoreDeps) {
    this.#deps = deps;
  }

  /** Invocations running now (settling included). */
  get inflight(): number {
    return this.#inflight;
  }

  /** Resolves with what `then` returns, or `undefined` when admission refused the run (nothing started). */
  async invoke<T>(start: InvocationStart, then: (ran: Ran) => Promise<T> | T): Promise<T | undefined> {
    const { admission, meters, deliveries } = this.#deps;
    const { delivery } = start;
    // The poison guard needs no admission: it runs nothing.
    if (start.decided === undefined && !admission.tryAdmit(deliveries ? "delivery" : "call")) return undefined;
    if (deliveries) meters.received++;
    meters.inflight++;
    this.#inflight++;
    const span = tracer.startSpan(start.span.name, start.span.options, start.span.parent);
    const context = trace.setSpan(start.span.parent, span);
    // Two literal shapes rather than a spread: this runs for every message.
    const invocation: Invocation = deliveries
      ? {
          delivery,
          span,
          context,
          working: () => {
            delivery.working();
            meters.acks.working++;
          },
        }
      : { delivery, span, context, working: noop, call: true };
    try {
      let outcome = start.decided;
      let breakerOpenMs: number | undefined;
      if (outcome === undefined) {
        const started = performance.now();
        outcome = await otelContext.with(context, () => this.#run(invocation));
        meters.duration.observe((performance.now() - started) / 1000);
        breakerOpenMs = admission.finish(outcome, invocation.breakers ?? NO_BREAKERS);
      }
      const counted = invocationOutcome(outcome);
      if (counted) meters.invoked(counted);
      span.setAttribute("jetfn.outcome", outcome.kind);
      if (outcome.kind === "error") span.recordException(outcome.error instanceof Error ? outcome.error : errorMessage(outcome.error));
      return await then({ invocation, outcome, breakerOpenMs });
    } finally {
      span.end();
      this.#inflight--;
      meters.inflight--;
    }
  }

  /** The executor's run under the deadline, heartbeated while it may outlive half the ack wait or wait for a slot. */
  async #run(invocation: Invocation): Promise<Outcome> {
    const { executor, timeoutMs, stop, deliveries } = this.#deps;
    const unbeat = deliveries?.heartbeat ? deliveries.heartbeats.add(invocation.working) : undefined;
    try {
      const { delivery } = invocation;
      const expired = delivery.expired && (() => delivery.expired!());
      return await runWithTimeout((deadline) => executor.run(invocation, deadline), timeoutMs, stop, delivery.revoked, expired);
    } finally {
      unbeat?.();
    }
  }
}

function noop(): void {}

import { context, type Span } from "@opentelemetry/api";
import type { LoadedHandler } from "../bundle/module.ts";
import { encode } from "../codec/codec.ts";
import type { BatchItem } from "../contracts/batch.ts";
import type { Delivery } from "../contracts/delivery.ts";
import type { Outcome } from "../contracts/outcome.ts";
import type { Breaker, BreakerOptions, PublishAck, PublishOptions } from "../sdk/types.ts";
import type { Logger } from "../telemetry/logger.ts";
import { runBatchHandler } from "./batch-runner.ts";
import type { BatchInvocation, Executor, Invocation } from "./executor.ts";
import { BaseContext } from "./function-context.ts";
import { runHandler } from "./handler-runner.ts";
import type { HostContext } from "./host-context.ts";
import type { Deadline } from "./run.ts";
import type { StepBegin, StepEnd } from "./steps.ts";

/** What a run its deadline refused to start resolves to (its deadline has settled it already). */
const NOT_STARTED: Outcome = { kind: "aborted" };

/**
 * `isolation: none`: the handler runs in the host's own thread. The fastest way, for code
 * you trust: a handler that spins or exhausts the heap stops the whole host.
 */
export class InProcessExecutor implements Executor {
  readonly waitingRoom = 0;
  readonly #loaded: LoadedHandler;
  readonly #host: HostContext;

  constructor(loaded: LoadedHandler, host: HostContext) {
    this.#loaded = loaded;
    this.#host = host;
  }

  run(invocation: Invocation, deadline: Deadline): Promise<Outcome> {
    if (!deadline.start()) return Promise.resolve(NOT_STARTED);
    const host = this.#host;
    return runHandler(this.#loaded, invocation.delivery.data, host.fn.encoding, () => new InProcessContext(host, invocation, deadline));
  }

  runBatch(batch: BatchInvocation, deadline: Deadline): Promise<Outcome> {
    deadline.start();
    const host = this.#host;
    const items = batch.batch.map((delivery) => new DeliveryItem(delivery));
    return runBatchHandler(
      this.#loaded,
      items,
      host.fn.encoding,
      (index, how) => batch.settle(index, how),
      () => new InProcessContext(host, batch, deadline),
    );
  }

  status(): undefined {
    return undefined;
  }

  async close(): Promise<void> {}
}

/** `ctx` of a handler in the host's thread: served directly by the host's parts. */
class InProcessContext extends BaseContext {
  readonly #host: HostContext;
  readonly #invocation: Invocation;
  readonly #deadline: Deadline;
  #log?: Logger;

  constructor(host: HostContext, invocation: Invocation, deadline: Deadline) {
    super(host.fn.name, host.fn.config as Record<string, unknown>, invocation.delivery);
    this.#host = host;
    this.#invocation = invocation;
    this.#deadline = deadline;
  }

  get timestamp(): Date {
    return this.#invocation.delivery.timestamp;
  }

  get signal(): AbortSignal {
    return this.#deadline.signal();
  }

  get span(): Span {
    return this.#invocation.span;
  }

  get log(): Logger {
    this.#log ??= this.#host.logger(this.#invocation);
    return this.#log;
  }

  protected sendPublish(subject: string, data: unknown, options?: PublishOptions): Promise<PublishAck> {
    return this.#host.publish(this.#invocation, subject, encode(data), options);
  }

  protected namedBreaker(name: string, options?: BreakerOptions): Breaker {
    return this.#host.breaker(this.#invocation, name, options);
  }

  protected beat(): void {
    this.#invocation.working();
  }

  protected beginStep(step: string): Promise<StepBegin> {
    return this.#host.beginStep(this.#invocation, step, undefined, this.signal);
  }

  protected async inStep<T>(claim: number, fn: () => T | Promise<T>): Promise<T> {
    const stepContext = this.#host.steps.contextOf(claim);
    return stepContext ? context.with(stepContext, fn) : fn();
  }

  protected endStep(claim: number, end: StepEnd): Promise<void> {
    return this.#host.steps.end(claim, end);
  }
}

/** A delivery as a batch message shows it, each fact read when asked. */
class DeliveryItem implements BatchItem {
  readonly #delivery: Delivery;

  constructor(delivery: Delivery) {
    this.#delivery = delivery;
  }

  get data(): Uint8Array {
    return this.#delivery.data;
  }
  get subject(): string {
    return this.#delivery.subject;
  }
  get seq(): number {
    return this.#delivery.seq;
  }
  get deliveryCount(): number {
    return this.#delivery.deliveryCount;
  }
  get headers(): Readonly<Record<string, string>> {
    return this.#delivery.headers;
  }
  get timestamp(): number {
    return this.#delivery.timestamp.getTime();
  }
}

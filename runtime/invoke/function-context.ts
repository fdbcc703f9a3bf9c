import type { Span } from "@opentelemetry/api";
import { scheduleOf } from "../contracts/schedule.ts";
import type { Breaker, BreakerOptions, FunctionContext, Logger, PublishAck, PublishOptions, StreamPosition } from "../sdk/types.ts";

/** The facts of one delivery that `ctx` shows, whichever side of a thread boundary it is on. */
export interface ContextFacts {
  readonly subject: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly seq: number;
  readonly deliveryCount: number;
  readonly replayOf?: StreamPosition;
}

/**
 * `ctx`, one per invocation: the delivery's facts, and what a handler may use (its signal,
 * span, log, publish, breakers, heartbeat). The two kinds differ only in how those are
 * served: in the host's thread directly ({@link InProcessContext}), in a handler thread by
 * messages to the host (`ThreadContext`). What a handler may never use is made on first
 * use; `publish`, `breaker` and `working` are functions, not methods, as handlers
 * destructure them (`const { publish } = ctx`).
 */
export abstract class BaseContext implements FunctionContext {
  readonly function: string;
  readonly subject: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly seq: number;
  readonly deliveryCount: number;
  readonly config: Record<string, unknown>;
  readonly replay: FunctionContext["replay"];
  /** When the run started: how late a tick's run is counts from here. */
  readonly #startedAt = Date.now();
  #schedule?: FunctionContext["schedule"] | null;
  #publish?: FunctionContext["publish"];
  #breaker?: FunctionContext["breaker"];
  #working?: () => void;

  constructor(fn: string, config: Record<string, unknown>, facts: ContextFacts) {
    this.function = fn;
    this.config = config;
    this.subject = facts.subject;
    this.headers = facts.headers;
    this.seq = facts.seq;
    this.deliveryCount = facts.deliveryCount;
    this.replay = facts.replayOf ? { of: facts.replayOf } : undefined;
  }

  abstract get timestamp(): Date;

  get schedule(): FunctionContext["schedule"] {
    if (this.#schedule === undefined) this.#schedule = scheduleOf(this.headers, this.#startedAt) ?? null;
    return this.#schedule ?? undefined;
  }
  abstract get signal(): AbortSignal;
  abstract get span(): Span;
  abstract get log(): Logger;

  get publish(): FunctionContext["publish"] {
    this.#publish ??= (subject, data, options) => this.sendPublish(subject, data, options);
    return this.#publish;
  }

  get breaker(): FunctionContext["breaker"] {
    this.#breaker ??= (name, options) => this.namedBreaker(name, options);
    return this.#breaker;
  }

  get working(): () => void {
    this.#working ??= () => this.beat();
    return this.#working;
  }

  /** `ctx.publish(subject, data, options)`. */
  protected abstract sendPublish(subject: string, data: unknown, options?: PublishOptions): Promise<PublishAck>;
  /** `ctx.breaker(name, options)`. */
  protected abstract namedBreaker(name: string, options?: BreakerOptions): Breaker;
  /** `ctx.working()`. */
  protected abstract beat(): void;
}

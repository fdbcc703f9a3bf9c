import type { Span } from "@opentelemetry/api";
import { scheduleOf } from "../contracts/schedule.ts";
import { occurrenceName } from "../contracts/steps.ts";
import { isNonRetryableError, NonRetryableError, StepError } from "../sdk/errors.ts";
import type {
  Breaker,
  BreakerOptions,
  FunctionContext,
  Logger,
  PublishAck,
  PublishOptions,
  StepContext,
  StreamPosition,
} from "../sdk/types.ts";
import { describeBytes, jsonBytes, stepJson } from "./step-result.ts";
import type { StepBegin, StepEnd } from "./steps.ts";

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
  #step?: FunctionContext["step"];
  /** How often each step name was called in this run: the next call of a name is `name#<n+1>`. */
  #stepCalls?: Map<string, number>;

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

  get step(): FunctionContext["step"] {
    this.#step ??= (name, fn) => this.#runStep(name, fn);
    return this.#step as FunctionContext["step"];
  }

  /**
   * `ctx.step(name, fn)`, the same on both sides of a thread boundary: the host claims the
   * step or answers from its record (`beginStep`); `fn` runs here, under the step's span;
   * its result is checked (JSON, size) here, where it is, and recorded by the host (`endStep`).
   */
  async #runStep<T>(name: string, fn: (step: StepContext) => T | Promise<T>): Promise<T> {
    if (typeof name !== "string" || name.length === 0) throw new TypeError("ctx.step(name, fn): name must be a non-empty string");
    if (typeof fn !== "function") throw new TypeError(`ctx.step("${name}", fn): fn must be a function`);
    this.#stepCalls ??= new Map();
    const calls = (this.#stepCalls.get(name) ?? 0) + 1;
    this.#stepCalls.set(name, calls);
    const step = occurrenceName(name, calls);
    const begin = await this.beginStep(step);
    if (begin.kind === "replay") return begin.result as T;
    if (begin.kind === "failed") throw new NonRetryableError(begin.error.message);
    let value: T;
    try {
      value = await this.inStep(begin.claim, () => fn({ key: begin.key, signal: this.signal }));
    } catch (error) {
      const end: StepEnd = isNonRetryableError(error)
        ? { kind: "threw", nonRetryable: { name: "NonRetryableError", message: String(error.message) } }
        : { kind: "threw" };
      await this.endStep(begin.claim, end).catch(() => {});
      throw error;
    }
    const json = stepJson(value);
    let problem: StepError | undefined;
    if (!json.ok) {
      problem = new StepError(`step ${step} of function ${this.function}: ${json.problem}`, step, "not-json");
    } else if (jsonBytes(json.json) > begin.maxBytes) {
      const size = describeBytes(jsonBytes(json.json));
      const message = `step ${step} of function ${this.function}: its result is ${size} of JSON, over steps.maxResultSize ${describeBytes(begin.maxBytes)}`;
      problem = new StepError(message, step, "too-large");
    }
    if (problem) {
      await this.endStep(begin.claim, {
        kind: "unrecordable",
        problem: problem.problem as "not-json" | "too-large",
        message: problem.message,
      }).catch(() => {});
      throw problem;
    }
    await this.endStep(begin.claim, { kind: "done", json: json.ok ? json.json : undefined });
    return value;
  }

  /** Claims the step named `step` of this run, or answers it from its record. */
  protected abstract beginStep(step: string): Promise<StepBegin>;
  /** Runs a claimed step's function in the step's trace context. */
  protected abstract inStep<T>(claim: number, fn: () => T | Promise<T>): Promise<T>;
  /** Records how a claimed step ended. */
  protected abstract endStep(claim: number, end: StepEnd): Promise<void>;
  /** `ctx.publish(subject, data, options)`. */
  protected abstract sendPublish(subject: string, data: unknown, options?: PublishOptions): Promise<PublishAck>;
  /** `ctx.breaker(name, options)`. */
  protected abstract namedBreaker(name: string, options?: BreakerOptions): Breaker;
  /** `ctx.working()`. */
  protected abstract beat(): void;
}

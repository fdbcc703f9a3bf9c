import type { Outcome } from "./settle.ts";

/** How a run learns that its deadline passed, or that shutdown cut it off. */
export interface Deadline {
  /**
   * The invocation's AbortSignal, made on first use: most fast handlers never ask for it,
   * and an AbortController per message is a measurable share of the host's work.
   */
  signal(): AbortSignal;
  /** Calls `listener` when the run is cut off (at once if it already was). One listener. */
  onAbort(listener: (reason: Error) => void): void;
  /**
   * Starts the clock: the handler starts now. The timeout counts the handler's run, not what
   * comes before it (a worker thread starting); until then only shutdown cuts the run off.
   */
  start(): void;
}

/**
 * Runs one invocation with a deadline. The run's {@link Deadline} aborts when the timeout
 * fires or when `stop` (shutdown past its grace period) aborts. Whichever comes first
 * decides the outcome; a run that ends after that is ignored, never an unhandled
 * rejection.
 */
export function runWithTimeout(
  run: (deadline: Deadline) => Promise<Outcome>,
  timeoutMs: number,
  stop: AbortSignal,
): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    const deadline = new RunDeadline(resolve, timeoutMs, cutOffBy(stop));
    if (stop.aborted) return deadline.cutOff();
    run(deadline).then(
      (outcome) => deadline.finish(outcome),
      (error: unknown) => deadline.finish({ kind: "error", error }),
    );
  });
}

/**
 * The runs a stop signal cuts off: one listener per signal for all of them, rather than
 * one per invocation (an EventTarget listener costs more than a Set entry).
 */
const runsOf = new WeakMap<AbortSignal, Set<RunDeadline>>();

function cutOffBy(stop: AbortSignal): Set<RunDeadline> {
  let runs = runsOf.get(stop);
  if (!runs) {
    const set = new Set<RunDeadline>();
    runs = set;
    runsOf.set(stop, set);
    stop.addEventListener("abort", () => {
      for (const run of [...set]) run.cutOff();
    }, { once: true });
  }
  return runs;
}

/** One run's deadline; its methods live on the prototype, as a run's are many and short. */
class RunDeadline implements Deadline {
  readonly #resolve: (outcome: Outcome) => void;
  readonly #timeoutMs: number;
  readonly #runs: Set<RunDeadline>;
  #settled = false;
  #timer?: NodeJS.Timeout;
  #controller?: AbortController;
  #abortedWith?: Error;
  #listener?: (reason: Error) => void;

  constructor(resolve: (outcome: Outcome) => void, timeoutMs: number, runs: Set<RunDeadline>) {
    this.#resolve = resolve;
    this.#timeoutMs = timeoutMs;
    this.#runs = runs;
    runs.add(this);
  }

  start(): void {
    if (this.#settled || this.#timer) return;
    this.#timer = setTimeout(() => this.finish({ kind: "timeout", timeoutMs: this.#timeoutMs }, timeoutError(this.#timeoutMs)), this.#timeoutMs);
  }

  signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#abortedWith) this.#controller.abort(this.#abortedWith);
    }
    return this.#controller.signal;
  }

  onAbort(listener: (reason: Error) => void): void {
    if (this.#abortedWith) listener(this.#abortedWith);
    else this.#listener = listener;
  }

  /** Shutdown's grace period is over. */
  cutOff(): void {
    this.finish({ kind: "aborted" }, abortError());
  }

  finish(outcome: Outcome, abortReason?: Error): void {
    if (this.#settled) return;
    this.#settled = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#runs.delete(this);
    if (abortReason) {
      this.#abortedWith = abortReason;
      this.#controller?.abort(abortReason);
      this.#listener?.(abortReason);
    }
    this.#resolve(outcome);
  }
}

function timeoutError(timeoutMs: number): Error {
  const error = new Error(`invocation timed out after ${timeoutMs}ms`);
  error.name = "TimeoutError";
  return error;
}

function abortError(): Error {
  const error = new Error("invocation aborted: the host is shutting down");
  error.name = "AbortError";
  return error;
}

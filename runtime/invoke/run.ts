import type { Outcome } from "../contracts/outcome.ts";

/**
 * What cut a run off: its timeout, shutdown past its grace period, or the delivery's
 * revocation (an ordered function lost its partition's lease: the run must end at once,
 * as another replica will run the event).
 */
export type CutOff = "timeout" | "shutdown" | "revoked";

/** How a run learns that its deadline passed, or that shutdown or a revocation cut it off. */
export interface Deadline {
  /**
   * The invocation's AbortSignal, made on first use: most fast handlers never ask for it,
   * and an AbortController per message is a measurable share of the host's work.
   */
  signal(): AbortSignal;
  /** Calls `listener` when the run is cut off (at once if it already was). One listener. */
  onAbort(listener: (reason: Error, cause: CutOff) => void): void;
  /**
   * Starts the clock: the handler starts now. The timeout counts the handler's run, not what
   * comes before it (a worker thread starting); until then only shutdown cuts the run off.
   */
  start(): void;
}

/**
 * Runs one invocation with a deadline. The run's {@link Deadline} aborts when the timeout
 * fires, when `stop` (shutdown past its grace period) aborts, or when `revoked` (the
 * delivery was taken away from this host) aborts. Whichever comes first decides the
 * outcome; a run that ends after that is ignored, never an unhandled rejection.
 */
export function runWithTimeout(
  run: (deadline: Deadline) => Promise<Outcome>,
  timeoutMs: number,
  stop: AbortSignal,
  revoked?: AbortSignal,
): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    const deadline = new RunDeadline(resolve, timeoutMs, runsCutOffBy(stop, "shutdown"), revoked && runsCutOffBy(revoked, "revoked"));
    if (stop.aborted) return deadline.cutOff("shutdown");
    if (revoked?.aborted) return deadline.cutOff("revoked");
    run(deadline).then(
      (outcome) => deadline.finish(outcome),
      (error: unknown) => deadline.finish({ kind: "error", error }),
    );
  });
}

/**
 * The runs a signal cuts off (shutdown's, or a partition's revocation): one listener per
 * signal for all of them, rather than one per invocation (an EventTarget listener costs
 * more than a Set entry).
 */
const runsOf = new WeakMap<AbortSignal, Set<RunDeadline>>();

function runsCutOffBy(signal: AbortSignal, cause: "shutdown" | "revoked"): Set<RunDeadline> {
  let runs = runsOf.get(signal);
  if (!runs) {
    const set = new Set<RunDeadline>();
    runs = set;
    runsOf.set(signal, set);
    signal.addEventListener(
      "abort",
      () => {
        for (const run of [...set]) run.cutOff(cause);
      },
      { once: true },
    );
  }
  return runs;
}

/** One run's deadline; its methods live on the prototype, as a run's are many and short. */
class RunDeadline implements Deadline {
  readonly #resolve: (outcome: Outcome) => void;
  readonly #timeoutMs: number;
  readonly #runs: Set<RunDeadline>;
  readonly #revocable?: Set<RunDeadline>;
  #settled = false;
  #timer?: NodeJS.Timeout;
  #controller?: AbortController;
  #abortedWith?: Error;
  #cause?: CutOff;
  #listener?: (reason: Error, cause: CutOff) => void;

  constructor(resolve: (outcome: Outcome) => void, timeoutMs: number, runs: Set<RunDeadline>, revocable?: Set<RunDeadline>) {
    this.#resolve = resolve;
    this.#timeoutMs = timeoutMs;
    this.#runs = runs;
    this.#revocable = revocable;
    runs.add(this);
    revocable?.add(this);
  }

  start(): void {
    if (this.#settled || this.#timer) return;
    this.#timer = setTimeout(
      () => this.finish({ kind: "timeout", timeoutMs: this.#timeoutMs }, timeoutError(this.#timeoutMs), "timeout"),
      this.#timeoutMs,
    );
  }

  signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#abortedWith) this.#controller.abort(this.#abortedWith);
    }
    return this.#controller.signal;
  }

  onAbort(listener: (reason: Error, cause: CutOff) => void): void {
    if (this.#abortedWith) listener(this.#abortedWith, this.#cause!);
    else this.#listener = listener;
  }

  /** Shutdown's grace period is over, or the delivery was revoked. */
  cutOff(cause: "shutdown" | "revoked"): void {
    if (cause === "shutdown") this.finish({ kind: "aborted" }, abortError(), cause);
    else this.finish({ kind: "aborted", cause: "revoked" }, revokedError(), cause);
  }

  finish(outcome: Outcome, abortReason?: Error, cause?: CutOff): void {
    if (this.#settled) return;
    this.#settled = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#runs.delete(this);
    this.#revocable?.delete(this);
    if (abortReason && cause) {
      this.#abortedWith = abortReason;
      this.#cause = cause;
      this.#controller?.abort(abortReason);
      this.#listener?.(abortReason, cause);
    }
    this.#resolve(outcome);
  }
}

function timeoutError(timeoutMs: number): Error {
  const error = new Error(`invocation timed out after ${timeoutMs}ms`);
  error.name = "TimeoutError";
  return error;
}

function revokedError(): Error {
  const error = new Error("invocation aborted: this host lost the lease of the event's partition; another replica runs it");
  error.name = "AbortError";
  return error;
}

function abortError(): Error {
  const error = new Error("invocation aborted: the host is shutting down");
  error.name = "AbortError";
  return error;
}

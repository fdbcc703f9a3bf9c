import type { Outcome } from "../contracts/outcome.ts";

/**
 * What cut a run off: its timeout, shutdown past its grace period, or the delivery's
 * revocation (an ordered function lost its partition's lease: the run must end at once,
 * as another replica will run the event).
 */
export type CutOff = "timeout" | "shutdown" | "revoked" | "expired";

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
   * False when the run must not start after all: its delivery expired while it waited (see
   * `Delivery.expired`), or it was cut off already.
   */
  start(): boolean;
}

/**
 * Runs one invocation with a deadline. The run's {@link Deadline} aborts when the timeout
 * fires, when `stop` (shutdown past its grace period) aborts, or when `revoked` (the
 * delivery was taken away from this host) aborts. Whichever comes first decides the
 * outcome; a run that ends after that is ignored, never an unhandled rejection. A run that
 * ends after its deadline before the timer could say so (the process stalled: a SIGSTOP, a
 * long pause) timed out all the same: it is never settled as if it had ended on time.
 */
export function runWithTimeout(
  run: (deadline: Deadline) => Promise<Outcome>,
  timeoutMs: number,
  stop: AbortSignal,
  revoked?: AbortSignal,
  expired?: () => boolean,
): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    const deadline = new RunDeadline(
      resolve,
      timeoutMs,
      runsCutOffBy(stop, "shutdown"),
      revoked && runsCutOffBy(revoked, "revoked"),
      expired,
    );
    if (stop.aborted) return deadline.cutOff("shutdown");
    if (revoked?.aborted) return deadline.cutOff("revoked");
    run(deadline).then(
      (outcome) => deadline.complete(outcome),
      (error: unknown) => deadline.complete({ kind: "error", error }),
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
  /** Whether the delivery expired at the server (see `Delivery.expired`). */
  readonly #expired?: () => boolean;
  #settled = false;
  #timer?: NodeJS.Timeout;
  /** When {@link start} started the clock (performance.now()). */
  #startedAt = 0;
  #controller?: AbortController;
  #abortedWith?: Error;
  #cause?: CutOff;
  #listener?: (reason: Error, cause: CutOff) => void;

  constructor(
    resolve: (outcome: Outcome) => void,
    timeoutMs: number,
    runs: Set<RunDeadline>,
    revocable?: Set<RunDeadline>,
    expired?: () => boolean,
  ) {
    this.#resolve = resolve;
    this.#timeoutMs = timeoutMs;
    this.#runs = runs;
    this.#revocable = revocable;
    this.#expired = expired;
    runs.add(this);
    revocable?.add(this);
  }

  start(): boolean {
    if (this.#settled) return false;
    if (this.#timer) return true;
    // Held while this host stalled, past its ack wait: the server delivers it again.
    if (this.#expired?.()) {
      this.#expire();
      return false;
    }
    this.#startedAt = performance.now();
    this.#timer = setTimeout(
      () => this.finish({ kind: "timeout", timeoutMs: this.#timeoutMs }, timeoutError(this.#timeoutMs), "timeout"),
      this.#timeoutMs,
    );
    return true;
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

  /** The run's own end: after its delivery expired, nothing; after its deadline (its timer overdue), a timeout. */
  complete(outcome: Outcome): void {
    if (this.#expired?.()) {
      this.#expire();
    } else if (this.#timer && performance.now() - this.#startedAt > this.#timeoutMs) {
      this.finish({ kind: "timeout", timeoutMs: this.#timeoutMs }, timeoutError(this.#timeoutMs), "timeout");
    } else {
      this.finish(outcome);
    }
  }

  #expire(): void {
    this.finish({ kind: "aborted", cause: "expired" }, expiredError(), "expired");
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

function expiredError(): Error {
  const error = new Error("invocation aborted: its delivery's ack wait ran out while this host stalled; the server delivers it again");
  error.name = "AbortError";
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

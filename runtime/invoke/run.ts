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
  let controller: AbortController | undefined;
  let abortedWith: Error | undefined;
  let listener: ((reason: Error) => void) | undefined;
  let start = (): void => {};
  const deadline: Deadline = {
    start: () => start(),
    signal: () => {
      if (!controller) {
        controller = new AbortController();
        if (abortedWith) controller.abort(abortedWith);
      }
      return controller.signal;
    },
    onAbort: (l) => {
      if (abortedWith) l(abortedWith);
      else listener = l;
    },
  };
  return new Promise<Outcome>((resolve) => {
    let settled = false;
    const finish = (outcome: Outcome, abortReason?: Error): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      stop.removeEventListener("abort", onStop);
      if (abortReason) {
        abortedWith = abortReason;
        controller?.abort(abortReason);
        listener?.(abortReason);
      }
      resolve(outcome);
    };
    let timer: NodeJS.Timeout | undefined;
    start = () => {
      if (settled || timer) return;
      timer = setTimeout(() => finish({ kind: "timeout", timeoutMs }, timeoutError(timeoutMs)), timeoutMs);
    };
    const onStop = (): void => finish({ kind: "aborted" }, abortError());
    if (stop.aborted) return onStop();
    stop.addEventListener("abort", onStop, { once: true });

    run(deadline).then(
      (outcome) => finish(outcome),
      (error: unknown) => finish({ kind: "error", error }),
    );
  });
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

import type { Outcome } from "./settle.ts";

/**
 * Runs one invocation with a deadline. The run gets a signal that aborts when the timeout
 * fires or when `stop` (shutdown past its grace period) aborts. Whichever comes first
 * decides the outcome; a run that ends after that is ignored, never an unhandled
 * rejection.
 *
 * The signal is made on first use (`signal()`): most fast handlers never ask for it, and an
 * AbortController per message is a measurable share of the host's work.
 */
export function runWithTimeout(
  run: (signal: () => AbortSignal) => Promise<Outcome>,
  timeoutMs: number,
  stop: AbortSignal,
): Promise<Outcome> {
  let controller: AbortController | undefined;
  let abortedWith: Error | undefined;
  const signal = (): AbortSignal => {
    if (!controller) {
      controller = new AbortController();
      if (abortedWith) controller.abort(abortedWith);
    }
    return controller.signal;
  };
  return new Promise<Outcome>((resolve) => {
    let settled = false;
    const finish = (outcome: Outcome, abortReason?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stop.removeEventListener("abort", onStop);
      if (abortReason) {
        abortedWith = abortReason;
        controller?.abort(abortReason);
      }
      resolve(outcome);
    };
    const timer = setTimeout(
      () => finish({ kind: "timeout", timeoutMs }, timeoutError(timeoutMs)),
      timeoutMs,
    );
    const onStop = (): void => finish({ kind: "aborted" }, abortError());
    if (stop.aborted) return onStop();
    stop.addEventListener("abort", onStop, { once: true });

    run(signal).then(
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

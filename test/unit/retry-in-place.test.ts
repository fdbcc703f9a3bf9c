import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BROKER_RETRY, retryInPlace } from "../../runtime/resilience/retry-in-place.ts";

class Refused extends Error {}
class Own extends Error {}

/** Fails `failures` times with Refused, then resolves "done"; records when each try was made. */
function flaky(failures: number): { attempt: () => Promise<string>; tries: number[] } {
  const tries: number[] = [];
  return {
    tries,
    attempt: async () => {
      tries.push(Date.now());
      if (tries.length <= failures) throw new Refused(`refused ${tries.length}`);
      return "done";
    },
  };
}

const transient = (error: unknown) => error instanceof Refused;

describe("retryInPlace", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("tries the same again after 200 ms doubling to 5 s, jittered, until it succeeds", async () => {
    const { attempt, tries } = flaky(8);
    const seen: number[] = [];
    // random() = 1 gives the nominal delay; jitter draws from [delay/2, delay].
    const done = retryInPlace(attempt, { policy: BROKER_RETRY, transient, random: () => 1, onFailure: (_, n) => seen.push(n) });
    await vi.runAllTimersAsync();
    expect(await done).toEqual({ ok: true, value: "done" });
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const gaps = tries.slice(1).map((t, i) => t - tries[i]!);
    expect(gaps).toEqual([200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  });

  it("spreads the delays with jitter, never below half", async () => {
    const { attempt, tries } = flaky(3);
    const done = retryInPlace(attempt, { policy: BROKER_RETRY, transient, random: () => 0 });
    await vi.runAllTimersAsync();
    expect((await done).ok).toBe(true);
    expect(tries.slice(1).map((t, i) => t - tries[i]!)).toEqual([100, 200, 400]);
  });

  it("has no end of its own: an outage of an hour is waited out", async () => {
    const { attempt, tries } = flaky(Number.POSITIVE_INFINITY);
    let result: unknown;
    void retryInPlace(attempt, { policy: BROKER_RETRY, transient }).then((r) => (result = r));
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(result).toBeUndefined();
    // Capped at 5 s between tries: about 720 of them in the hour.
    expect(tries.length).toBeGreaterThan(700);
    expect(Math.max(...tries.slice(1).map((t, i) => t - tries[i]!))).toBeLessThanOrEqual(5000);
  });

  it("ends at once on a failure that is not transient, without telling onFailure", async () => {
    const onFailure = vi.fn();
    const own = new Own("too large");
    const result = await retryInPlace(() => Promise.reject(own), { policy: BROKER_RETRY, transient, onFailure });
    expect(result).toEqual({ ok: false, error: own, ended: "permanent", failures: 1 });
    expect(onFailure).not.toHaveBeenCalled();
  });

  it("ends when the signal aborts while it waits, and makes the first try even when already aborted", async () => {
    const controller = new AbortController();
    const { attempt, tries } = flaky(Number.POSITIVE_INFINITY);
    const done = retryInPlace(attempt, { policy: BROKER_RETRY, transient, signals: [controller.signal] });
    await vi.advanceTimersByTimeAsync(10_000);
    const before = tries.length;
    controller.abort();
    const result = await done;
    expect(result).toMatchObject({ ok: false, ended: "aborted", failures: before });
    expect((result as { error: unknown }).error).toBeInstanceOf(Refused);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(tries.length).toBe(before);

    const late = flaky(0);
    expect(await retryInPlace(late.attempt, { policy: BROKER_RETRY, transient, signals: [controller.signal] })).toEqual({
      ok: true,
      value: "done",
    });
    const failing = flaky(1);
    expect(await retryInPlace(failing.attempt, { policy: BROKER_RETRY, transient, signals: [controller.signal] })).toMatchObject({
      ended: "aborted",
      failures: 1,
    });
  });

  it("ends when any of its signals aborts, and leaves no listener behind", async () => {
    const stop = new AbortController();
    const revoked = new AbortController();
    let listeners = 0;
    const add = stop.signal.addEventListener.bind(stop.signal);
    const remove = stop.signal.removeEventListener.bind(stop.signal);
    stop.signal.addEventListener = ((...args: Parameters<typeof add>) => (listeners++, add(...args))) as typeof add;
    stop.signal.removeEventListener = ((...args: Parameters<typeof remove>) => (listeners--, remove(...args))) as typeof remove;
    const { attempt } = flaky(Number.POSITIVE_INFINITY);
    const done = retryInPlace(attempt, { policy: BROKER_RETRY, transient, signals: [stop.signal, revoked.signal] });
    await vi.advanceTimersByTimeAsync(20_000);
    expect(listeners).toBe(1);
    revoked.abort();
    expect(await done).toMatchObject({ ended: "aborted" });
    expect(listeners).toBe(0);
    expect(stop.signal.aborted).toBe(false);
  });

  it("gives up after policy.maxAttempts tries", async () => {
    const { attempt, tries } = flaky(Number.POSITIVE_INFINITY);
    const done = retryInPlace(attempt, { policy: { ...BROKER_RETRY, maxAttempts: 3 }, transient });
    await vi.runAllTimersAsync();
    expect(await done).toMatchObject({ ok: false, ended: "gave-up", failures: 3 });
    expect(tries).toHaveLength(3);
  });
});

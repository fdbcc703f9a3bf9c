/** The cell rule of fleet-wide rate limits (contracts/rate-limit.ts): GCRA over a TAT. */
import { describe, expect, it } from "vitest";
import { cellKey, giveBack, holdOff, parseCell, type RateSpec, take } from "../../runtime/contracts/rate-limit.ts";

// limit 10 per 1 s: a permit every 100 ms; 3 at once.
const spec: RateSpec = { intervalMs: 100, burst: 3 };

describe("rate limit cells", () => {
  it("grants a burst at once from a full bucket, then one per interval", () => {
    const first = take(undefined, 1000, 10, spec);
    expect(first).toEqual({ granted: 3, tat: 1300, waitMs: 0 });
    const denied = take(first.tat, 1000, 1, spec);
    expect(denied).toEqual({ granted: 0, tat: 1300, waitMs: 100 });
    expect(take(first.tat, 1100, 5, spec)).toEqual({ granted: 1, tat: 1400, waitMs: 0 });
    // A bucket left alone refills to its depth, never beyond.
    expect(take(1300, 60_000, 10, spec).granted).toBe(3);
  });

  it("grants exactly limit per period over a long run, whoever asks", () => {
    let tat: number | undefined;
    let granted = 0;
    // Three replicas asking in turn, every 7 ms, for 60 s.
    for (let now = 0; now < 60_000; now += 7) {
      const result = take(tat, now, 2, spec);
      if (result.granted > 0) tat = result.tat;
      granted += result.granted;
    }
    expect(granted).toBeGreaterThanOrEqual(600);
    expect(granted).toBeLessThanOrEqual(600 + spec.burst);
  });

  it("takes unused permits back, and a RetryAfterError holds everyone off, then runs at the rate", () => {
    expect(giveBack(1300, 1000, 2, spec)).toBe(1100);
    expect(giveBack(1300, 1250, 5, spec)).toBe(1250); // never before now
    expect(giveBack(900, 1000, 1, spec)).toBeUndefined(); // a full bucket: nothing to give back
    const held = holdOff(undefined, 1000, 5000, spec);
    expect(take(held, 5999, 1, spec).granted).toBe(0);
    expect(take(held, 6000, 10, spec).granted).toBe(1);
  });

  it("names cells per function and per key, and reads only TATs", () => {
    expect(cellKey("call-api")).toBe("call-api");
    expect(cellKey("call-api", "c-1")).toMatch(/^call-api\.k[A-Za-z0-9_-]+$/);
    expect(parseCell(1234.5)).toBe(1234.5);
    expect(parseCell("1234")).toBeUndefined();
    expect(parseCell(-1)).toBeUndefined();
  });
});

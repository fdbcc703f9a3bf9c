import { describe, expect, it } from "vitest";
import { durationSchema, parseDuration } from "../../runtime/config/index.ts";

describe("parseDuration", () => {
  it.each([
    ["250ms", 250],
    ["0ms", 0],
    ["0s", 0],
    ["10s", 10_000],
    ["1.5s", 1500],
    ["0.5ms", 1],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["2.5h", 9_000_000],
    ["7d", 7 * 24 * 3_600_000],
  ])("parses %s", (text, expected) => {
    expect(parseDuration(text)).toBe(expected);
  });

  it.each(["", "10", "ten", "-5s", "10 s", " 10s", "10S", "10sec", "1D", "1w", "s", "1.s", "1e3ms", "Infinitys"])("rejects %j", (text) => {
    expect(() => parseDuration(text)).toThrow(`expected a duration like 10s, got ${JSON.stringify(text)}`);
  });
});

describe("durationSchema", () => {
  it("outputs milliseconds", () => {
    expect(durationSchema.parse("30s")).toBe(30_000);
  });

  it.each([
    ["ten", 'expected a duration like 10s, got "ten"'],
    [10, "expected a duration like 10s, got 10"],
    [null, "expected a duration like 10s, got null"],
  ])("rejects %j", (value, message) => {
    const result = durationSchema.safeParse(value);
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((issue) => issue.message)).toEqual([message]);
  });
});

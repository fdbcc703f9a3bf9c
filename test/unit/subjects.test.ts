import { describe, expect, it } from "vitest";
import { isValidSubject, subjectCovers } from "../../runtime/config/index.ts";

describe("isValidSubject", () => {
  it.each(["orders", "orders.created", "orders.*", "orders.>", "*.created", ">", "a.*.c.>", "jetfn.dlq.charge-payment"])(
    "accepts %s",
    (subject) => expect(isValidSubject(subject)).toBe(true),
  );

  it.each(["", ".", "orders.", ".orders", "orders..x", "orders.>.x", "a b", "orders.cre*", "orders.x>", "tab\there"])(
    "rejects %j",
    (subject) => expect(isValidSubject(subject)).toBe(false),
  );

  it("rejects wildcards in publish subjects", () => {
    expect(isValidSubject("orders.created", { wildcards: false })).toBe(true);
    expect(isValidSubject("orders.*", { wildcards: false })).toBe(false);
    expect(isValidSubject("orders.>", { wildcards: false })).toBe(false);
  });
});

describe("subjectCovers", () => {
  it.each([
    ["orders.>", "orders.created", true],
    ["orders.>", "orders.*", true],
    ["orders.>", "orders.>", true],
    ["orders.>", "orders.a.b.c", true],
    ["orders.>", "orders", false],
    ["orders.*", "orders.created", true],
    ["orders.*", "orders.*", true],
    ["orders.*", "orders.>", false],
    ["orders.*", "orders.a.b", false],
    ["orders.created", "orders.created", true],
    ["orders.created", "orders.*", false],
    ["orders.created", "orders.updated", false],
    ["*.created", "orders.created", true],
    ["*.created", "*.created", true],
    ["*.created", "orders.*", false],
    [">", "anything.at.all", true],
    [">", ">", true],
    ["a.*.c", "a.b.c", true],
    ["a.*.c", "a.b.d", false],
    ["a.b", "a.b.c", false],
    ["a.b.c", "a.b", false],
    ["orders..x", "orders.x", false],
  ])("%s covers %s: %s", (stream, filter, expected) => {
    expect(subjectCovers(stream, filter)).toBe(expected);
  });
});

/** What `jetfn dlq show` prints of a body, and the times `--since`/`--before` accept. */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { deadLetterJson, hexDump, parseJsonBody, renderDeadLetter } from "../../runtime/cli/dead-letter-view.ts";
import { parseTimeArgument } from "../../runtime/cli/time-argument.ts";
import type { DeadLetterDetail } from "../../runtime/nats/dead-letters.ts";

const hasXxd = (() => {
  try {
    execFileSync("xxd", ["-v"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

const bytes = (length: number, start = 0) => Uint8Array.from({ length }, (_, i) => (start + i * 37) % 256);

describe("hexDump", () => {
  it("prints offset, hex in pairs and ASCII, as xxd does", () => {
    expect(hexDump(new TextEncoder().encode("Hello, world\n"))).toBe("00000000: 4865 6c6c 6f2c 2077 6f72 6c64 0a         Hello, world.");
    expect(hexDump(new Uint8Array())).toBe("");
    expect(hexDump(Uint8Array.from([0x7e, 0x7f, 0x20, 0x1f]))).toBe(`00000000: 7e7f 201f${" ".repeat(32)}~. .`);
  });

  it("matches xxd byte for byte on every line length", () => {
    if (!hasXxd) throw new Error("xxd not on PATH: install it with `apt-get install -y xxd` (.ci/run does this) — tests never skip");
    for (const length of [1, 2, 15, 16, 17, 31, 32, 33, 300]) {
      const data = bytes(length, length);
      const xxd = execFileSync("xxd", { input: data }).toString().replace(/\n$/, "");
      expect(hexDump(data), `${length} bytes`).toBe(xxd);
    }
  });
});

describe("parseJsonBody", () => {
  it("parses strict UTF-8 JSON only", () => {
    expect(parseJsonBody(new TextEncoder().encode(' {"a":[1,2]} '))).toEqual({ value: { a: [1, 2] } });
    expect(parseJsonBody(new TextEncoder().encode("null"))).toEqual({ value: null });
    expect(parseJsonBody(new TextEncoder().encode("not json"))).toBeUndefined();
    expect(parseJsonBody(new Uint8Array())).toBeUndefined();
    expect(parseJsonBody(Uint8Array.from([0x22, 0xff, 0x22]))).toBeUndefined(); // "\xff" is not UTF-8
  });
});

const letter = (data: Uint8Array): DeadLetterDetail => ({
  dlqStream: "JETFN_DLQ",
  dlqSeq: 7,
  function: "charge",
  subject: "orders.created",
  stream: "ORDERS",
  streamSeq: 41,
  deliveries: 5,
  reason: "attempts-exhausted",
  error: "Error: gateway down",
  failedAt: "2024-05-01T10:00:00.000Z",
  size: data.length,
  storedAt: "2024-05-01T10:00:00.002Z",
  headers: [
    ["Jetfn-Function", "charge"],
    ["X-Tag", "a"],
    ["X-Tag", "b"],
  ],
  data,
});

describe("renderDeadLetter and deadLetterJson", () => {
  it("shows every header value, and the body by its kind", () => {
    const json = renderDeadLetter(letter(new TextEncoder().encode('{"id":1}')));
    expect(json).toBe(
      [
        "dead letter JETFN_DLQ#7 of charge",
        "  failure     attempts-exhausted: Error: gateway down",
        "  original    orders.created, stream ORDERS seq 41",
        "  deliveries  5",
        "  failed at   2024-05-01T10:00:00.000Z",
        "  stored at   2024-05-01T10:00:00.002Z",
        "headers",
        "  Jetfn-Function: charge",
        "  X-Tag: a",
        "  X-Tag: b",
        "body: 8 bytes, JSON (pretty-printed)",
        '{\n  "id": 1\n}',
      ].join("\n"),
    );
    expect(renderDeadLetter(letter(Uint8Array.from([1])))).toMatch(/\nbody: 1 byte, not JSON \(hex\)\n00000000: 01 {39}\.$/);
    expect(renderDeadLetter(letter(new Uint8Array()))).toMatch(/\nbody: empty$/);
  });

  it("gives the exact bytes as base64, each header's values, and the parsed body only when it is JSON", () => {
    const object = deadLetterJson(letter(new TextEncoder().encode('{"id":1}')));
    expect(object).toMatchObject({
      dlqSeq: 7,
      reason: "attempts-exhausted",
      body: Buffer.from('{"id":1}').toString("base64"),
      json: { id: 1 },
    });
    expect(object.headers).toEqual({ "Jetfn-Function": ["charge"], "X-Tag": ["a", "b"] });
    expect(object).not.toHaveProperty("data");
    expect(deadLetterJson(letter(Uint8Array.from([0xff])))).not.toHaveProperty("json");
  });
});

describe("parseTimeArgument", () => {
  const now = new Date("2024-05-01T12:00:00.000Z");

  it("reads a duration as that long before now", () => {
    expect(parseTimeArgument("2h", now).toISOString()).toBe("2024-05-01T10:00:00.000Z");
    expect(parseTimeArgument("90s", now).toISOString()).toBe("2024-05-01T11:58:30.000Z");
  });

  it("reads ISO dates and date-times", () => {
    expect(parseTimeArgument("2024-04-30", now).toISOString()).toBe("2024-04-30T00:00:00.000Z");
    expect(parseTimeArgument("2024-04-30T08:15:00Z", now).toISOString()).toBe("2024-04-30T08:15:00.000Z");
    expect(parseTimeArgument("2024-04-30T08:15:00.5+02:00", now).toISOString()).toBe("2024-04-30T06:15:00.500Z");
  });

  it("refuses anything else, saying what it takes", () => {
    for (const text of ["yesterday", "2w", "-2h", "2024-13-01", "1714564800", ""]) {
      expect(() => parseTimeArgument(text, now), text).toThrow(/expected an ISO date like 2024-05-01T14:30:00Z or a duration like 2h/);
    }
  });
});

import { describe, expect, it } from "vitest";
import { formatStatusTable, formatUptime } from "../../runtime/cli/status-table.ts";
import type { FleetStatus } from "../../runtime/contracts/status.ts";
import { MinuteRing } from "../../runtime/telemetry/recent.ts";

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe("MinuteRing", () => {
  it("counts successes and failures of the last minute", () => {
    const c = clock();
    const ring = new MinuteRing(c.now);
    expect(ring.counts()).toEqual({ successes: 0, failures: 0 });
    ring.add(true);
    ring.add(true);
    ring.add(false);
    expect(ring.counts()).toEqual({ successes: 2, failures: 1 });
    c.advance(30_000);
    ring.add(false);
    expect(ring.counts()).toEqual({ successes: 2, failures: 2 });
  });

  it("forgets a 5 s bucket once it is a minute old, and reuses its slot", () => {
    const c = clock(0);
    const ring = new MinuteRing(c.now);
    ring.add(true); // bucket 0
    c.advance(5000);
    ring.add(false); // bucket 1
    c.advance(54_999); // t = 59 999: bucket 11, both still in
    expect(ring.counts()).toEqual({ successes: 1, failures: 1 });
    c.advance(1); // t = 60 000: bucket 12 takes bucket 0's slot
    expect(ring.counts()).toEqual({ successes: 0, failures: 1 });
    ring.add(true);
    ring.add(true);
    expect(ring.counts()).toEqual({ successes: 2, failures: 1 });
    c.advance(5000);
    expect(ring.counts()).toEqual({ successes: 2, failures: 0 });
  });

  it("is empty after a quiet minute or more, whatever came before", () => {
    const c = clock();
    const ring = new MinuteRing(c.now);
    for (let i = 0; i < 1000; i++) {
      ring.add(i % 3 !== 0);
      c.advance(37);
    }
    c.advance(10 * 60_000);
    expect(ring.counts()).toEqual({ successes: 0, failures: 0 });
  });

  it("does not count a bucket from the future (a clock that stepped back)", () => {
    const c = clock(100_000);
    const ring = new MinuteRing(c.now);
    ring.add(true);
    c.advance(-20_000);
    expect(ring.counts()).toEqual({ successes: 0, failures: 0 });
  });
});

describe("formatUptime", () => {
  it("shows the two largest units", () => {
    expect(formatUptime(42_300)).toBe("42s");
    expect(formatUptime(303_000)).toBe("5m03s");
    expect(formatUptime(7_500_000)).toBe("2h05m");
    expect(formatUptime(273_600_000)).toBe("3d04h");
  });
});

describe("formatStatusTable", () => {
  const fn = {
    bound: true,
    paused: false,
    inflight: 2,
    limit: 16,
    pending: 10,
    ackPending: 3,
    breakers: {},
    lastMinute: { successes: 120, failures: 4 },
    deadLettered: 1,
    deadLetter: "jetfn.dlq.x",
  };
  const status: FleetStatus = {
    at: "2024-05-01T10:00:00.000Z",
    hosts: [
      {
        id: "S1",
        host: "web-1-42-aaaaaa",
        version: "0.1.0",
        uptimeMs: 303_000,
        functions: [
          { ...fn, name: "charge-payment", breaker: "open", breakers: { "payment-api": "half-open", other: "closed" }, deadLetters: 7 },
          { ...fn, name: "send-email", paused: true, pausedReason: "smtp provider down, see INC-1234 for the whole story" },
        ],
      },
      { id: "S2", host: "web-2-43-bbbbbb", version: "0.1.0", functions: [], error: "no answer within 2000 ms (timeout)" },
    ],
  };

  it("prints one row per function per host, the host's columns on its first row", () => {
    const lines = formatStatusTable(status).split("\n");
    expect(lines[0]).toMatch(
      /^HOST\s+VERSION\s+UPTIME\s+FUNCTION\s+BOUND\s+PAUSED\s+IN FLIGHT\s+PENDING\s+ACK PENDING\s+BREAKER\s+OK 1M\s+FAILED 1M\s+DEAD LETTERS$/,
    );
    expect(lines[1]!.split(/\s{2,}/)).toEqual([
      "web-1-42-aaaaaa",
      "0.1.0",
      "5m03s",
      "charge-payment",
      "yes",
      "no",
      "2/16",
      "10",
      "3",
      "open, payment-api half-open",
      "120",
      "4",
      "7",
    ]);
    expect(lines[2]).toMatch(/^\s+send-email\s+yes\s+yes: smtp provider down, see INC-1234 for th…\s+2\/16/);
    expect(lines[2]!.trimEnd().endsWith("-")).toBe(true); // dead letters unknown
    expect(lines[3]).toMatch(/^web-2-43-bbbbbb\s+0\.1\.0\s+-\s+\(no answer within 2000 ms \(timeout\)\)$/);
    expect(lines.at(-1)).toBe("2 hosts at 2024-05-01T10:00:00.000Z");
  });

  it("adds a NEXT TICK column when a function of the fleet has a schedule", () => {
    const withSchedule: FleetStatus = {
      ...status,
      hosts: [
        {
          ...status.hosts[0]!,
          functions: [
            { ...fn, name: "expire-unpaid", schedule: { cron: "*/10 * * * *", nextTick: "2024-05-01T10:10:00.000Z" } },
            { ...fn, name: "other" },
          ],
        },
      ],
    };
    const lines = formatStatusTable(withSchedule).split("\n");
    expect(lines[0]).toMatch(/DEAD LETTERS\s+NEXT TICK$/);
    expect(lines[1]).toMatch(/expire-unpaid.*\s2024-05-01T10:10:00Z$/);
    expect(lines[2]).toMatch(/other.*\s-$/);
  });

  it("adds a RATE LIMIT column when a function of the fleet has one: the limit, per key, and whether it waits or fails", () => {
    const limited: FleetStatus = {
      ...status,
      hosts: [
        {
          ...status.hosts[0]!,
          functions: [
            { ...fn, name: "call-api", rateLimit: { limit: 50, periodMs: 1000, burst: 5, perKey: false, waiting: 1 } },
            {
              ...fn,
              name: "per-customer",
              rateLimit: { limit: 10, periodMs: 60_000, burst: 1, perKey: true, waiting: 0, failing: "timeout" },
            },
            { ...fn, name: "other" },
          ],
        },
      ],
    };
    const lines = formatStatusTable(limited).split("\n");
    expect(lines[0]).toMatch(/DEAD LETTERS\s+RATE LIMIT$/);
    expect(lines[1]).toMatch(/call-api.*\s50\/1s waiting$/);
    expect(lines[2]).toMatch(/per-customer.*\s10\/60s per key FAILING$/);
    expect(lines[3]).toMatch(/other.*\s-$/);
  });

  it("keeps the columns aligned", () => {
    const [header, first, second] = formatStatusTable(status).split("\n");
    const at = header!.indexOf("IN FLIGHT");
    expect(first!.slice(at, at + 4)).toBe("2/16");
    expect(second!.slice(at, at + 4)).toBe("2/16");
  });
});

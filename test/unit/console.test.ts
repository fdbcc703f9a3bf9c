/**
 * The console's pure parts: the charts' history (running totals of several hosts diffed into
 * buckets, p99 from the merged histogram), the trace link, and who may log in.
 */
import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import type { CompiledFunction } from "../../runtime/config/types.ts";
import { traceLink } from "../../runtime/console/actions.ts";
import { ConsoleAuth, isLoopback } from "../../runtime/console/auth.ts";
import { fleetView } from "../../runtime/console/fleet-view.ts";
import { FunctionHistory, quantile } from "../../runtime/console/history.ts";
import type { FleetFunctionStatus, FleetStatus, FunctionTotals } from "../../runtime/contracts/status.ts";

const BOUNDS = [0.01, 0.1, 1];

function totals(successes: number, failures: number, counts: number[]): FunctionTotals {
  return { successes, failures, duration: { bounds: BOUNDS, counts, sum: 0, count: counts.reduce((a, b) => a + b, 0) } };
}

describe("quantile", () => {
  it("interpolates within the bucket that holds the rank, as histogram_quantile does", () => {
    expect(quantile(0.5, BOUNDS, [0, 10, 0, 0])).toBeCloseTo(0.055);
    expect(quantile(0.99, BOUNDS, [99, 0, 1, 0])).toBeCloseTo(0.01);
    expect(quantile(0.99, BOUNDS, [0, 0, 0, 5])).toBe(1); // only +Inf: the highest bound
    expect(quantile(0.99, BOUNDS, [0, 0, 0, 0])).toBeUndefined();
  });
});

describe("FunctionHistory", () => {
  it("puts what each host's totals grew by into the bucket of the poll; a new or restarted host is a baseline", () => {
    const history = new FunctionHistory({ stepMs: 10_000, windowMs: 60_000 });
    history.add(100_000, [{ instance: "a", totals: totals(50, 5, [50, 5, 0, 0]) }]); // baseline
    history.add(102_000, [
      { instance: "a", totals: totals(53, 6, [53, 5, 1, 0]) },
      { instance: "b", totals: totals(7, 0, [7, 0, 0, 0]) }, // baseline
    ]);
    history.add(112_000, [
      { instance: "a", totals: totals(2, 0, [2, 0, 0, 0]) }, // restarted: a new baseline
      { instance: "b", totals: totals(9, 0, [9, 0, 0, 0]) },
    ]);
    const series = history.series(112_000);
    expect(series.t).toHaveLength(6);
    expect(series.t.at(-1)).toBe(110_000);
    expect(series.successes.slice(-2)).toEqual([3, 2]);
    expect(series.failures.slice(-2)).toEqual([1, 0]);
    expect(series.p99Ms.at(-2)).toBeGreaterThan(100); // one of 4 in the 0.1-1 s bucket
    expect(series.p99Ms.at(-1)).toBeLessThanOrEqual(10);
    expect(series.p99Ms[0]).toBeNull();
    expect(history.p99Ms(112_000)).toBeGreaterThan(100);
    // Past the window, nothing is left.
    expect(history.p99Ms(200_000)).toBeUndefined();
  });
});

describe("traceLink", () => {
  const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  it("puts the trace id of traceparent into the trace UI's URL", () => {
    expect(traceLink("http://jaeger:16686/trace/{traceId}", tp)).toBe("http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736");
    expect(traceLink("http://jaeger:16686/trace/", tp)).toBe("http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736");
    expect(traceLink(undefined, tp)).toBeUndefined();
    expect(traceLink("http://x/{traceId}", "garbage")).toBeUndefined();
    expect(traceLink("http://x/{traceId}", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")).toBeUndefined();
  });
});

describe("ConsoleAuth", () => {
  const request = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

  it("makes a session only for the right token, in an HttpOnly SameSite=Strict cookie, with its own CSRF token", () => {
    let now = 0;
    const auth = new ConsoleAuth({ token: "the-right-token-123", now: () => now });
    expect(auth.required).toBe(true);
    expect(auth.login("the-wrong-token-12", false)).toBeUndefined();
    expect(auth.login("short", false)).toBeUndefined();
    const cookie = auth.login("the-right-token-123", false)!;
    expect(cookie).toMatch(/^jetfn_console=[\w-]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/);
    const id = cookie.split(";")[0]!;
    const session = auth.session(request({ cookie: id }))!;
    expect(session).toBeDefined();
    expect(auth.session(request({ cookie: "jetfn_console=forged" }))).toBeUndefined();
    expect(auth.csrfValid(request({ "x-csrf-token": session.csrf }), session)).toBe(true);
    expect(auth.csrfValid(request({ "x-csrf-token": "nope" }), session)).toBe(false);
    expect(auth.csrfValid(request({}), session)).toBe(false);
    now += 13 * 60 * 60_000; // past its 12 hours
    expect(auth.session(request({ cookie: id }))).toBeUndefined();
  });

  it("without a token lets every request in, still asking for the CSRF token", () => {
    const auth = new ConsoleAuth({});
    const session = auth.session(request({}))!;
    expect(auth.csrfValid(request({}), session)).toBe(false);
    expect(auth.csrfValid(request({ "x-csrf-token": session.csrf }), session)).toBe(true);
  });

  it("knows loopback addresses", () => {
    for (const host of ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"]) expect(isLoopback(host)).toBe(true);
    for (const host of ["0.0.0.0", "10.0.0.1", "::", "example.com"]) expect(isLoopback(host)).toBe(false);
  });
});

describe("fleetView", () => {
  const fn = (name: string, extra: Partial<FleetFunctionStatus> = {}): FleetFunctionStatus => ({
    name,
    bound: true,
    paused: false,
    inflight: 1,
    limit: 8,
    breakers: {},
    lastMinute: { successes: 3, failures: 1 },
    deadLettered: 0,
    deadLetter: `jetfn.dlq.${name}`,
    ...extra,
  });
  const compiled = (name: string) => ({ name, stream: "S", subjects: [`s.${name}`] }) as unknown as CompiledFunction;

  it("merges each function's hosts: sums, the worst breaker, the latest consumer sample, the pause and its reason", () => {
    const status: FleetStatus = {
      at: "2026-01-01T00:00:00.000Z",
      hosts: [
        {
          id: "i1",
          host: "a",
          version: "0.1.0",
          functions: [
            fn("pay", { breaker: "closed", pending: 5, ackPending: 1, sampledAt: "2026-01-01T00:00:01Z", deadLetters: 2 }),
            fn("mail", { rateLimit: { limit: 10, periodMs: 1000, perKey: true, waiting: 2 } }),
          ],
        },
        {
          id: "i2",
          host: "b",
          version: "0.1.0",
          functions: [
            fn("pay", {
              breaker: "open",
              breakers: { gateway: "half-open" },
              pending: 7,
              ackPending: 0,
              sampledAt: "2026-01-01T00:00:03Z",
              paused: true,
              pausedReason: "db repair",
              bound: false,
              deadLetters: 2,
              schedule: { nextTick: "2026-01-01T00:10:00.000Z" },
            }),
          ],
        },
        { id: "i3", host: "c", version: "0.0.9", functions: [], error: "no answer within 2000 ms" },
      ],
    };
    const view = fleetView(status, [compiled("pay"), compiled("mail"), compiled("idle")], new Map(), {
      servers: "nats://x",
      now: 0,
      stepMs: 10_000,
    });
    const [pay, mail, idle] = view.functions;
    expect(pay).toMatchObject({
      name: "pay",
      hosts: ["a", "b"],
      bound: false,
      paused: true,
      pausedReason: "db repair",
      inflight: 2,
      limit: 16,
      pending: 7,
      ackPending: 0,
      breaker: "open, gateway half-open",
      successes: 6,
      failures: 2,
      deadLetters: 2,
      nextTick: "2026-01-01T00:10:00.000Z",
    });
    expect(pay).not.toHaveProperty("p99Ms");
    expect(mail).toMatchObject({ hosts: ["a"], bound: true, paused: false, breaker: "-", rateLimit: "10/1s per key waiting" });
    expect(idle).toMatchObject({ name: "idle", hosts: [], bound: false, inflight: 0, limit: 0, subjects: ["s.idle"] });
    expect(view.hosts.map((h) => [h.host, h.error])).toEqual([
      ["a", undefined],
      ["b", undefined],
      ["c", "no answer within 2000 ms"],
    ]);
  });
});

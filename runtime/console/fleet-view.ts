import type { CompiledFunction } from "../config/types.ts";
import type { BreakerState, FleetFunctionStatus, FleetStatus } from "../contracts/status.ts";
import type { FunctionHistory } from "./history.ts";
import type { FleetView, FunctionView, HostFunctionView, HostView } from "./view.ts";

const BREAKER_ORDER: readonly BreakerState[] = ["closed", "half-open", "open"];

/**
 * The fleet as the console shows it: one row per function of functions.yaml (hosts that
 * answered merged; a function no host runs is listed with none), and every host.
 */
export function fleetView(
  status: FleetStatus,
  functions: readonly CompiledFunction[],
  histories: ReadonlyMap<string, FunctionHistory>,
  options: { servers: string; now: number; stepMs: number },
): FleetView {
  const byName = new Map<string, { host: string; fn: FleetFunctionStatus }[]>();
  for (const host of status.hosts) {
    for (const fn of host.functions) {
      const list = byName.get(fn.name) ?? [];
      list.push({ host: host.host, fn });
      byName.set(fn.name, list);
    }
  }
  const names = [...functions.map((f) => f.name), ...[...byName.keys()].filter((n) => !functions.some((f) => f.name === n))];
  const views = names.map((name): FunctionView => {
    const compiled = functions.find((f) => f.name === name);
    const on = byName.get(name) ?? [];
    const statuses = on.map((o) => o.fn);
    const history = histories.get(name);
    const latest = statuses
      .filter((s) => s.sampledAt !== undefined)
      .sort((a, b) => (b.sampledAt ?? "").localeCompare(a.sampledAt ?? ""))[0];
    const pausedOne = statuses.find((s) => s.paused);
    const deadLetters = statuses.find((s) => s.deadLetters !== undefined)?.deadLetters;
    const ticks = statuses.map((s) => nextTickOf(s)).filter((t): t is string => t !== undefined);
    const rateLimit = statuses.map(rateLimitOf).find((r) => r !== undefined);
    const p99Ms = history?.p99Ms(options.now);
    return {
      name,
      stream: compiled?.stream ?? statuses[0]?.stream ?? "",
      subjects: compiled?.subjects ?? statuses[0]?.subjects ?? [],
      hosts: on.map((o) => o.host),
      bound: statuses.length > 0 && statuses.every((s) => s.bound),
      paused: pausedOne !== undefined,
      ...(pausedOne?.pausedReason ? { pausedReason: pausedOne.pausedReason } : {}),
      ...(pausedOne?.pausedAt ? { pausedAt: pausedOne.pausedAt } : {}),
      ...(pausedOne?.pausedBy ? { pausedBy: pausedOne.pausedBy } : {}),
      inflight: sum(statuses.map((s) => s.inflight)),
      limit: sum(statuses.map((s) => s.limit)),
      ...(latest?.pending !== undefined ? { pending: latest.pending } : {}),
      ...(latest?.ackPending !== undefined ? { ackPending: latest.ackPending } : {}),
      breaker: breakerOf(statuses),
      successes: sum(statuses.map((s) => s.lastMinute.successes)),
      failures: sum(statuses.map((s) => s.lastMinute.failures)),
      ...(p99Ms !== undefined ? { p99Ms } : {}),
      ...(deadLetters !== undefined ? { deadLetters } : {}),
      ...(ticks.length > 0 ? { nextTick: ticks.sort()[0]! } : {}),
      ...(rateLimit ? { rateLimit } : {}),
      chart: history?.series(options.now) ?? { t: [], successes: [], failures: [], p99Ms: [] },
    };
  });
  const hosts = status.hosts.map(
    (h): HostView => ({
      id: h.id,
      host: h.host,
      version: h.version,
      ...(h.startedAt !== undefined ? { startedAt: h.startedAt } : {}),
      ...(h.uptimeMs !== undefined ? { uptimeMs: h.uptimeMs } : {}),
      ...(h.state !== undefined ? { state: h.state } : {}),
      ...(h.ready !== undefined ? { ready: h.ready } : {}),
      ...(h.error !== undefined ? { error: h.error } : {}),
      functions: h.functions.map(hostFunction),
    }),
  );
  return { at: status.at, servers: options.servers, functions: views, hosts, stepMs: options.stepMs };
}

function hostFunction(fn: FleetFunctionStatus): HostFunctionView {
  const last = fn.lastRestart as { reason?: unknown; at?: unknown; error?: unknown } | undefined;
  return {
    name: fn.name,
    ...(typeof fn.isolation === "string" ? { isolation: fn.isolation } : {}),
    ...(typeof fn.restarts === "number" ? { restarts: fn.restarts } : {}),
    ...(last && typeof last.reason === "string"
      ? {
          lastRestart: {
            reason: last.reason,
            at: typeof last.at === "string" ? last.at : "",
            ...(typeof last.error === "string" ? { error: last.error } : {}),
          },
        }
      : {}),
  };
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** The worst of the hosts' own breakers, then named breakers that are not closed. */
function breakerOf(statuses: readonly FleetFunctionStatus[]): string {
  const own = statuses.map((s) => s.breaker).filter((b): b is BreakerState => b !== undefined);
  const worst = own.sort((a, b) => BREAKER_ORDER.indexOf(b) - BREAKER_ORDER.indexOf(a))[0];
  const named = new Map<string, BreakerState>();
  for (const s of statuses) {
    for (const [name, state] of Object.entries(s.breakers ?? {})) {
      if (state !== "closed" && BREAKER_ORDER.indexOf(state) > BREAKER_ORDER.indexOf(named.get(name) ?? "closed")) named.set(name, state);
    }
  }
  return [worst ?? "-", ...[...named].map(([name, state]) => `${name} ${state}`)].join(", ");
}

function nextTickOf(fn: FleetFunctionStatus): string | undefined {
  const schedule = fn.schedule as { nextTick?: unknown } | undefined;
  return typeof schedule?.nextTick === "string" ? schedule.nextTick : undefined;
}

/** As `jetfn status`'s RATE LIMIT column. */
function rateLimitOf(fn: FleetFunctionStatus): string | undefined {
  const limit = fn.rateLimit as { limit?: number; periodMs?: number; perKey?: boolean; waiting?: number; failing?: string } | undefined;
  if (typeof limit?.limit !== "number" || typeof limit.periodMs !== "number") return undefined;
  const period = limit.periodMs % 1000 === 0 ? `${limit.periodMs / 1000}s` : `${limit.periodMs}ms`;
  const state = limit.failing !== undefined ? " FAILING" : (limit.waiting ?? 0) > 0 ? " waiting" : "";
  return `${limit.limit}/${period}${limit.perKey ? " per key" : ""}${state}`;
}

import type { FleetFunctionStatus, FleetHost, FleetStatus } from "../contracts/status.ts";

const HEADERS = [
  "HOST",
  "VERSION",
  "UPTIME",
  "FUNCTION",
  "BOUND",
  "PAUSED",
  "IN FLIGHT",
  "PENDING",
  "ACK PENDING",
  "BREAKER",
  "OK 1M",
  "FAILED 1M",
  "DEAD LETTERS",
] as const;

/** A pause's reason is cut to this in the table (`--json` has all of it). */
const MAX_REASON = 40;

/**
 * `jetfn status` as one table: a row per function per host, the host's columns on its first
 * row only. A host that did not answer gets one row saying why.
 */
export function formatStatusTable(status: FleetStatus): string {
  // A column for the next tick only when a function of the fleet has a schedule; for the rate limit, one has one.
  const scheduled = status.hosts.some((host) => host.functions.some((fn) => scheduleOf(fn) !== undefined));
  const limited = status.hosts.some((host) => host.functions.some((fn) => rateLimitOf(fn) !== undefined));
  const headers: readonly string[] = [...HEADERS, ...(limited ? ["RATE LIMIT"] : []), ...(scheduled ? ["NEXT TICK"] : [])];
  const rows: string[][] = [];
  for (const host of status.hosts) rows.push(...hostRows(host, limited, scheduled));
  // A note in place of a host's functions (it did not answer) does not widen their columns.
  const full = rows.filter((row) => row.length === headers.length);
  const widths = headers.map((header, i) => Math.max(header.length, ...full.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  const hosts = status.hosts.length;
  const summary = `${hosts} host${hosts === 1 ? "" : "s"} at ${status.at}`;
  return [line(headers), ...rows.map(line), "", summary].join("\n");
}

function hostRows(host: FleetHost, limited: boolean, scheduled: boolean): string[][] {
  const first = [host.host, host.version, host.uptimeMs === undefined ? "-" : formatUptime(host.uptimeMs)];
  const blank = ["", "", ""];
  if (host.error !== undefined) return [[...first, `(${host.error})`]];
  if (host.functions.length === 0) return [[...first, "(no functions)"]];
  return host.functions.map((fn, i) => [
    ...(i === 0 ? first : blank),
    ...functionCells(fn),
    ...(limited ? [rateLimitCell(rateLimitOf(fn))] : []),
    ...(scheduled ? [scheduleOf(fn)?.nextTick?.replace(/\.000Z$/, "Z") ?? "-"] : []),
  ]);
}

function functionCells(fn: FleetFunctionStatus): string[] {
  return [
    fn.name,
    fn.bound ? "yes" : "no",
    fn.paused ? (fn.pausedReason ? `yes: ${cut(fn.pausedReason, MAX_REASON)}` : "yes") : "no",
    `${fn.inflight}/${fn.limit}`,
    count(fn.pending),
    count(fn.ackPending),
    breakerCell(fn),
    String(fn.lastMinute.successes),
    String(fn.lastMinute.failures),
    count(fn.deadLetters),
  ];
}

/** The `rateLimit` a host reports for a rate-limited function (`RateLimiter.status`). */
interface ShownRateLimit {
  readonly limit: number;
  readonly periodMs: number;
  readonly perKey?: boolean;
  readonly waiting?: number;
  readonly failing?: string;
}

function rateLimitOf(fn: FleetFunctionStatus): ShownRateLimit | undefined {
  const limit = fn.rateLimit;
  return typeof limit === "object" && limit !== null ? (limit as ShownRateLimit) : undefined;
}

/** `50/1s`, `10/1s per key`, then `waiting` (held back now) or `FAILING` (its bucket unreachable: nothing starts). */
function rateLimitCell(limit: ShownRateLimit | undefined): string {
  if (!limit) return "-";
  const period = limit.periodMs % 1000 === 0 ? `${limit.periodMs / 1000}s` : `${limit.periodMs}ms`;
  const state = limit.failing !== undefined ? " FAILING" : (limit.waiting ?? 0) > 0 ? " waiting" : "";
  return `${limit.limit}/${period}${limit.perKey ? " per key" : ""}${state}`;
}

/** The `schedule` a host reports for a scheduled function (`FunctionRuntime.status`). */
function scheduleOf(fn: FleetFunctionStatus): { readonly nextTick?: string } | undefined {
  const schedule = fn.schedule;
  return typeof schedule === "object" && schedule !== null ? (schedule as { nextTick?: string }) : undefined;
}

/** The function's own breaker, then any named one that is not closed. */
function breakerCell(fn: FleetFunctionStatus): string {
  const named = Object.entries(fn.breakers ?? {})
    .filter(([, state]) => state !== "closed")
    .map(([name, state]) => `${name} ${state}`);
  return [fn.breaker ?? "-", ...named].join(", ");
}

function count(value: number | undefined): string {
  return value === undefined ? "-" : String(value);
}

function cut(text: string, max: number): string {
  const line = text.replace(/\s+/g, " ");
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** `42s`, `5m03s`, `2h05m`, `3d04h`: the two largest units. */
export function formatUptime(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const pad = (n: number): string => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d${pad(Math.floor(s / 3600) % 24)}h`;
}

/**
 * Test helpers for the Prometheus side of jetfn: running `promtool`, launching a private
 * `prometheus` server on a free port (its own temporary folder for config, rules and TSDB),
 * querying its HTTP API, and reading the PromQL out of a Grafana dashboard.
 *
 * Like nats-server, the binaries come from PATH (Debian's `prometheus` package installs
 * /usr/bin/prometheus and /usr/bin/promtool). Tests never skip: a missing binary is an error
 * that says how to install it.
 */
import { execFile } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { stringify } from "yaml";
import { type SpawnedChild, spawnChild } from "../../runtime/child-process.ts";
import { freePort } from "./free-port.ts";

/** How long a Prometheus server may take to answer `/-/ready`. */
const STARTUP_TIMEOUT_MS = 15_000;
/** How long `stop()` waits after SIGTERM before it falls back to SIGKILL. */
const STOP_TIMEOUT_MS = 5_000;
/** Folders searched after PATH: Debian puts the binaries in /usr/bin, CI adds the sbin ones. */
const EXTRA_BIN_DIRS = ["/usr/local/bin", "/usr/bin", "/usr/local/sbin", "/usr/sbin", "/sbin", "/bin"];

/**
 * Absolute path of the executable `name` (PATH first, then the usual bin folders).
 *
 * @throws a clear error, naming the apt package, when it is not installed.
 */
export function requireBinary(name: "prometheus" | "promtool"): string {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), ...EXTRA_BIN_DIRS];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error(
    `${name} not found on PATH (${process.env.PATH ?? ""}) nor in ${EXTRA_BIN_DIRS.join(", ")}: ` +
      "install it with `apt-get install -y prometheus` (Debian's package ships /usr/bin/prometheus " +
      "and /usr/bin/promtool; .ci/run does this) — tests never skip",
  );
}

/** What a finished command printed and how it exited. */
export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `promtool ...args` to completion; a non-zero exit is returned, not thrown. */
export function promtool(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<ToolResult> {
  const bin = requireBinary("promtool");
  return new Promise((resolve, reject) => {
    execFile(bin, args, { cwd: opts.cwd, timeout: opts.timeoutMs ?? 20_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") {
        reject(new Error(`promtool ${args.join(" ")} failed to run: ${err.message}\n${stderr}`, { cause: err }));
        return;
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

/** `prometheus --version`'s first line, e.g. "prometheus, version 2.42.0+ds (...)". */
export function prometheusVersion(): Promise<string> {
  const bin = requireBinary("prometheus");
  return new Promise((resolve, reject) => {
    execFile(bin, ["--version"], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(err);
      else resolve(`${stdout}${stderr}`.split("\n")[0]?.trim() ?? "");
    });
  });
}

// ---------------------------------------------------------------------------------------
// Prometheus HTTP API types (the parts the tests read).

/** One series of an instant-vector result. */
export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

/** `/api/v1/query` answer. */
export interface PromQueryResponse {
  status: "success" | "error";
  data?: { resultType: "vector" | "matrix" | "scalar" | "string"; result: unknown };
  errorType?: string;
  error?: string;
  warnings?: string[];
}

/** One rule of `/api/v1/rules`. */
export interface PromRule {
  name: string;
  query: string;
  health: "ok" | "err" | "unknown";
  type: "alerting" | "recording";
  lastError?: string;
  state?: string;
}

/** One group of `/api/v1/rules`. */
export interface PromRuleGroup {
  name: string;
  file: string;
  rules: PromRule[];
}

/** A private Prometheus server, see {@link startPrometheus}. */
export interface PrometheusServer {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** Temporary folder holding `prometheus.yml`, extra files, `data/` and `prometheus.log`. */
  readonly dir: string;
  readonly configFile: string;
  readonly logFile: string;
  /** Instant query; throws if Prometheus answers with an error. */
  query(expr: string): Promise<PromQueryResponse>;
  /** Instant query returning the vector's samples; throws on errors or a non-vector result. */
  vector(expr: string): Promise<PromSample[]>;
  /** `/api/v1/rules` groups. */
  ruleGroups(): Promise<PromRuleGroup[]>;
  /** The last `maxBytes` of the server's log, for failure messages. */
  logTail(maxBytes?: number): string;
  /** SIGTERM, then SIGKILL after 5 s; removes the temporary folder. Idempotent. */
  stop(): Promise<void>;
}

/** Options for {@link startPrometheus}. */
export interface StartPrometheusOptions {
  /** `prometheus.yml` content: an object (written as YAML) or the text itself. */
  config: Record<string, unknown> | string;
  /** Extra files written next to `prometheus.yml` before start (e.g. rule files), by name. */
  files?: Record<string, string>;
}

// Process-exit cleanup: no Prometheus outlives the test worker.
const liveChildren = new Set<SpawnedChild>();
let cleanupInstalled = false;

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on("exit", () => {
    for (const child of liveChildren) {
      try {
        child.process.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  });
}

function tail(file: string, maxBytes = 4096): string {
  try {
    const text = readFileSync(file, "utf8");
    return (text.length > maxBytes ? text.slice(-maxBytes) : text).trimEnd() || "(log is empty)";
  } catch (err) {
    return `(no log: ${err instanceof Error ? err.message : String(err)})`;
  }
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`GET ${url}: HTTP ${res.status}, not JSON: ${text.slice(0, 500)}`);
  }
}

/**
 * Writes `<tmpdir>/prometheus.yml` (and `files`) and starts
 * `prometheus --config.file=... --storage.tsdb.path=<tmpdir>/data
 * --web.listen-address=127.0.0.1:<free port>`, then waits for `/-/ready`. Relative paths in
 * the config (rule files) resolve against the temporary folder. If the chosen port is
 * taken in the meantime, it tries another one (three attempts).
 *
 * @throws if `prometheus` is not installed, or not ready within 15 s (with its log's tail).
 */
export async function startPrometheus(opts: StartPrometheusOptions): Promise<PrometheusServer> {
  const bin = requireBinary("prometheus");
  const dir = mkdtempSync(path.join(tmpdir(), "jetfn-prometheus-"));
  const configFile = path.join(dir, "prometheus.yml");
  const logFile = path.join(dir, "prometheus.log");
  writeFileSync(configFile, typeof opts.config === "string" ? opts.config : stringify(opts.config));
  for (const [name, text] of Object.entries(opts.files ?? {})) writeFileSync(path.join(dir, name), text);

  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await launch(bin, dir, configFile, logFile, await freePort());
    } catch (err) {
      lastError = err;
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError;
}

async function launch(bin: string, dir: string, configFile: string, logFile: string, port: number): Promise<PrometheusServer> {
  installCleanup();
  const args = [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${path.join(dir, "data")}`,
    `--web.listen-address=127.0.0.1:${port}`,
    "--log.level=info",
  ];
  const child = spawnChild(bin, args, { cwd: dir, logFile });
  await child.spawned;
  liveChildren.add(child);
  void child.exited.then(() => liveChildren.delete(child));
  const url = `http://127.0.0.1:${port}`;

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await child.stop(STOP_TIMEOUT_MS);
    if (!process.env.JETFN_KEEP_PROMETHEUS_TMP) rmSync(dir, { recursive: true, force: true });
  };

  // Wait for readiness.
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (!child.running) {
      const { exitCode, signalCode } = child.process;
      const why = `prometheus (pid ${child.pid}) exited during startup (code ${exitCode}, signal ${signalCode})`;
      throw new Error(`${why}\ncommand: ${bin} ${args.join(" ")}\nlog ${logFile}:\n${tail(logFile)}`);
    }
    try {
      const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() >= deadline) {
      const log = tail(logFile);
      await stop();
      throw new Error(`prometheus on ${url} not ready after ${STARTUP_TIMEOUT_MS} ms\ncommand: ${bin} ${args.join(" ")}\nlog:\n${log}`);
    }
    await sleep(100);
  }

  const query = async (expr: string): Promise<PromQueryResponse> => {
    const body = await getJson<PromQueryResponse>(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    if (body.status !== "success") {
      throw new Error(`query ${expr} failed: ${body.errorType ?? "?"}: ${body.error ?? JSON.stringify(body)}`);
    }
    return body;
  };

  return {
    url,
    port,
    dir,
    configFile,
    logFile,
    query,
    async vector(expr) {
      const body = await query(expr);
      if (body.data?.resultType !== "vector") {
        throw new Error(`query ${expr}: expected a vector, got ${body.data?.resultType ?? "nothing"}`);
      }
      return body.data.result as PromSample[];
    },
    async ruleGroups() {
      const body = await getJson<{ status: string; data?: { groups: PromRuleGroup[] }; error?: string }>(`${url}/api/v1/rules`);
      if (body.status !== "success" || !body.data) throw new Error(`/api/v1/rules failed: ${body.error ?? JSON.stringify(body)}`);
      return body.data.groups;
    },
    logTail: (maxBytes) => tail(logFile, maxBytes),
    stop,
  };
}

// ---------------------------------------------------------------------------------------
// Grafana dashboards.

/** One PromQL query of a dashboard panel. */
export interface DashboardExpr {
  panelId: number;
  panelTitle: string;
  refId: string;
  expr: string;
}

interface GrafanaPanel {
  id?: number;
  title?: string;
  targets?: { refId?: string; expr?: string }[];
  panels?: GrafanaPanel[];
}

/** Every `targets[].expr` of every panel (rows' nested panels included), in order. */
export function dashboardExprs(dashboard: { panels?: GrafanaPanel[] }): DashboardExpr[] {
  const out: DashboardExpr[] = [];
  const visit = (panels: GrafanaPanel[] | undefined): void => {
    for (const panel of panels ?? []) {
      for (const target of panel.targets ?? []) {
        if (typeof target.expr === "string") {
          out.push({ panelId: panel.id ?? -1, panelTitle: panel.title ?? "", refId: target.refId ?? "?", expr: target.expr });
        }
      }
      visit(panel.panels);
    }
  };
  visit(dashboard.panels);
  return out;
}

/** Values for Grafana's built-in interval variables when a query runs outside Grafana. */
const BUILTIN_INTERVALS: Record<string, string> = {
  __rate_interval: "1m",
  __interval: "1m",
  __range: "1h",
};

/**
 * Replaces Grafana variables so the query is plain PromQL: `$__rate_interval`,
 * `$__interval` and `$__range` become durations, and `$name` / `${name}` / `${name:fmt}`
 * the value given in `vars` (e.g. `{ function: ".*" }`).
 *
 * @throws on a variable that is neither built in nor in `vars`.
 */
export function substituteGrafanaVariables(expr: string, vars: Record<string, string>): string {
  return expr.replace(/\$\{(\w+)(?::[\w-]+)?\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare) as string;
    const value = BUILTIN_INTERVALS[name] ?? vars[name];
    if (value === undefined) throw new Error(`unknown Grafana variable ${whole} in: ${expr}`);
    return value;
  });
}

/**
 * The Prometheus and Grafana files under deploy/ against the real tools:
 * - deploy/prometheus/alerts.yml passes `promtool check rules`, and `promtool test rules`
 *   shows each alert firing (with its labels and rendered annotations) when it should,
 *   and staying quiet when it should not;
 * - deploy/prometheus/prometheus.yml passes `promtool check config`;
 * - every query in deploy/grafana/jetfn.json is valid PromQL (checked by promtool as
 *   recording rules) over contract metric names only;
 * - a real Prometheus, configured from the example prometheus.yml, scrapes a real host
 *   (private nats-server), sees the exact invocation and dead-letter counts, evaluates the
 *   jetfn rule group with no errors, and answers every dashboard query.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import type { Host } from "../../runtime/host.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
import { client, makeProject, REPO_ROOT, startHost } from "../support/project.ts";
import {
  dashboardExprs,
  type PrometheusServer,
  prometheusVersion,
  promtool,
  startPrometheus,
  substituteGrafanaVariables,
} from "../support/prometheus.ts";
import { waitFor } from "../support/wait-for.ts";

const ALERTS_FILE = path.join(REPO_ROOT, "deploy/prometheus/alerts.yml");
const PROMETHEUS_FILE = path.join(REPO_ROOT, "deploy/prometheus/prometheus.yml");
const DASHBOARD_FILE = path.join(REPO_ROOT, "deploy/grafana/jetfn.json");

/** DESIGN.md "Metrics", plus jetfn_build_info{version}. */
const CONTRACT_METRICS = new Set([
  "jetfn_messages_received_total",
  "jetfn_invocations_total",
  "jetfn_invocation_duration_seconds",
  "jetfn_inflight_invocations",
  "jetfn_acks_total",
  "jetfn_dead_letters_total",
  "jetfn_breaker_state",
  "jetfn_consumer_pending_messages",
  "jetfn_consumer_ack_pending_messages",
  "jetfn_end_to_end_latency_seconds",
  "jetfn_build_info",
  "jetfn_worker_restarts_total",
  "jetfn_ingress_requests_total",
  "jetfn_ingress_request_duration_seconds",
  "jetfn_partitions_owned",
  "jetfn_lease_changes_total",
  "jetfn_key_wait_seconds",
  "jetfn_schedule_ticks_total",
  "jetfn_schedule_next_tick_timestamp_seconds",
  "jetfn_delayed_events",
  "jetfn_delayed_lateness_seconds",
  "jetfn_debounced_total",
  "jetfn_steps_total",
  "jetfn_step_duration_seconds",
  "jetfn_batch_size",
]);

/** The alerts of deploy/prometheus/alerts.yml, by name, sorted. */
const ALERTS = [
  "JetfnBreakerOpen",
  "JetfnConsumerLagGrowing",
  "JetfnDeadLetters",
  "JetfnDelayedEventsLate",
  "JetfnNotReady",
  "JetfnWorkerRestarting",
];

/** Metric families a host exports today, so a live scrape must show them. */
const SCRAPED_METRICS = [
  "jetfn_messages_received_total",
  "jetfn_invocations_total",
  "jetfn_invocation_duration_seconds_bucket",
  "jetfn_inflight_invocations",
  "jetfn_acks_total",
  "jetfn_dead_letters_total",
  "jetfn_output_failures_total",
  "jetfn_end_to_end_latency_seconds_bucket",
  "jetfn_consumer_pending_messages",
  "jetfn_consumer_ack_pending_messages",
  "jetfn_build_info",
  "jetfn_worker_restarts_total",
];

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

function readAlertRules(): { groups: { name: string; rules: AlertRule[] }[] } {
  return parse(readFileSync(ALERTS_FILE, "utf8")) as { groups: { name: string; rules: AlertRule[] }[] };
}

function readDashboard(): Record<string, any> {
  return JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as Record<string, any>;
}

/** Base metric names (histogram suffixes stripped) that a PromQL text mentions. */
function jetfnMetricsIn(expr: string): string[] {
  return [...expr.matchAll(/\bjetfn_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ""));
}

function promtoolFailure(what: string, r: { code: number; stdout: string; stderr: string }): string {
  return `${what} exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

let scratch: string;

beforeAll(() => {
  scratch = mkdtempSync(path.join(tmpdir(), "jetfn-promtest-"));
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe("deploy/prometheus/alerts.yml", () => {
  it("passes promtool check rules", async () => {
    const r = await promtool(["check", "rules", ALERTS_FILE]);
    expect(r.code, promtoolFailure("promtool check rules", r)).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS: 6 rules found/);
  });

  it("has the jetfn group with the six alerts, each with a severity, summary and description", () => {
    const { groups } = readAlertRules();
    expect(groups.map((g) => g.name)).toEqual(["jetfn"]);
    const rules = groups[0]!.rules;
    expect(rules.map((r) => r.alert).sort()).toEqual(ALERTS);
    for (const rule of rules) {
      expect(["warning", "critical"], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
      for (const name of jetfnMetricsIn(rule.expr)) expect(CONTRACT_METRICS, `${rule.alert}: ${name}`).toContain(name);
    }
    const byName = Object.fromEntries(rules.map((r) => [r.alert, r]));
    expect(byName.JetfnNotReady!.expr).toContain('up{job="jetfn"} == 0');
    expect(byName.JetfnNotReady!.for).toBe("2m");
    expect(byName.JetfnNotReady!.annotations!.description).toMatch(/readyz/);
    expect(byName.JetfnBreakerOpen!.for).toBe("5m");
    expect(byName.JetfnConsumerLagGrowing!.for).toBe("10m");
  });

  it("fires each alert when it should, and not before (promtool test rules)", async () => {
    const rules = Object.fromEntries(readAlertRules().groups[0]!.rules.map((r) => [r.alert, r]));
    /** Renders an annotation template the way Prometheus does for these rules; a missing label is an error. */
    const render = (text: string, labels: Record<string, string>, value?: string): string =>
      text.replace(/\{\{\s*(.*?)\s*\}\}/g, (_, inner: string) => {
        const label = /^\$labels\.(\w+)$/.exec(inner);
        if (label) {
          const v = labels[label[1]!];
          if (v === undefined) throw new Error(`template ${inner} names a label the alert does not have`);
          return v;
        }
        if (/^\$value\b/.test(inner) && value !== undefined) return value;
        throw new Error(`template {{ ${inner} }} is not handled by this test`);
      });
    const expected = (alert: string, labels: Record<string, string>, value?: string) => {
      const rule = rules[alert]!;
      const all = { ...labels, ...rule.labels };
      return {
        exp_labels: all,
        exp_annotations: Object.fromEntries(
          Object.entries(rule.annotations ?? {}).map(([k, v]) => [k, render(v, { alertname: alert, ...all }, value)]),
        ),
      };
    };
    const unitTests = {
      rule_files: [ALERTS_FILE],
      evaluation_interval: "1m",
      tests: [
        {
          interval: "1m",
          input_series: [
            // Two replicas report the same growing backlog: one alert, for the function.
            { series: 'jetfn_consumer_pending_messages{job="jetfn",instance="a:8080",function="pay"}', values: "500+100x40" },
            { series: 'jetfn_consumer_pending_messages{job="jetfn",instance="b:8080",function="pay"}', values: "500+100x40" },
            // A large but steady backlog is not "growing".
            { series: 'jetfn_consumer_pending_messages{job="jetfn",instance="a:8080",function="steady"}', values: "5000x40" },
            { series: 'jetfn_dead_letters_total{job="jetfn",instance="a:8080",function="pay",reason="non-retryable"}', values: "0 0 3x20" },
            { series: 'jetfn_dead_letters_total{job="jetfn",instance="a:8080",function="steady",reason="invalid"}', values: "0x20" },
            { series: 'jetfn_breaker_state{job="jetfn",instance="a:8080",function="pay",breaker="function"}', values: "0 2x20" },
            { series: 'jetfn_breaker_state{job="jetfn",instance="a:8080",function="steady",breaker="function"}', values: "0 1 0x20" },
            // 5 thread restarts at 2m fire; 2 (one OOM, then a fresh thread that holds) do not.
            { series: 'jetfn_worker_restarts_total{job="jetfn",instance="a:8080",function="pay",reason="timeout"}', values: "0 0 5x30" },
            {
              series: 'jetfn_worker_restarts_total{job="jetfn",instance="a:8080",function="steady",reason="out-of-memory"}',
              values: "0 0 2x30",
            },
            { series: 'up{job="jetfn",instance="a:8080"}', values: "1 1 0x20" },
            { series: 'up{job="jetfn",instance="b:8080"}', values: "1x20" },
            { series: 'up{job="other",instance="c:9100"}', values: "0x20" },
          ],
          alert_rule_test: [
            // pending > 1000 from 6m, deriv > 0 throughout: active at 6m, firing from 16m.
            { eval_time: "15m", alertname: "JetfnConsumerLagGrowing", exp_alerts: [] },
            {
              eval_time: "17m",
              alertname: "JetfnConsumerLagGrowing",
              exp_alerts: [expected("JetfnConsumerLagGrowing", { function: "pay" })],
            },
            // 3 dead letters at 2m: increase over 5m is 3 at 3m, gone by 8m.
            { eval_time: "1m", alertname: "JetfnDeadLetters", exp_alerts: [] },
            {
              eval_time: "3m",
              alertname: "JetfnDeadLetters",
              exp_alerts: [expected("JetfnDeadLetters", { function: "pay", reason: "non-retryable" }, "3")],
            },
            { eval_time: "8m", alertname: "JetfnDeadLetters", exp_alerts: [] },
            { eval_time: "1m", alertname: "JetfnWorkerRestarting", exp_alerts: [] },
            {
              eval_time: "3m",
              alertname: "JetfnWorkerRestarting",
              exp_alerts: [expected("JetfnWorkerRestarting", { function: "pay", reason: "timeout" }, "5")],
            },
            { eval_time: "20m", alertname: "JetfnWorkerRestarting", exp_alerts: [] },
            // open from 1m: firing from 6m; a half-open blip never fires.
            { eval_time: "5m", alertname: "JetfnBreakerOpen", exp_alerts: [] },
            {
              eval_time: "7m",
              alertname: "JetfnBreakerOpen",
              exp_alerts: [expected("JetfnBreakerOpen", { function: "pay", breaker: "function" })],
            },
            // down from 2m: firing from 4m; other jobs are not ours.
            { eval_time: "3m", alertname: "JetfnNotReady", exp_alerts: [] },
            { eval_time: "5m", alertname: "JetfnNotReady", exp_alerts: [expected("JetfnNotReady", { job: "jetfn", instance: "a:8080" })] },
          ],
        },
      ],
    };
    const file = path.join(scratch, "alerts.test.yml");
    writeFileSync(file, stringify(unitTests));
    const r = await promtool(["test", "rules", file]);
    expect(r.code, promtoolFailure("promtool test rules", r)).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS/);
  });
});

describe("deploy/prometheus/prometheus.yml", () => {
  it("passes promtool check config (which also checks the alerts.yml it loads)", async () => {
    const r = await promtool(["check", "config", PROMETHEUS_FILE]);
    expect(r.code, promtoolFailure("promtool check config", r)).toBe(0);
    const config = parse(readFileSync(PROMETHEUS_FILE, "utf8")) as Record<string, any>;
    expect(config.rule_files).toEqual(["alerts.yml"]);
    expect(config.scrape_configs).toHaveLength(1);
    expect(config.scrape_configs[0].job_name).toBe("jetfn");
    expect(config.scrape_configs[0].static_configs[0].targets).toEqual(["jetfn:8080"]);
  });
});

describe("deploy/grafana/jetfn.json", () => {
  it("is an importable dashboard with a DS_PROMETHEUS input and datasource and function variables", () => {
    const dashboard = readDashboard();
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    expect(dashboard.id).toBeNull();
    expect(dashboard.__inputs).toContainEqual(
      expect.objectContaining({ name: "DS_PROMETHEUS", type: "datasource", pluginId: "prometheus" }),
    );
    const vars = Object.fromEntries((dashboard.templating.list as any[]).map((v) => [v.name, v]));
    expect(vars.datasource).toMatchObject({ type: "datasource", query: "prometheus" });
    expect(vars.datasource.current.value).toBe("${DS_PROMETHEUS}");
    expect(vars.function).toMatchObject({ type: "query", includeAll: true, multi: true, allValue: ".*" });
    expect(vars.function.definition).toBe("label_values(jetfn_invocations_total, function)");
    expect(vars.function.query.query).toBe("label_values(jetfn_invocations_total, function)");
    const ids = new Set<number>();
    for (const panel of dashboard.panels as any[]) {
      expect(ids.has(panel.id), `duplicate panel id ${panel.id}`).toBe(false);
      ids.add(panel.id);
      if (panel.type === "row") continue;
      expect(panel.datasource, panel.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      for (const t of panel.targets) expect(t.datasource, panel.title).toEqual({ type: "prometheus", uid: "${datasource}" });
    }
    const breaker = (dashboard.panels as any[]).find((p) => /breaker/i.test(p.title));
    expect(breaker.fieldConfig.defaults.mappings[0].options).toMatchObject({
      "0": { text: "closed" },
      "1": { text: "half-open" },
      "2": { text: "open" },
    });
    const inflight = (dashboard.panels as any[]).find((p) => /in-flight/i.test(p.title));
    expect(inflight.description).toMatch(/concurrency/);
  });

  it("queries every contract metric, and nothing else", () => {
    const exprs = dashboardExprs(readDashboard());
    const used = new Set(exprs.flatMap((e) => jetfnMetricsIn(e.expr)));
    for (const name of used) expect(CONTRACT_METRICS, name).toContain(name);
    for (const name of CONTRACT_METRICS) expect(used, name).toContain(name);
    const all = exprs.map((e) => e.expr).join("\n");
    expect(all).toMatch(/histogram_quantile\(0\.5, [^\n]*jetfn_invocation_duration_seconds_bucket/);
    expect(all).toMatch(/histogram_quantile\(0\.99, [^\n]*jetfn_invocation_duration_seconds_bucket/);
    expect(all).toMatch(/histogram_quantile\(0\.99, [^\n]*jetfn_end_to_end_latency_seconds_bucket/);
    expect(all).toMatch(/increase\(jetfn_dead_letters_total/);
  });

  it("has only valid PromQL (every expr checked by promtool as a recording rule)", async () => {
    const exprs = dashboardExprs(readDashboard());
    expect(exprs.length).toBeGreaterThanOrEqual(10);
    const rules = exprs.map((e) => ({
      record: `jetfn_dashboard:panel_${e.panelId}_${e.refId}`,
      expr: substituteGrafanaVariables(e.expr, { function: ".*" }),
    }));
    const file = path.join(scratch, "dashboard-rules.yml");
    writeFileSync(file, stringify({ groups: [{ name: "jetfn-dashboard", rules }] }));
    const r = await promtool(["check", "rules", file]);
    expect(r.code, promtoolFailure(`promtool check rules ${file}\n${stringify({ rules })}`, r)).toBe(0);
    expect(r.stdout).toContain(`SUCCESS: ${rules.length} rules found`);
  });
});

describe("a real Prometheus scraping a host", () => {
  let server: NatsServer | undefined;
  let nc: NatsConnection | undefined;
  let js: JetStreamClient;
  let host: Host | undefined;
  let prom: PrometheusServer | undefined;

  beforeAll(async () => {
    console.info(await prometheusVersion());
    server = await startNatsServer();
    ({ nc, js } = await client(server.url));
    const dir = makeProject(
      {
        "functions.yaml": `
defaults:
  timeout: 5s
  retry: { maxAttempts: 3, initialDelay: 100ms, maxDelay: 1s, jitter: false }
streams:
  - { name: EVT, subjects: ["evt.>"], storage: memory }
functions:
  - { name: ok, handler: fns/ok.ts, stream: EVT, subjects: [evt.ok] }
  - { name: poison, handler: fns/poison.ts, stream: EVT, subjects: [evt.poison] }
`,
      },
      { fixtures: "prometheus" },
    );
    ({ host } = await startHost(dir, server.url));
    const port = host.httpAddress!.port;

    // The example config, pointed at this host, scraping and evaluating every second.
    const config = parse(readFileSync(PROMETHEUS_FILE, "utf8")) as Record<string, any>;
    config.global = { ...config.global, scrape_interval: "1s", evaluation_interval: "1s" };
    config.rule_files = [ALERTS_FILE];
    config.scrape_configs[0].static_configs = [{ targets: [`127.0.0.1:${port}`] }];
    prom = await startPrometheus({ config });

    // Publish only once Prometheus has scraped the zero-valued series, so that increase()
    // sees the dead letters arrive (a counter first seen at 2 has no increase).
    await waitForValue('up{job="jetfn"}', 1);
    for (let n = 0; n < 5; n++) await js.publish("evt.ok", JSON.stringify({ n }));
    for (let n = 0; n < 2; n++) await js.publish("evt.poison", JSON.stringify({ n }));
  });

  afterAll(async () => {
    await prom?.stop();
    await host?.shutdown();
    await nc?.close();
    await server?.stop();
  });

  /** The single sample's value of an instant query, or undefined when it has no series. */
  async function sampleOf(expr: string): Promise<number | undefined> {
    const samples = await prom!.vector(expr);
    if (samples.length > 1) throw new Error(`${expr}: ${samples.length} series, expected one`);
    return samples[0] ? Number(samples[0].value[1]) : undefined;
  }

  async function waitForValue(expr: string, want: number): Promise<void> {
    let last: number | undefined;
    await waitFor(
      async () => {
        last = await sampleOf(expr);
        return last === want;
      },
      { timeout: 20_000, interval: 250, message: `${expr} never reached ${want}` },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; last value ${last}\nprometheus log:\n${prom!.logTail(2048)}`, { cause: err });
    });
  }

  it("sees exact invocation and dead-letter counts, and every jetfn metric family", async () => {
    await waitForValue('jetfn_invocations_total{function="ok",outcome="success"}', 5);
    // Every function has its dead-letter series from the start (at 0): sum them.
    await waitForValue('sum(jetfn_dead_letters_total{reason="non-retryable"})', 2);
    expect(await sampleOf('jetfn_dead_letters_total{function="poison",reason="non-retryable"}')).toBe(2);
    expect(await sampleOf('jetfn_messages_received_total{function="ok"}')).toBe(5);
    expect(await sampleOf('jetfn_acks_total{function="ok",action="ack"}')).toBe(5);
    expect(await sampleOf('jetfn_acks_total{function="poison",action="term"}')).toBe(2);
    expect(await sampleOf('jetfn_invocation_duration_seconds_count{function="ok"}')).toBe(5);

    const families = new Set(
      (await prom!.vector('count by (__name__) ({job="jetfn", __name__=~"jetfn_.+"})')).map((s) => s.metric.__name__),
    );
    for (const name of SCRAPED_METRICS) expect(families, name).toContain(name);
  });

  it("loads alerts.yml: the jetfn group is evaluated healthy, and the dead letters fire JetfnDeadLetters", async () => {
    const groups = await waitFor(
      async () => {
        const all = await prom!.ruleGroups();
        const jetfn = all.find((g) => g.name === "jetfn");
        const healthy = jetfn?.rules.every((r) => r.health === "ok");
        const deadLetters = jetfn?.rules.find((r) => r.name === "JetfnDeadLetters");
        return healthy && deadLetters?.state === "firing" ? all : undefined;
      },
      {
        timeout: 20_000,
        interval: 250,
        message: "jetfn rule group not evaluated healthy with JetfnDeadLetters firing",
      },
    );
    expect(groups.map((g) => g.name)).toEqual(["jetfn"]);
    const group = groups[0]!;
    expect(group.file).toBe(ALERTS_FILE);
    expect(group.rules.map((r) => r.name).sort()).toEqual(ALERTS);
    for (const rule of group.rules) {
      expect(rule.type).toBe("alerting");
      expect(rule.lastError ?? "", rule.name).toBe("");
    }
    // The two poison messages make JetfnDeadLetters fire (no `for`), and nothing else fires.
    const fired = group.rules.filter((r) => r.state !== "inactive").map((r) => r.name);
    expect(fired).toEqual(["JetfnDeadLetters"]);
  });

  it("answers every dashboard query, with data for the traffic panels", async () => {
    const exprs = dashboardExprs(readDashboard());
    for (const e of exprs) {
      const body = await prom!.query(substituteGrafanaVariables(e.expr, { function: "ok|poison" }));
      expect(body.warnings ?? [], `${e.panelTitle} ${e.refId}`).toEqual([]);
    }
    const find = (title: RegExp) => exprs.find((e) => title.test(e.panelTitle))!.expr;
    const throughput = await prom!.vector(substituteGrafanaVariables(find(/^Throughput/), { function: "ok|poison" }));
    expect(throughput.map((s) => s.metric.function).sort()).toEqual(["ok", "poison"]);
    const outcomes = await prom!.vector(substituteGrafanaVariables(find(/outcomes/), { function: "ok" }));
    const success = outcomes.find((s) => s.metric.outcome === "success");
    expect(Number(success?.value[1])).toBeGreaterThan(0);
    const inflight = await prom!.vector(substituteGrafanaVariables(find(/In-flight/), { function: "ok|poison" }));
    expect(inflight).toHaveLength(2);
    const lag = exprs.filter((e) => /lag/i.test(e.panelTitle));
    expect(lag).toHaveLength(2);
    for (const e of lag) {
      const series = await prom!.vector(substituteGrafanaVariables(e.expr, { function: "ok|poison" }));
      expect(series.map((s) => s.metric.function).sort(), e.expr).toEqual(["ok", "poison"]);
    }
    const versions = await prom!.vector(find(/version/));
    expect(versions).toHaveLength(1);
    expect(versions[0]!.metric.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(Number(versions[0]!.value[1])).toBe(1);
  });
});

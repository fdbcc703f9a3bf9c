import { Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { BucketHistogram } from "../../runtime/telemetry/meters.ts";
import { Metrics } from "../../runtime/telemetry/metrics.ts";

const BUCKETS = [0.001, 0.01, 0.1, 1];
const OBSERVED = [0.0005, 0.001, 0.002, 0.05, 0.5, 2, 0.01, 30];

describe("BucketHistogram", () => {
  it("exposes the same text as prom-client's Histogram for the same observations", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const fast = new BucketHistogram({
      name: "h",
      help: "help text",
      labelNames: ["function"] as const,
      buckets: BUCKETS,
      registers: [ours],
    });
    const reference = new Histogram({
      name: "h",
      help: "help text",
      labelNames: ["function"] as const,
      buckets: BUCKETS,
      registers: [theirs],
    });
    const child = fast.child({ function: "a" });
    for (const value of OBSERVED) {
      child.observe(value);
      reference.observe({ function: "a" }, value);
      fast.observe({ function: "b" }, value * 2);
      reference.observe({ function: "b" }, value * 2);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    // prom-client adds `exemplar: null` to each value; exemplars are off in jetfn.
    const withoutExemplars = (metrics: Awaited<ReturnType<Registry["getMetricsAsJSON"]>>) =>
      metrics.map((m) => ({
        ...m,
        values: m.values.map(({ labels, value, metricName }: { labels: object; value: number; metricName?: string }) => ({
          labels,
          value,
          metricName,
        })),
      }));
    expect(withoutExemplars(await ours.getMetricsAsJSON())).toEqual(withoutExemplars(await theirs.getMetricsAsJSON()));
  });

  it("keeps a child's series at zero after a reset", async () => {
    const registry = new Registry();
    const fast = new BucketHistogram({ name: "h", help: "h", labelNames: ["function"] as const, buckets: BUCKETS, registers: [registry] });
    fast.child({ function: "a" }).observe(0.5);
    registry.resetMetrics();
    expect(await registry.metrics()).toContain('h_count{function="a"} 0');
  });
});

describe("FunctionMeters", () => {
  it("shows counts in the counters and the gauge when scraped, adding each count once", async () => {
    const metrics = new Metrics();
    const meters = metrics.registerFunction("fn");
    meters.received += 3;
    meters.inflight = 2;
    meters.invoked("success");
    meters.invoked("error");
    meters.acks.ack += 2;
    let text = await metrics.registry.metrics();
    expect(text).toContain('jetfn_messages_received_total{function="fn"} 3');
    expect(text).toContain('jetfn_inflight_invocations{function="fn"} 2');
    expect(text).toContain('jetfn_invocations_total{function="fn",outcome="success"} 1');
    expect(text).toContain('jetfn_invocations_total{function="fn",outcome="error"} 1');
    expect(text).toContain('jetfn_acks_total{function="fn",action="ack"} 2');
    meters.received++;
    meters.inflight = 0;
    text = await metrics.registry.metrics();
    expect(text).toContain('jetfn_messages_received_total{function="fn"} 4');
    expect(text).toContain('jetfn_inflight_invocations{function="fn"} 0');
    expect(text).toContain('jetfn_acks_total{function="fn",action="ack"} 2');
    expect(metrics.lastMinute("fn")).toEqual({ successes: 1, failures: 1 });
  });
});

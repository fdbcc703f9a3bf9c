import type { Counter, Gauge, LabelValues, Metric, Registry } from "prom-client";
import type { InvocationOutcome } from "../contracts/outcome.ts";
import type { FunctionTotals } from "../contracts/status.ts";
import { MinuteRing, type RecentCounts } from "./recent.ts";

/** `jetfn_acks_total{action}` values. */
export type AckAction = "ack" | "nak" | "term" | "working";

/**
 * One label set of a {@link BucketHistogram}: per-bucket counts in an array, found by a
 * walk over the bounds. Observing allocates nothing and hashes nothing.
 */
export class HistogramChild {
  readonly labels: Readonly<Record<string, string>>;
  readonly #bounds: readonly number[];
  /** Per bucket, not cumulative; the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(labels: Readonly<Record<string, string>>, bounds: readonly number[]) {
    this.labels = labels;
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** The buckets' upper bounds in seconds (the last bucket, +Inf, has none). */
  get bounds(): readonly number[] {
    return this.#bounds;
  }

  observe(seconds: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

interface Sample {
  readonly metricName: string;
  readonly labels: Record<string, string | number>;
  readonly sharedLabels: Readonly<Record<string, string>>;
  readonly value: number;
}

/**
 * A histogram for the per-message path, rendered like prom-client's own (same series,
 * same `le` labels) from {@link HistogramChild}ren that the hot path holds. prom-client's
 * Histogram hashes the label set on every observation; with seven such calls per message
 * (two histograms, three counters, the in-flight gauge up and down) that was about a tenth
 * of the no-op path's CPU.
 */
export class BucketHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #labelNames: readonly L[];
  readonly #bounds: readonly number[];
  readonly #children = new Map<string, HistogramChild>();

  constructor(config: { name: string; help: string; labelNames: readonly L[]; buckets: readonly number[]; registers: Registry[] }) {
    this.name = config.name;
    this.help = config.help;
    this.#labelNames = config.labelNames;
    this.#bounds = [...config.buckets].sort((a, b) => a - b);
    // The registry only calls name, get(), getForPromString() and reset(): the shape of its Metric.
    for (const registry of config.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The child for one label set, made on first use; hold it on hot paths. */
  child(labels: LabelValues<L>): HistogramChild {
    const key = this.#labelNames.map((name) => labels[name]).join("\u0000");
    let child = this.#children.get(key);
    if (!child) {
      const own: Record<string, string> = {};
      for (const name of this.#labelNames) own[name] = String(labels[name] ?? "");
      this.#children.set(key, (child = new HistogramChild(own, this.#bounds)));
    }
    return child;
  }

  observe(labels: LabelValues<L>, seconds: number): void {
    this.child(labels).observe(seconds);
  }

  reset(): void {
    for (const child of this.#children.values()) {
      child.counts.fill(0);
      child.sum = 0;
      child.count = 0;
    }
  }

  /** For the text exposition: each sample's own labels and its child's, kept apart as prom-client does. */
  async getForPromString(): Promise<{ name: string; help: string; type: "histogram"; aggregator: "sum"; values: Sample[] }> {
    const values: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const child of this.#children.values()) {
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += child.counts[i]!;
        values.push({ metricName: bucket, labels: { le }, sharedLabels: child.labels, value: cumulative });
      });
      values.push(
        { metricName: bucket, labels: { le: "+Inf" }, sharedLabels: child.labels, value: child.count },
        { metricName: `${this.name}_sum`, labels: {}, sharedLabels: child.labels, value: child.sum },
        { metricName: `${this.name}_count`, labels: {}, sharedLabels: child.labels, value: child.count },
      );
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** For JSON: the labels merged, as prom-client's `get()` gives them. */
  async get(): Promise<{
    name: string;
    help: string;
    type: "histogram";
    aggregator: "sum";
    values: { metricName: string; labels: Record<string, string | number>; value: number }[];
  }> {
    const data = await this.getForPromString();
    return {
      ...data,
      values: data.values.map(({ metricName, labels, sharedLabels, value }) => ({
        metricName,
        labels: { ...labels, ...sharedLabels },
        value,
      })),
    };
  }
}

/**
 * One function's per-message counts, as plain numbers: what each delivery and call
 * touches. {@link FunctionMeters.fold} adds them into their prom-client counters and gauge
 * when the registry is scraped; the histograms' children are read directly.
 */
export class FunctionMeters {
  readonly name: string;
  received = 0;
  inflight = 0;
  /** Messages dead-lettered since the host started (a running total, never folded). */
  deadLettered = 0;
  readonly invocations: Record<InvocationOutcome, number> = {
    success: 0,
    error: 0,
    timeout: 0,
    invalid: 0,
    crashed: 0,
    duplicate: 0,
  };
  readonly acks: Record<AckAction, number> = { ack: 0, nak: 0, term: 0, working: 0 };
  readonly duration: HistogramChild;
  readonly endToEnd: HistogramChild;
  readonly #recent = new MinuteRing();
  /** Settled invocations since the host started (never folded): what {@link totals} reports. */
  readonly #settled = { successes: 0, failures: 0 };

  constructor(name: string, histograms: { duration: BucketHistogram<"function">; endToEnd: BucketHistogram<"function"> }) {
    this.name = name;
    this.duration = histograms.duration.child({ function: name });
    this.endToEnd = histograms.endToEnd.child({ function: name });
  }

  /** Counts one settled invocation, and its part of the last minute. */
  invoked(outcome: InvocationOutcome): void {
    this.invocations[outcome]++;
    const success = outcome === "success" || outcome === "duplicate";
    this.#recent.add(success);
    if (success) this.#settled.successes++;
    else this.#settled.failures++;
  }

  /** Running totals since the host started: a reader diffs two of them for any window (the console's charts). */
  totals(): FunctionTotals {
    const { duration } = this;
    return {
      ...this.#settled,
      duration: { bounds: [...duration.bounds], counts: [...duration.counts], sum: duration.sum, count: duration.count },
    };
  }

  /** The function's successes and failures in the last minute on this host. */
  lastMinute(): RecentCounts {
    return this.#recent.counts();
  }

  /** Adds what was counted since the last fold into the registry's metrics. */
  fold(into: {
    received: Counter<"function">;
    invocations: Counter<"function" | "outcome">;
    acks: Counter<"function" | "action">;
    inflight: Gauge<"function">;
  }): void {
    const fn = this.name;
    if (this.received > 0) into.received.inc({ function: fn }, this.received);
    this.received = 0;
    for (const outcome of Object.keys(this.invocations) as InvocationOutcome[]) {
      if (this.invocations[outcome] > 0) into.invocations.inc({ function: fn, outcome }, this.invocations[outcome]);
      this.invocations[outcome] = 0;
    }
    for (const action of Object.keys(this.acks) as AckAction[]) {
      if (this.acks[action] > 0) into.acks.inc({ function: fn, action }, this.acks[action]);
      this.acks[action] = 0;
    }
    into.inflight.set({ function: fn }, this.inflight);
  }
}

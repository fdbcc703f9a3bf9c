import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { OUTPUT_FAILURE_REASONS } from "../contracts/broker.ts";
import { DEAD_LETTER_REASONS } from "../contracts/dead-letter.ts";
import type { CrashReason, InvocationOutcome } from "../contracts/outcome.ts";
import type { FunctionTotals } from "../contracts/status.ts";
import { JETFN_VERSION } from "../package-root.ts";
import { type AckAction, BucketHistogram, FunctionMeters } from "./meters.ts";
import type { RecentCounts } from "./recent.ts";

export type { AckAction, FunctionMeters } from "./meters.ts";

// Sub-millisecond to minutes: handlers range from cache hits to slow batch jobs.
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/**
 * The host's one metrics registry. Names and labels are a contract (DESIGN.md, "Metrics");
 * labels carry only bounded values: function, outcome, action, reason, breaker.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly received = new Counter({
    name: "jetfn_messages_received_total",
    help: "Messages delivered to this host, redeliveries included.",
    labelNames: ["function"] as const,
    registers: [this.registry],
    collect: () => this.#fold(),
  });
  readonly invocations = new Counter({
    name: "jetfn_invocations_total",
    help: "Settled deliveries by outcome (success, error, timeout, invalid, crashed, duplicate: a run that had completed, settled from its completion record without running).",
    labelNames: ["function", "outcome"] as const,
    registers: [this.registry],
    collect: () => this.#fold(),
  });
  readonly duration = new BucketHistogram({
    name: "jetfn_invocation_duration_seconds",
    help: "Handler run time, from decode to the handler's return or failure.",
    labelNames: ["function"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly inflight = new Gauge({
    name: "jetfn_inflight_invocations",
    help: "Deliveries being worked on in this host.",
    labelNames: ["function"] as const,
    registers: [this.registry],
    collect: () => this.#fold(),
  });
  readonly acks = new Counter({
    name: "jetfn_acks_total",
    help: "Acknowledgements sent to the server by action (ack, nak, term, working).",
    labelNames: ["function", "action"] as const,
    registers: [this.registry],
    collect: () => this.#fold(),
  });
  readonly deadLetters = new Counter({
    name: "jetfn_dead_letters_total",
    help: "Messages published to the dead-letter subject, by reason.",
    labelNames: ["function", "reason"] as const,
    registers: [this.registry],
  });
  readonly outputFailures = new Counter({
    name: "jetfn_output_failures_total",
    help: "Publishes of an output or a dead letter that failed, by reason (storage-full, timeout, no-responders, disconnected, refused: the broker's, retried in place; too-large: the message's own).",
    labelNames: ["function", "reason"] as const,
    registers: [this.registry],
  });
  readonly breakerState = new Gauge({
    name: "jetfn_breaker_state",
    help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open. breaker="function" is the function\'s own.',
    labelNames: ["function", "breaker"] as const,
    registers: [this.registry],
    // Breakers leave "open" when their state is next read; a scrape reads them.
    collect: () => this.#refreshBreakers(),
  });
  readonly consumerPending = new Gauge({
    name: "jetfn_consumer_pending_messages",
    help: "Messages in the stream not yet delivered to the function's consumer (polled).",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });
  readonly consumerAckPending = new Gauge({
    name: "jetfn_consumer_ack_pending_messages",
    help: "Messages delivered to the function's consumer and not yet acked, across replicas (polled).",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });
  readonly buildInfo = new Gauge({
    name: "jetfn_build_info",
    help: "Always 1; the labels say which jetfn is running.",
    labelNames: ["version"] as const,
    registers: [this.registry],
  });
  readonly workerRestarts = new Counter({
    name: "jetfn_worker_restarts_total",
    help: "Worker threads that ended without being asked to, by reason (timeout, out-of-memory, exit, uncaught, load).",
    labelNames: ["function", "reason"] as const,
    registers: [this.registry],
  });
  readonly endToEnd = new BucketHistogram({
    name: "jetfn_end_to_end_latency_seconds",
    help: "From the message's stream timestamp to its settlement.",
    labelNames: ["function"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly ingressRequests = new Counter({
    name: "jetfn_ingress_requests_total",
    help: 'HTTP requests to the ingress listener by route template ("unmatched" for none) and status code.',
    labelNames: ["route", "status"] as const,
    registers: [this.registry],
  });
  readonly ingressDuration = new Histogram({
    name: "jetfn_ingress_request_duration_seconds",
    help: "From an ingress request's arrival to its answer, by route template.",
    labelNames: ["route"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly partitionsOwned = new Gauge({
    name: "jetfn_partitions_owned",
    help: "Partitions of an ordered function whose lease this host holds.",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });
  readonly scheduleTicks = new Counter({
    name: "jetfn_schedule_ticks_total",
    help: "Ticks of a scheduled function this host published on time (fired) or late by its catch-up policy (caught_up), or decided not to run (skipped: missed while no replica ran).",
    labelNames: ["function", "result"] as const,
    registers: [this.registry],
  });

  readonly scheduleNextTick = new Gauge({
    name: "jetfn_schedule_next_tick_timestamp_seconds",
    help: "When this host expects a scheduled function's next tick, in Unix seconds.",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });

  readonly delayedEvents = new Gauge({
    name: "jetfn_delayed_events",
    help: "Delayed events waiting in JETFN_DELAYED (all hosts'), as this host last read.",
    registers: [this.registry],
    collect: () => {
      const waiting = this.#delayedWaiting();
      if (waiting === undefined) this.delayedEvents.reset();
      else this.delayedEvents.set(waiting);
    },
  });

  readonly delayedLateness = new Histogram({
    name: "jetfn_delayed_lateness_seconds",
    help: "How long after its due time this host's mover delivered a delayed event.",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });

  readonly delayedFailures = new Counter({
    name: "jetfn_delayed_failures_total",
    help: "Deliveries of due delayed events this host's mover tried and the target refused (each is tried again, never dropped), by reason.",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  readonly rateLimited = new Counter({
    name: "jetfn_rate_limited_seconds_total",
    help: "Seconds a rate-limited function on this host was held back, waiting for permits (its events waited in the stream meanwhile).",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });

  readonly batchSize = new Histogram({
    name: "jetfn_batch_size",
    help: "Messages in each batch a batch function (batch:) ran, counted when the batch was handed over.",
    labelNames: ["function"] as const,
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000],
    registers: [this.registry],
  });

  readonly debounced = new Counter({
    name: "jetfn_debounced_total",
    help: "Events of a debounced function taken by this host that will not run: a newer event of their key took their place.",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });

  readonly leaseChanges = new Counter({
    name: "jetfn_lease_changes_total",
    help: "Partition leases taken (free, expired, reclaimed), lost (taken, unrenewed) or handed over (released) by this host.",
    labelNames: ["function", "reason"] as const,
    registers: [this.registry],
  });
  readonly keyWait = new Histogram({
    name: "jetfn_key_wait_seconds",
    help: "How long an ordered function's event waited, once pulled, for its key (and a free slot) before it started.",
    labelNames: ["function"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly functionPaused = new Gauge({
    name: "jetfn_function_paused",
    help: "1 while the function is paused by `jetfn pause` (state in the KV bucket JETFN_CONTROL), 0 otherwise.",
    labelNames: ["function"] as const,
    registers: [this.registry],
  });

  readonly steps = new Counter({
    name: "jetfn_steps_total",
    help: "ctx.step calls by result: ran (the step ran and was recorded), replayed (answered from its record), busy (another delivery of the run held it: handed back), failed (it threw, or its result could not be recorded).",
    labelNames: ["function", "result"] as const,
    registers: [this.registry],
  });
  readonly stepDuration = new Histogram({
    name: "jetfn_step_duration_seconds",
    help: "How long a step's function ran, for the steps that ran (not the replayed ones).",
    labelNames: ["function"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  #refreshBreakers: () => void = () => {};
  #delayedWaiting: () => number | undefined = () => undefined;
  /** Per function, what every message counts, as plain numbers (see meters.ts). */
  readonly #meters = new Map<string, FunctionMeters>();

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.buildInfo.set({ version: JETFN_VERSION }, 1);
  }

  /** Sets what reads every breaker's state before a scrape. */
  onBreakerScrape(refresh: () => void): void {
    this.#refreshBreakers = refresh;
  }

  /** `jetfn_delayed_events` reads the waiting count here when scraped (the host's delayed mover). */
  onDelayedScrape(waiting: () => number | undefined): void {
    this.#delayedWaiting = waiting;
  }

  /** The function's per-message meters, made on first use; every delivery and call of it counts there. */
  forFunction(fn: string): FunctionMeters {
    let meters = this.#meters.get(fn);
    if (!meters) this.#meters.set(fn, (meters = new FunctionMeters(fn, this)));
    return meters;
  }

  /** Adds the meters' counts into the counters and the in-flight gauge (before a scrape reads them). */
  #fold(): void {
    for (const meters of this.#meters.values()) meters.fold(this);
  }

  /** The function's successes and failures in the last minute on this host. */
  lastMinute(fn: string): RecentCounts {
    return this.#meters.get(fn)?.lastMinute() ?? { successes: 0, failures: 0 };
  }

  /** The function's running totals on this host (successes, failures, the duration histogram). */
  totals(fn: string): FunctionTotals | undefined {
    return this.#meters.get(fn)?.totals();
  }

  /** Messages this host dead-lettered for the function since it started, every reason. */
  deadLettered(fn: string): number {
    return this.#meters.get(fn)?.deadLettered ?? 0;
  }

  /** Makes every per-function series exist at 0, so dashboards see a function before traffic; gives its meters. */
  registerFunction(name: string): FunctionMeters {
    this.received.inc({ function: name }, 0);
    this.functionPaused.set({ function: name }, 0);
    this.inflight.set({ function: name }, 0);
    for (const outcome of ["success", "error", "timeout", "invalid", "crashed", "duplicate"] satisfies InvocationOutcome[]) {
      this.invocations.inc({ function: name, outcome }, 0);
    }
    for (const action of ["ack", "nak", "term", "working"] satisfies AckAction[]) {
      this.acks.inc({ function: name, action }, 0);
    }
    for (const reason of DEAD_LETTER_REASONS) {
      this.deadLetters.inc({ function: name, reason }, 0);
    }
    for (const reason of OUTPUT_FAILURE_REASONS) {
      this.outputFailures.inc({ function: name, reason }, 0);
    }
    for (const reason of ["timeout", "out-of-memory", "exit", "uncaught", "load"] satisfies CrashReason[]) {
      this.workerRestarts.inc({ function: name, reason }, 0);
    }
    return this.forFunction(name);
  }
}

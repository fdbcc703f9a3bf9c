import { defineConfig } from "vitest/config";

/**
 * Every test file starts its own nats-server(s); two workers suit the 2-core CI host. The
 * suites that run hosts run twice: as users run them (handlers in worker threads, the
 * default) and with `isolation: none` (JETFN_TEST_ISOLATION, read by test/support/project.ts).
 */
const shared = { testTimeout: 60_000, hookTimeout: 60_000 };

/**
 * Bad days that take a minute or more, and the fault tests of several processes or nodes
 * that the chaos minute also covers, run in `npm run test:long` (JETFN_TEST_LONG=1), not in
 * `npm test`, which must stay under 10 minutes. The chaos run (project `chaos`) runs for
 * 60 s in `npm test`; `npm run chaos -- --minutes N` sets CHAOS_SECONDS to run it longer.
 */
const LONG = [
  "test/faults/minority.test.ts",
  "test/faults/rolling-restart.test.ts",
  "test/faults/partition.test.ts",
  "test/faults/cluster.test.ts",
  "test/faults/rate-limit-cluster.test.ts",
  "test/faults/election-start.test.ts",
  "test/e2e/schedule-replicas.test.ts",
  "test/e2e/delayed-kill.test.ts",
];
/**
 * What `npm run test:long` runs: those, and the long versions of four `npm test` files (the
 * store full, the stop, the delayed events, and the partition, which adds `isolation: none`).
 */
const LONG_RUN = [
  ...LONG,
  "test/integration/broker-full.test.ts",
  "test/faults/sigstop.test.ts",
  "test/integration/delayed-scale.test.ts",
  "test/ordering/partition.test.ts",
];
const long = process.env.JETFN_TEST_LONG === "1";

export default defineConfig({
  test: {
    pool: "forks",
    maxWorkers: 2,
    coverage: { enabled: false },
    projects: [
      { test: { ...shared, name: "unit", include: ["test/unit/**/*.test.ts", "functions/**/*.test.ts"] } },
      {
        test: {
          ...shared,
          name: "worker",
          ...(long ? { include: LONG_RUN } : { include: ["test/{integration,faults,e2e,isolation,ordering}/**/*.test.ts"], exclude: LONG }),
        },
      },
      {
        test: {
          ...shared,
          name: "none",
          include: ["test/{integration,faults}/**/*.test.ts"],
          // Run once (in the worker project), as they are not about where handlers run: the
          // delayed-event mover's, the ticker's, the leases' and the schedules' own tests; the
          // NATS credentials; debounce's take and fire; the rate limits' permits; the HTTP
          // ingress; the metrics and alerts; reconnecting; hosts killed, SIGSTOPped or drained
          // and the broker killed; the broker refusing outputs (settled by the host either way); the cluster tests (leaders, and the rate limit's and
          // steps' buckets); the slow-link, partition and minority-node tests about the host's
          // connection; the rolling restart, run with jetfn start processes as users do; a start
          // during an election; the test servers themselves, provisioning, consumer lag,
          // bundling, the embedded server, a failing trace export and the service's stats.
          exclude: [
            "test/integration/delayed.test.ts",
            "test/integration/delayed-scale.test.ts",
            "test/integration/ticker.test.ts",
            "test/integration/leases.test.ts",
            "test/integration/schedule.test.ts",
            "test/integration/auth.test.ts",
            "test/integration/debounce.test.ts",
            "test/integration/broker-full.test.ts",
            "test/integration/rate-limit.test.ts",
            "test/integration/batch-rate-limit.test.ts",
            "test/integration/ingress.test.ts",
            "test/integration/prometheus.test.ts",
            "test/integration/reconnect.test.ts",
            "test/faults/host.test.ts",
            "test/faults/sigstop.test.ts",
            "test/faults/cluster.test.ts",
            "test/faults/rate-limit-cluster.test.ts",
            "test/faults/steps-cluster.test.ts",
            "test/faults/slow-link.test.ts",
            "test/faults/partition.test.ts",
            "test/faults/minority.test.ts",
            "test/faults/rolling-restart.test.ts",
            "test/faults/election-start.test.ts",
            "test/integration/support.test.ts",
            "test/integration/provision.test.ts",
            "test/integration/consumer-lag.test.ts",
            "test/integration/bundle.test.ts",
            "test/integration/embedded.test.ts",
            "test/integration/tracing-failure.test.ts",
            "test/integration/service-stats.test.ts",
          ],
          env: { JETFN_TEST_ISOLATION: "none" },
        },
      },
      { test: { ...shared, name: "chaos", include: ["test/chaos/**/*.test.ts"] } },
    ],
  },
});

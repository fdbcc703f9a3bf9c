import { defineConfig } from "vitest/config";

/**
 * Every test file starts its own nats-server(s); two workers suit the 2-core CI host.
 */
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    maxWorkers: 2,
    coverage: { enabled: false },
  },
});

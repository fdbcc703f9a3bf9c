#!/usr/bin/env node
// `npm run chaos -- --minutes N [--seed S]`: the chaos run (test/chaos/chaos.test.ts) for N
// minutes, its schedule drawn from seed S (default 1), through vitest's `chaos` project.
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { minutes: { type: "string", default: "10" }, seed: { type: "string", default: "1" } } });
const minutes = Number(values.minutes);
const seed = Number(values.seed);
if (!(minutes > 0) || !Number.isInteger(seed)) {
  console.error("usage: npm run chaos -- --minutes <N> [--seed <integer>]");
  process.exit(2);
}
const run = spawnSync("npx", ["vitest", "run", "--project", "chaos"], {
  stdio: "inherit",
  env: { ...process.env, CHAOS_SECONDS: String(Math.round(minutes * 60)), CHAOS_SEED: String(seed) },
});
process.exit(run.status ?? 1);

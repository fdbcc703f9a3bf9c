/**
 * `jetfn new` writes a vitest test beside the new handler, using `jetfn/testing`; run by
 * vitest in the project as a user runs it, it passes, and `jetfn validate` ignores it.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import { runCli } from "../support/cli.ts";
import { makeProject, REPO_ROOT, SHOP_YAML } from "../support/project.ts";

/**
 * `vitest run` in `dir`, in a clean environment (not this test run's VITEST_* variables).
 * The project lies inside this repository, so vitest finds its vitest.config.ts, whose unit
 * project takes the tests under functions/, as `npm test` in a checkout does.
 */
function vitestIn(dir: string): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, "node_modules/vitest/vitest.mjs"), "run", "--root", dir], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", CI: "1", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, output })));
}

it("writes functions/<name>.test.ts, which passes under vitest and which validate leaves alone", async () => {
  const dir = makeProject({ "functions.yaml": SHOP_YAML }, { fixtures: "dev" });
  const env = { JETFN_CONFIG: path.join(dir, "functions.yaml") };
  const created = runCli(["new", "ship-order", "--subject", "shop.paid"], env);
  expect(await created.exited).toBe(0);
  expect(created.output()).toContain(path.join(dir, "functions", "ship-order.test.ts"));
  const test = readFileSync(path.join(dir, "functions", "ship-order.test.ts"), "utf8");
  expect(test).toContain('import { invoke } from "jetfn/testing";');
  expect(test).toContain('import handler from "./ship-order.ts";');

  const run = await vitestIn(dir);
  expect(run.output).toMatch(/Tests\s+3 passed \(3\)/);
  expect(run.code).toBe(0);

  const validate = runCli(["validate"], env);
  expect(await validate.exited).toBe(0);
  expect(validate.output()).toContain("2 function(s)");

  const again = runCli(["new", "ship-order", "--subject", "shop.paid"], env);
  expect(await again.exited).toBe(2);
});

import { describe, expect, it } from "vitest";
import { isIgnoredPath, isSourceFile } from "../../runtime/project-watcher.ts";

describe("what jetfn dev watches", () => {
  it.each([
    "functions.yaml",
    "functions/greet.ts",
    "functions/lib/deep/util.mts",
    "schemas/order.ts",
    "lib/data.json",
    "tsconfig.json",
    "functions/a.js",
  ])("reloads on %s", (file) => {
    expect(isIgnoredPath(file)).toBe(false);
    expect(isSourceFile(file)).toBe(true);
  });

  it.each([
    ".jetfn/build/greet.json",
    ".jetfn/nats/jetstream/x",
    ".git/index",
    "node_modules/zod/index.js",
    "functions/node_modules/x/a.ts",
    ".vscode/settings.json",
    "functions/.greet.ts.swp",
    "functions/.#greet.ts",
  ])("never watches %s", (file) => {
    expect(isIgnoredPath(file)).toBe(true);
  });

  it.each([
    "dev.log",
    "logs/jetfn.log",
    "functions/greet.test.ts",
    "functions/greet.spec.mts",
    "functions/greet.ts.tmp",
    "functions/greet.ts~",
    "functions/sedAb12Cd",
    "functions/4913",
    "README.md",
  ])("does not reload on %s", (file) => {
    expect(isSourceFile(file)).toBe(false);
  });
});

import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PACKAGE_ROOT } from "../package-root.ts";

let script: Promise<string> | undefined;

/**
 * The file a handler thread runs. The CLI runs from its bundle in `.jetfn/runtime/`, and
 * `bin/build-runtime.js` bundles the thread's entry next to it (`worker.mjs`). Run from
 * sources (the tests) or another bundle (the benchmark), the same builder makes it, on
 * first use and again when `runtime/` changes.
 */
export function workerScript(): Promise<string> {
  script ??= locate();
  return script;
}

async function locate(): Promise<string> {
  const beside = path.join(path.dirname(fileURLToPath(import.meta.url)), "worker.mjs");
  if (existsSync(beside)) return beside;
  const builder = pathToFileURL(path.join(PACKAGE_ROOT, "bin", "build-runtime.js")).href;
  const { ensureRuntime } = (await import(builder)) as typeof import("../../bin/build-runtime.js");
  return path.join(await ensureRuntime(), "worker.mjs");
}

import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { PACKAGE_ROOT } from "../package-root.ts";

let script: Promise<string> | undefined;

/**
 * The file a handler thread runs. The CLI runs from its bundle in `.jetfn/runtime/`, and
 * `bin/jetfn.js` bundles the thread's entry next to it (`worker.mjs`). Run from sources (the
 * tests) or another bundle (the benchmark), the entry is bundled here on first use, and
 * again when `runtime/` changes.
 */
export function workerScript(): Promise<string> {
  script ??= locate();
  return script;
}

async function locate(): Promise<string> {
  const beside = path.join(path.dirname(fileURLToPath(import.meta.url)), "worker.mjs");
  if (existsSync(beside)) return beside;
  const outfile = path.join(PACKAGE_ROOT, ".jetfn", "runtime", "worker.dev.mjs");
  if (modified(outfile) >= newestSource(path.join(PACKAGE_ROOT, "runtime"))) return outfile;
  mkdirSync(path.dirname(outfile), { recursive: true });
  // A temporary name, then a rename: hosts starting at once never load half a file.
  const temporary = `${outfile}.${process.pid}.${Date.now()}.tmp`;
  await esbuild.build({
    entryPoints: [path.join(PACKAGE_ROOT, "runtime", "isolation", "thread.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: "inline",
    sourcesContent: false,
    outfile: temporary,
    logLevel: "error",
  });
  renameSync(temporary, outfile);
  return outfile;
}

function modified(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(file) : statSync(file).mtimeMs);
  }
  return newest;
}

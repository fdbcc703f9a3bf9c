#!/usr/bin/env node
// The jetfn CLI. The runtime is TypeScript: on first use (and after any change to it)
// esbuild bundles runtime/cli.ts into .jetfn/runtime/cli.mjs, and the entry of handler
// threads (runtime/isolation/thread.ts) into worker.mjs beside it, in well under a second,
// and that bundle runs. So `npm ci && npm start` needs no build step, and nothing compiles
// TypeScript per file at run time.
import { readdirSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build, version as esbuildVersion } from "esbuild";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const outdir = path.join(root, ".jetfn", "runtime");
const outfile = path.join(outdir, "cli.mjs");
const entries = { cli: path.join(root, "runtime", "cli.ts"), worker: path.join(root, "runtime", "isolation", "thread.ts") };

/** Newest modification time among the runtime's sources. */
function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(file) : statSync(file).mtimeMs);
  }
  return newest;
}

/** When the older of the two bundles was written; 0 when one is missing. */
function builtAt() {
  try {
    return Math.min(...Object.keys(entries).map((name) => statSync(path.join(outdir, `${name}.mjs`)).mtimeMs));
  } catch {
    return 0;
  }
}

if (builtAt() < newestSource(path.join(root, "runtime"))) {
  // A temporary folder, then renames: two CLIs starting at once never load half a file.
  const temporary = path.join(outdir, `.build.${process.pid}`);
  try {
    await build({
      entryPoints: entries,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      sourcemap: "inline",
      sourcesContent: false,
      outdir: temporary,
      outExtension: { ".js": ".mjs" },
      logLevel: "error",
      banner: { js: `// bundled by esbuild ${esbuildVersion} from runtime/; rebuilt when runtime/ changes` },
    });
    // The worker first: a CLI that sees the new cli.mjs finds its worker.mjs.
    for (const name of ["worker", "cli"]) renameSync(path.join(temporary, `${name}.mjs`), path.join(outdir, `${name}.mjs`));
  } finally {
    rmSync(temporary, { recursive: true, force: true });
  }
}

process.setSourceMapsEnabled(true);
const { main } = await import(pathToFileURL(outfile).href);
process.exitCode = await main(process.argv.slice(2));
// Whatever is left (a hung handler's timers) must not keep a finished command alive.
setTimeout(() => process.exit(), 1000).unref();

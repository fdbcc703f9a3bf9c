#!/usr/bin/env node
// The jetfn CLI. The runtime is TypeScript: on first use (and after any change to it)
// esbuild bundles runtime/cli.ts into .jetfn/runtime/cli.mjs, in well under a second, and
// that bundle runs. So `npm ci && npm start` needs no build step, and nothing compiles
// TypeScript per file at run time.
import { readdirSync, renameSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build, version as esbuildVersion } from "esbuild";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const outfile = path.join(root, ".jetfn", "runtime", "cli.mjs");

/** Newest modification time among the runtime's sources. */
function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(file) : statSync(file).mtimeMs);
  }
  return newest;
}

function builtAt() {
  try {
    return statSync(outfile).mtimeMs;
  } catch {
    return 0;
  }
}

if (builtAt() < newestSource(path.join(root, "runtime"))) {
  // A temporary name, then a rename: two CLIs starting at once never load half a file.
  const temporary = `${outfile}.${process.pid}.tmp`;
  await build({
    entryPoints: [path.join(root, "runtime", "cli.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: "inline",
    sourcesContent: false,
    outfile: temporary,
    logLevel: "error",
    banner: { js: `// bundled by esbuild ${esbuildVersion} from runtime/; rebuilt when runtime/ changes` },
  });
  renameSync(temporary, outfile);
}

process.setSourceMapsEnabled(true);
const { main } = await import(pathToFileURL(outfile).href);
process.exitCode = await main(process.argv.slice(2));
// Whatever is left (a hung handler's timers) must not keep a finished command alive.
setTimeout(() => process.exit(), 1000).unref();

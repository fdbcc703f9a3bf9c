// Bundles the runtime (TypeScript) with esbuild: runtime/cli.ts into .jetfn/runtime/cli.mjs,
// and the entry of handler threads (runtime/isolation/thread-entry.ts) into worker.mjs beside it,
// whenever a file under runtime/ is newer than the bundles. Used by bin/jetfn.js, and by the
// runtime itself when it runs from its sources (the tests) and needs worker.mjs.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build, version as esbuildVersion } from "esbuild";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const outdir = path.join(root, ".jetfn", "runtime");
const entries = { cli: path.join(root, "runtime", "cli.ts"), worker: path.join(root, "runtime", "isolation", "thread-entry.ts") };

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

/** Bundles the runtime when it changed; resolves with the folder holding cli.mjs and worker.mjs. */
export async function ensureRuntime() {
  if (builtAt() >= newestSource(path.join(root, "runtime"))) return outdir;
  mkdirSync(outdir, { recursive: true });
  // A temporary folder, then renames: two processes building at once never load half a file.
  const temporary = path.join(outdir, `.build.${process.pid}.${Date.now()}`);
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
  return outdir;
}

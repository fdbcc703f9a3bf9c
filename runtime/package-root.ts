import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The folder of jetfn's own package.json, found by walking up from this module: the same
 * answer whether the runtime runs from its sources (tests) or from its bundle in
 * `.jetfn/runtime/` (the CLI).
 */
export const PACKAGE_ROOT: string = findRoot(path.dirname(fileURLToPath(import.meta.url)));

/** This jetfn's version. */
export const JETFN_VERSION: string = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string })
  .version;

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: string }).name === "jetfn") return dir;
    } catch {
      // no package.json here: keep looking
    }
    if (path.dirname(dir) === dir) throw new Error(`jetfn's package.json not found above ${from}`);
  }
}

import path from "node:path";
import { build } from "esbuild";
import { PACKAGE_ROOT } from "../package-root.ts";

/** The page's script and style sheet, built once per console process. */
export interface ConsoleAssets {
  readonly js: Uint8Array;
  readonly css: Uint8Array;
}

/** The page's sources: found from the package root, as the CLI runs from its bundle in `.jetfn/runtime/`. */
const WEB = path.join(PACKAGE_ROOT, "runtime", "console", "web");

/**
 * Bundles the page from runtime/console/web/ (its TypeScript, its CSS and uPlot's) with
 * esbuild, in memory: the console serves every asset itself and needs no network.
 */
export async function buildConsoleAssets(): Promise<ConsoleAssets> {
  const result = await build({
    entryPoints: [path.join(WEB, "main.ts")],
    bundle: true,
    format: "iife",
    platform: "browser",
    target: ["chrome109", "firefox115", "safari16"],
    minify: true,
    write: false,
    outdir: "/console-assets",
    legalComments: "none",
    logLevel: "silent",
  });
  const js = result.outputFiles.find((f) => f.path.endsWith(".js"));
  const css = result.outputFiles.find((f) => f.path.endsWith(".css"));
  if (!js || !css) throw new Error("building the console's page made no script or no style sheet");
  return { js: js.contents, css: css.contents };
}

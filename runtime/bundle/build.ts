import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import * as esbuild from "esbuild";
import type { CompiledConfig } from "../config/types.ts";
import { PACKAGE_ROOT } from "../package-root.ts";
import { BundleError } from "./errors.ts";

export { BundleError } from "./errors.ts";

/** Where `jetfn build` writes and `jetfn start` looks for bundles. */
export function buildDir(config: CompiledConfig): string {
  return path.join(config.rootDir, ".jetfn", "build");
}

export interface BuiltHandler {
  readonly function: string;
  /** Absolute path of the bundle (its name carries the content hash). */
  readonly file: string;
  /** True when an earlier build whose inputs are unchanged was reused. */
  readonly reused: boolean;
}

interface Manifest {
  readonly esbuild: string;
  /** The entry file (a handler, or a route's schema), relative to the project's folder. */
  readonly handler: string;
  /** The entry's output file, relative to the build folder. */
  readonly bundle: string;
  /** The shared chunks it imports, relative to the build folder. */
  readonly chunks?: readonly string[];
  /** Every input file it was built from (path relative to the root) with its sha256. */
  readonly inputs: Record<string, string>;
}

const SDK_ENTRY = path.join(PACKAGE_ROOT, "runtime", "sdk", "index.ts");
/** `jetfn/testing`: for handler tests, which jetfn never bundles unless a handler imports it. */
const TESTING_ENTRY = path.join(PACKAGE_ROOT, "runtime", "testing", "index.ts");

/** Resolves `import ... from "jetfn"` (and `"jetfn/testing"`) in handler files to the SDK, bundled in. */
const sdkPlugin: esbuild.Plugin = {
  name: "jetfn-sdk",
  setup(build) {
    build.onResolve({ filter: /^jetfn$/ }, () => ({ path: SDK_ENTRY }));
    build.onResolve({ filter: /^jetfn\/testing$/ }, () => ({ path: TESTING_ENTRY }));
  },
};

/**
 * Bundles every function's handler with esbuild (ESM, node, inline source maps so stack
 * traces name the user's `.ts` lines), all in one build with code splitting: a dependency
 * that several handlers import (zod, the SDK, a shared lib) is one chunk, loaded once per
 * thread. When every handler's inputs hash the same as at the last build, the bundles are
 * reused. Throws one {@link BundleError} listing every error, each at its `file:line`.
 */
export async function buildHandlers(config: CompiledConfig, options: { force?: boolean } = {}): Promise<BuiltHandler[]> {
  const targets = config.functions.map((fn) => ({ name: fn.name, entry: fn.handlerPath, owner: `function ${fn.name}` }));
  const built = await buildAll(config, targets, options.force ?? false);
  return built.map(({ name, file, reused }) => ({ function: name, file, reused }));
}

/** The bundle of each distinct schema file that `routes:` name: route schemas run in the host's thread. */
export async function buildRouteSchemas(config: CompiledConfig, options: { force?: boolean } = {}): Promise<Map<string, string>> {
  const files = [...new Set(config.routes.flatMap((route) => (route.schema ? [route.schema.file] : [])))];
  const targets = files.map((file) => ({
    name: `schema.${createHash("sha256").update(path.relative(config.rootDir, file)).digest("hex").slice(0, 12)}`,
    entry: file,
    owner: `routes: ${config.routes
      .filter((r) => r.schema?.file === file)
      .map((r) => r.route)
      .join(", ")}`,
  }));
  const built = await buildAll(config, targets, options.force ?? false);
  return new Map(built.map((bundle, i) => [files[i]!, bundle.file]));
}

/** One entry of a build: its name in the build folder, its file, and who it is for (in messages). */
interface BuildTarget {
  readonly name: string;
  readonly entry: string;
  readonly owner: string;
}

interface Built {
  readonly name: string;
  readonly file: string;
  readonly reused: boolean;
}

async function buildAll(config: CompiledConfig, targets: readonly BuildTarget[], force: boolean): Promise<Built[]> {
  if (targets.length === 0) return [];
  const outDir = buildDir(config);
  mkdirSync(outDir, { recursive: true });
  // Relative to the project: a project built in one folder and run from another (an
  // image's build stage and its final stage) keeps its bundles.
  const entryOf = (target: BuildTarget): string => path.relative(config.rootDir, target.entry);
  if (!force) {
    const previous = targets.map((target) => readManifest(path.join(outDir, `${target.name}.json`)));
    if (
      previous.every((manifest, i) => manifest && manifest.handler === entryOf(targets[i]!) && isFresh(config.rootDir, outDir, manifest))
    ) {
      return targets.map((target, i) => ({ name: target.name, file: path.join(outDir, previous[i]!.bundle), reused: true }));
    }
  }
  let result: esbuild.BuildResult<{ write: false; metafile: true }>;
  try {
    result = await esbuild.build({
      absWorkingDir: config.rootDir,
      entryPoints: targets.map((target) => ({ in: target.entry, out: target.name })),
      bundle: true,
      splitting: true,
      platform: "node",
      format: "esm",
      target: "node20",
      sourcemap: "inline",
      sourcesContent: false,
      write: false,
      metafile: true,
      logLevel: "silent",
      outdir: outDir,
      entryNames: "[name].[hash]",
      chunkNames: "chunks/[name].[hash]",
      outExtension: { ".js": ".mjs" },
      plugins: [sdkPlugin],
      // Bundled CommonJS dependencies may call require(): give ESM output one.
      banner: { js: "import { createRequire as __jetfnRequire } from 'node:module'; const require = __jetfnRequire(import.meta.url);" },
    });
  } catch (error) {
    throw new BundleError(formatBuildFailure(config.rootDir, targets, error));
  }
  mkdirSync(path.join(outDir, "chunks"), { recursive: true });
  for (const file of result.outputFiles) writeFileSync(file.path, file.contents);

  const outputs = result.metafile.outputs;
  const relative = (file: string): string => path.relative(outDir, path.resolve(config.rootDir, file));
  const hashes = new Map<string, string>();
  return targets.map((target) => {
    const entryOutput = Object.keys(outputs).find(
      (out) => outputs[out]!.entryPoint !== undefined && path.resolve(config.rootDir, outputs[out]!.entryPoint!) === target.entry,
    )!;
    // The entry's output and every chunk it reaches, and what they were built from.
    const reached = new Set<string>([entryOutput]);
    for (const out of reached)
      for (const imported of outputs[out]!.imports)
        if (imported.kind === "import-statement" && outputs[imported.path]) reached.add(imported.path);
    const inputs: Record<string, string> = {};
    for (const out of reached) {
      for (const input of Object.keys(outputs[out]!.inputs)) {
        if (!hashes.has(input)) hashes.set(input, hashFile(path.resolve(config.rootDir, input)));
        inputs[input] = hashes.get(input)!;
      }
    }
    const manifest: Manifest = {
      esbuild: esbuild.version,
      handler: entryOf(target),
      bundle: relative(entryOutput),
      chunks: [...reached].filter((out) => out !== entryOutput).map(relative),
      inputs,
    };
    writeFileSync(path.join(outDir, `${target.name}.json`), JSON.stringify(manifest, null, 2));
    return { name: target.name, file: path.resolve(config.rootDir, entryOutput), reused: false };
  });
}

function readManifest(file: string): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Manifest;
  } catch {
    return undefined;
  }
}

function isFresh(rootDir: string, outDir: string, manifest: Manifest): boolean {
  if (manifest.esbuild !== esbuild.version || !existsSync(path.join(outDir, manifest.bundle))) return false;
  if (!(manifest.chunks ?? []).every((chunk) => existsSync(path.join(outDir, chunk)))) return false;
  return Object.entries(manifest.inputs).every(([input, sha]) => hashFile(path.resolve(rootDir, input)) === sha);
}

function hashFile(file: string): string {
  try {
    return createHash("sha256").update(readFileSync(file)).digest("hex");
  } catch {
    return "missing";
  }
}

function formatBuildFailure(rootDir: string, targets: readonly BuildTarget[], error: unknown): string {
  const errors = (error as { errors?: esbuild.Message[] }).errors;
  const owners = (file: string | undefined): string => {
    const of = targets.filter((t) => file !== undefined && path.resolve(rootDir, file) === t.entry).map((t) => t.owner);
    return of.length > 0 ? ` (${of.join(", ")})` : "";
  };
  if (!errors?.length) return `${(error as Error).message} (${targets.map((t) => t.owner).join(", ")})`;
  return errors
    .map((m) => {
      const where = m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1}` : "bundling";
      return `${where}: ${m.text}${owners(m.location?.file)}`;
    })
    .join("\n");
}

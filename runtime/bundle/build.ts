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
  readonly bundle: string;
  /** Every input file (path relative to the root) with its sha256. */
  readonly inputs: Record<string, string>;
}

const SDK_ENTRY = path.join(PACKAGE_ROOT, "runtime", "sdk", "index.ts");

/** Resolves `import ... from "jetfn"` in handler files to the SDK, bundled in. */
const sdkPlugin: esbuild.Plugin = {
  name: "jetfn-sdk",
  setup(build) {
    build.onResolve({ filter: /^jetfn$/ }, () => ({ path: SDK_ENTRY }));
  },
};

/**
 * Bundles every function's handler with esbuild (ESM, node, inline source maps so stack
 * traces name the user's `.ts` lines). A bundle whose inputs hash the same as at its last
 * build is reused. Throws one {@link BundleError} listing every handler that failed.
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
    owner: `routes: ${config.routes.filter((r) => r.schema?.file === file).map((r) => r.route).join(", ")}`,
  }));
  const built = await buildAll(config, targets, options.force ?? false);
  return new Map(built.map((bundle, i) => [files[i]!, bundle.file]));
}

/** One bundle to build: its name in the build folder, its entry file, and who it is for (in messages). */
interface BuildTarget {
  readonly name: string;
  readonly entry: string;
  readonly owner: string;
}

async function buildAll(
  config: CompiledConfig,
  targets: readonly BuildTarget[],
  force: boolean,
): Promise<{ name: string; file: string; reused: boolean }[]> {
  const outDir = buildDir(config);
  mkdirSync(outDir, { recursive: true });
  const results = await Promise.allSettled(targets.map((target) => buildOne(config, target, outDir, force)));
  const failures = results.flatMap((r) => (r.status === "rejected" ? [String((r.reason as Error).message)] : []));
  if (failures.length > 0) throw new BundleError(failures.join("\n"));
  return results.map((r) => (r as PromiseFulfilledResult<{ name: string; file: string; reused: boolean }>).value);
}

async function buildOne(
  config: CompiledConfig,
  target: BuildTarget,
  outDir: string,
  force: boolean,
): Promise<{ name: string; file: string; reused: boolean }> {
  const manifestFile = path.join(outDir, `${target.name}.json`);
  const previous = force ? undefined : readManifest(manifestFile);
  // Relative to the project: a project built in one folder and run from another (an
  // image's build stage and its final stage) keeps its bundles.
  const entry = path.relative(config.rootDir, target.entry);
  if (previous && previous.handler === entry && isFresh(config.rootDir, outDir, previous)) {
    return { name: target.name, file: path.join(outDir, previous.bundle), reused: true };
  }
  let result: esbuild.BuildResult<{ write: false; metafile: true }>;
  try {
    result = await esbuild.build({
      absWorkingDir: config.rootDir,
      entryPoints: [target.entry],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      sourcemap: "inline",
      sourcesContent: false,
      write: false,
      metafile: true,
      logLevel: "silent",
      outfile: path.join(outDir, `${target.name}.mjs`),
      plugins: [sdkPlugin],
      // Bundled CommonJS dependencies may call require(): give ESM output one.
      banner: { js: "import { createRequire as __jetfnRequire } from 'node:module'; const require = __jetfnRequire(import.meta.url);" },
    });
  } catch (error) {
    throw new BundleError(formatBuildFailure(config.rootDir, target, error));
  }
  const code = result.outputFiles[0]!.contents;
  const hash = createHash("sha256").update(code).digest("hex").slice(0, 12);
  const bundle = `${target.name}.${hash}.mjs`;
  writeFileSync(path.join(outDir, bundle), code);
  const inputs: Record<string, string> = {};
  for (const input of Object.keys(result.metafile.inputs)) inputs[input] = hashFile(path.resolve(config.rootDir, input));
  const manifest: Manifest = { esbuild: esbuild.version, handler: entry, bundle, inputs };
  writeFileSync(manifestFile, JSON.stringify(manifest, null, 2));
  return { name: target.name, file: path.join(outDir, bundle), reused: false };
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
  return Object.entries(manifest.inputs).every(([input, sha]) => hashFile(path.resolve(rootDir, input)) === sha);
}

function hashFile(file: string): string {
  try {
    return createHash("sha256").update(readFileSync(file)).digest("hex");
  } catch {
    return "missing";
  }
}

function formatBuildFailure(rootDir: string, target: BuildTarget, error: unknown): string {
  const errors = (error as { errors?: esbuild.Message[] }).errors;
  if (!errors?.length) return `${path.relative(rootDir, target.entry)}: ${(error as Error).message}`;
  return errors
    .map((m) => {
      const where = m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1}` : path.relative(rootDir, target.entry);
      return `${where}: ${m.text} (${target.owner})`;
    })
    .join("\n");
}

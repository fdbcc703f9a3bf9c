import fs from "node:fs";
import path from "node:path";
import { LineCounter, parseDocument } from "yaml";
import type { z } from "zod";
import { compileFunction, compileStream } from "./compile.ts";
import { ENVIRONMENT } from "./env.ts";
import type { ConfigIssue } from "./errors.ts";
import { ConfigError, formatPath } from "./errors.ts";
import { isFile } from "./files.ts";
import { deepFreeze, isPlainMap } from "./freeze.ts";
import type { Anchor } from "./locate.ts";
import { Locator } from "./locate.ts";
import { compileRoute, type RouteEntry, routeEntrySchema, routeShape } from "./routes.ts";
import type { DefaultsEntry, FunctionEntry, StreamEntry } from "./schema.ts";
import { defaultsSchema, functionEntrySchema, PER_FUNCTION_KEYS, parseOptions, rootSchema, streamEntrySchema } from "./schema.ts";
import { subjectCovers } from "./subjects.ts";
import { unknownKeyMessage } from "./suggest.ts";
import type { CompiledConfig, CompiledEnv, CompiledFunction, CompiledRoute, CompiledStream, Encoding } from "./types.ts";

/**
 * Reads, validates and compiles a `functions.yaml`. Every problem found (YAML syntax, schema,
 * and checks across entries: duplicate names, missing handler files, subjects a declared
 * stream does not capture) is collected with its line and column into one `ConfigError`.
 * @returns the deeply frozen compiled configuration.
 */
export function loadConfig(file: string): CompiledConfig {
  const absolute = path.resolve(file);
  let source: string;
  try {
    source = fs.readFileSync(absolute, "utf8");
  } catch (error) {
    throw new ConfigError([{ file: absolute, path: "", message: readFailure(error) }]);
  }
  return compileConfig(source, absolute);
}

/**
 * The configuration a host runs: `functions.yaml` loaded (unless `config` is given) and
 * checked against the environment, where one needs the other (routes with `auth: bearer`
 * need `JETFN_INGRESS_TOKENS`, or every request would get 401). Throws `ConfigError`.
 */
export function loadProject(env: CompiledEnv, config: CompiledConfig = loadConfig(env.configFile)): CompiledConfig {
  const guarded = config.routes.filter((route) => route.auth === "bearer");
  if (guarded.length > 0 && env.ingressTokens.length === 0) {
    throw new ConfigError([
      {
        file: ENVIRONMENT,
        path: "JETFN_INGRESS_TOKENS",
        message: `must be set: ${guarded.map((route) => route.route).join(", ")} ${guarded.length === 1 ? "has" : "have"} auth: bearer`,
      },
    ]);
  }
  return config;
}

/**
 * Like {@link loadConfig} for yaml text already in memory; `file` names it in messages and
 * its folder is where handler paths are resolved.
 */
export function compileConfig(source: string, file: string): CompiledConfig {
  const absolute = path.resolve(file);
  const rootDir = path.dirname(absolute);
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true });
  const locator = new Locator(doc, lineCounter);
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((error) => ({
        file: absolute,
        ...locator.offset(error.pos[0]),
        path: "",
        message: `YAML syntax error: ${error.message}`,
      })),
    );
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw new ConfigError([{ file: absolute, path: "", message: (error as Error).message }]);
  }

  const issues: ConfigIssue[] = [];
  const report = (at: readonly PropertyKey[], message: string, anchor: Anchor = "value"): void => {
    issues.push({ file: absolute, ...locator.find(at, anchor), path: formatPath(at), message });
  };
  const check = <S extends z.ZodType>(schema: S, value: unknown, at: readonly PropertyKey[]) => {
    const result = schema.safeParse(value, parseOptions);
    if (!result.success) reportZod(result.error.issues, at, data, report);
    return result.success ? (result.data as z.output<S>) : undefined;
  };

  if (data === null || data === undefined) {
    report([], "the file is empty; expected a map with a functions: list");
    throw new ConfigError(issues);
  }
  check(rootSchema, data, []);
  const top = isPlainMap(data) ? data : {};
  const defaults: DefaultsEntry | undefined = top.defaults === undefined ? {} : check(defaultsSchema, top.defaults, ["defaults"]);
  const streams = entries(top.streams, "streams", (value, at) => check(streamEntrySchema, value, at));
  const functions = entries(top.functions, "functions", (value, at) => check(functionEntrySchema, value, at));

  const compiledStreams = streams.map(({ entry }) => compileStream(entry));
  checkDuplicates(streams, "streams", "stream", report);
  checkDuplicates(functions, "functions", "function", report);
  const compiledFunctions: CompiledFunction[] = [];
  for (const { entry, index } of functions) {
    // Layered checks would blame the wrong key while `defaults:` itself is invalid.
    const { compiled, issues: found } = compileFunction(entry, index, defaults ?? {}, rootDir);
    if (defaults) for (const issue of found) report(issue.path, issue.message);
    compiledFunctions.push(compiled);
    if (!isFile(compiled.handlerPath)) {
      report(["functions", index, "handler"], `handler file not found: ${entry.handler.file}`);
    }
  }
  checkDurables(functions, compiledFunctions, report);
  checkCoverage(functions, compiledStreams, top.functions, report);
  const encodings = new Map(compiledFunctions.map((fn) => [fn.name, fn.encoding]));
  const batched = new Set(compiledFunctions.flatMap((fn) => (fn.batch ? [fn.name] : [])));
  const routes = compileRoutes(top.routes, encodings, rootDir, check, report, batched);

  if (issues.length > 0) throw new ConfigError(sortIssues(issues));
  return deepFreeze({ file: absolute, rootDir, streams: compiledStreams, functions: compiledFunctions, routes });
}

/** `routes:`: each entry compiled, then the routes that would match the same requests, and schema files that do not exist. */
function compileRoutes(
  raw: unknown,
  functions: ReadonlyMap<string, Encoding>,
  rootDir: string,
  check: (schema: typeof routeEntrySchema, value: unknown, at: readonly PropertyKey[]) => RouteEntry | undefined,
  report: Report,
  batched: ReadonlySet<string>,
): CompiledRoute[] {
  const routes: CompiledRoute[] = [];
  const shapes = new Map<string, number>();
  for (const { entry, index } of entries(raw, "routes", (value, at) => check(routeEntrySchema, value, at))) {
    const route = compileRoute(entry, index, functions, rootDir, report);
    routes.push(route);
    if (route.target.kind === "invoke" && batched.has(route.target.function))
      report(
        ["routes", index, "invoke"],
        `function "${route.target.function}" takes batches (batch:): a synchronous call is one event with one answer`,
      );
    const shape = routeShape(route);
    const first = shapes.get(shape);
    if (first === undefined) shapes.set(shape, index);
    else report(["routes", index, "route"], `${route.route} matches the same requests as routes[${first}]`);
    if (route.schema && !isFile(route.schema.file))
      report(["routes", index, "schema"], `schema file not found: ${entry.schema!.split("#")[0]}`);
  }
  return routes;
}

type Report = (at: readonly PropertyKey[], message: string, anchor?: Anchor) => void;

interface Indexed<T> {
  readonly entry: T;
  readonly index: number;
}

/** The entries of a list section that passed their schema, with their index. */
function entries<T>(value: unknown, section: string, parse: (value: unknown, at: readonly PropertyKey[]) => T | undefined): Indexed<T>[] {
  if (!Array.isArray(value)) return [];
  const parsed: Indexed<T>[] = [];
  value.forEach((item: unknown, index) => {
    const entry = parse(item, [section, index]);
    if (entry !== undefined) parsed.push({ entry, index });
  });
  return parsed;
}

/** Turns zod issues into located ones: unknown keys point at the key, missing keys at their map. */
function reportZod(found: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[], data: unknown, report: Report) {
  for (const issue of found) {
    const at = [...prefix, ...issue.path];
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const message =
          at.length === 1 && at[0] === "defaults" && PER_FUNCTION_KEYS.includes(key)
            ? `"${key}" is set per function and cannot be in defaults`
            : unknownKeyMessage(key, at);
        report([...at, key], message, "key");
      }
    } else if (isMissingKey(data, at)) {
      report(at, `missing required key "${String(at.at(-1))}"`, "parent");
    } else {
      report(at, issue.message);
    }
  }
}

function isMissingKey(data: unknown, at: readonly PropertyKey[]): boolean {
  let parent = data;
  for (const key of at.slice(0, -1)) {
    if (typeof parent !== "object" || parent === null) return false;
    parent = (parent as Record<PropertyKey, unknown>)[key];
  }
  const key = at.at(-1);
  return isPlainMap(parent) && key !== undefined && !Object.hasOwn(parent, key);
}

function checkDuplicates(list: readonly Indexed<FunctionEntry | StreamEntry>[], section: string, kind: string, report: Report): void {
  const seen = new Map<string, number>();
  for (const { entry, index } of list) {
    const first = seen.get(entry.name);
    if (first === undefined) seen.set(entry.name, index);
    else report([section, index, "name"], `duplicate ${kind} name "${entry.name}" (first used by ${section}[${first}])`);
  }
}

/** Two functions on one durable would fight over one consumer's filter and settings. */
function checkDurables(list: readonly Indexed<FunctionEntry>[], compiled: readonly CompiledFunction[], report: Report) {
  const owners = new Map<string, string>();
  list.forEach(({ entry, index }, i) => {
    const fn = compiled[i];
    if (!fn) return;
    const key = `${fn.stream}\0${fn.durable}`;
    const owner = owners.get(key);
    if (owner === undefined) owners.set(key, fn.name);
    else if (owner !== fn.name) {
      const at = entry.durable === undefined ? "name" : "durable";
      report(["functions", index, at], `durable "${fn.durable}" on stream ${fn.stream} is already used by function "${owner}"`);
    }
  });
}

/**
 * A function on a stream declared here must filter subjects that stream captures, and its
 * output must not be one of its own subjects.
 */
function checkCoverage(list: readonly Indexed<FunctionEntry>[], streams: readonly CompiledStream[], raw: unknown, report: Report): void {
  const byName = new Map(streams.map((stream) => [stream.name, stream]));
  const rawList = Array.isArray(raw) ? (raw as unknown[]) : [];
  for (const { entry, index } of list) {
    // A function with only a schedule reads jetfn's schedule stream, nothing of these.
    if (entry.stream === undefined || entry.subjects === undefined) continue;
    const subjects = entry.subjects;
    // Output fed back into the function's own subjects would run it forever.
    if (entry.output !== undefined && subjects.some((subject) => subjectCovers(subject, entry.output!))) {
      report(
        ["functions", index, "output"],
        `output "${entry.output}" is one of the function's own subjects: every result would run it again`,
      );
    }
    const stream = byName.get(entry.stream);
    if (!stream) continue;
    const rawEntry = rawList[index];
    const listed = isPlainMap(rawEntry) && Array.isArray(rawEntry.subjects);
    subjects.forEach((subject, j) => {
      if (stream.subjects.some((captured) => subjectCovers(captured, subject))) return;
      const at = listed ? ["functions", index, "subjects", j] : ["functions", index, "subjects"];
      report(at, `subject "${subject}" is not captured by stream ${stream.name} (subjects: ${stream.subjects.join(", ")})`);
    });
  }
}

function readFailure(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "file not found";
  if (code === "EISDIR") return "is a folder, not a file";
  if (code === "EACCES") return "permission denied";
  return `cannot read: ${(error as Error).message}`;
}

/** By position, issues without one first; equal issues once. */
function sortIssues(issues: readonly ConfigIssue[]): ConfigIssue[] {
  const unique = new Map(issues.map((issue) => [`${issue.line}:${issue.column}:${issue.path}:${issue.message}`, issue]));
  return [...unique.values()].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
}

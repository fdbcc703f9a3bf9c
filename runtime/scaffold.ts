import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { appendFunctionEntry, appendListEntry } from "./config/append-function.ts";
import { ConfigError } from "./config/errors.ts";
import { loadConfig } from "./config/load.ts";
import { compileRoute, routeEntrySchema, routeShape } from "./config/routes.ts";
import { FUNCTION_NAME, parseOptions } from "./config/schema.ts";
import { isValidSubject, subjectCovers } from "./config/subjects.ts";
import type { CompiledConfig, CompiledRoute } from "./config/types.ts";

export interface NewFunctionOptions {
  /** The function's name, `[a-z0-9-]`. */
  readonly name: string;
  /** The subject it is bound to. */
  readonly subject: string;
  /** The stream holding the subject; found among the declared streams when not given. */
  readonly stream?: string;
  /**
   * A route of the HTTP ingress, `POST /orders`, added to `routes:` with `publish:` the
   * subject, so that a request to it runs the new function.
   */
  readonly route?: string;
}

/** What `jetfn new` wrote. */
export interface NewFunction {
  readonly handlerFile: string;
  /** The handler's vitest test beside it, using `jetfn/testing`. */
  readonly testFile: string;
  readonly stream: string;
  /** The route added to `routes:`, when one was asked for. */
  readonly route?: CompiledRoute;
}

const TEMPLATE = (name: string) => `import { defineFunction, NonRetryableError } from "jetfn";
import { z } from "zod";

/** The event this function accepts; anything else is dead-lettered without a retry. */
const Event = z.object({
  id: z.string(),
});

/**
 * ${name}: return to succeed (the value goes to \`output:\` when it is set), throw to retry
 * with backoff, throw NonRetryableError to dead-letter at once.
 */
export default defineFunction({
  schema: Event,
  async handler(event, ctx) {
    if (event.id === "") throw new NonRetryableError("empty id");
    ctx.log.info({ id: event.id }, "${name} handled an event");
    return { id: event.id, handledAt: new Date().toISOString() };
  },
});
`;

/** The handler's test: what the template does with a good event, an empty id and a bad event. */
const TEST_TEMPLATE = (name: string) => `import { invoke } from "jetfn/testing";
import { describe, expect, it } from "vitest";
import handler from "./${name}.ts";

// invoke() runs the handler as jetfn would, without a broker, and tells what jetfn would do.
describe("${name}", () => {
  it("handles an event: acks, and returns what goes to output", async () => {
    const result = await invoke(handler, { id: "42" }, { function: "${name}" });
    expect(result.settlement.action).toBe("ack");
    expect(result.output).toMatchObject({ id: "42" });
  });

  it("dead-letters an empty id at once, without retries", async () => {
    const result = await invoke(handler, { id: "" });
    expect(result.settlement).toMatchObject({ action: "dead-letter", reason: "non-retryable" });
  });

  it("dead-letters an event its schema refuses", async () => {
    const result = await invoke(handler, { name: "no id" });
    expect(result.settlement).toMatchObject({ action: "dead-letter", reason: "invalid" });
  });
});
`;

/**
 * Adds a function: writes `functions/<name>.ts` from a template (and its test,
 * `functions/<name>.test.ts`) and adds its entry at the end of `functions:` in
 * `functions.yaml` (and, given `route`, a route publishing to its subject at the end of
 * `routes:`), leaving every other byte of the file as it was (see
 * {@link appendFunctionEntry}), then checks the result loads. Refuses to overwrite anything.
 */
export function newFunction(configFile: string, options: NewFunctionOptions): NewFunction {
  const { name, subject } = options;
  const fail = (message: string): never => {
    throw new ConfigError([{ file: configFile, path: "new", message }]);
  };
  if (!FUNCTION_NAME.test(name)) fail(`expected a name of lowercase letters, digits and "-", got "${name}"`);
  if (!isValidSubject(subject)) fail(`expected a NATS subject like orders.created, got "${subject}"`);
  const config = loadConfig(configFile);
  if (config.functions.some((f) => f.name === name)) fail(`a function named ${name} already exists`);
  const stream =
    options.stream ??
    config.streams.find((s) => s.subjects.some((covering) => subjectCovers(covering, subject)))?.name ??
    fail(`no stream declared in functions.yaml captures ${subject}: give --stream, or declare one`);

  const relative = path.posix.join("functions", `${name}.ts`);
  const handlerFile = path.join(config.rootDir, relative);
  if (existsSync(handlerFile)) fail(`${relative} already exists`);
  const testFile = handlerFile.replace(/\.ts$/, ".test.ts");
  if (existsSync(testFile)) fail(`${relative.replace(/\.ts$/, ".test.ts")} already exists`);

  const route = options.route === undefined ? undefined : publishRoute(options.route, subject, config, fail);

  let yaml: string;
  try {
    yaml = appendFunctionEntry(readFileSync(configFile, "utf8"), { name, handler: relative, stream, subjects: [subject] });
    if (route) yaml = appendListEntry(yaml, "routes", { route: route.route, publish: subject });
  } catch (error) {
    return fail((error as Error).message);
  }

  mkdirSync(path.dirname(handlerFile), { recursive: true });
  writeFileSync(handlerFile, TEMPLATE(name));
  writeFileSync(testFile, TEST_TEMPLATE(name));
  writeFileSync(configFile, yaml);
  loadConfig(configFile); // what we wrote must load
  return { handlerFile, testFile, stream, ...(route ? { route } : {}) };
}

/**
 * `--route` checked as `routes:` checks it (method, path, and no other route taking the same
 * requests), for a route that publishes to `subject`; `fail` gets what is wrong.
 */
function publishRoute(text: string, subject: string, config: CompiledConfig, fail: (message: string) => never): CompiledRoute {
  if (!isValidSubject(subject, { wildcards: false })) fail(`--route publishes to one subject; ${subject} has wildcards`);
  const parsed = routeEntrySchema.safeParse({ route: text.trim(), publish: subject }, parseOptions);
  if (!parsed.success) return fail(`--route ${parsed.error.issues[0]!.message}`);
  const problems: string[] = [];
  const route = compileRoute(parsed.data, config.routes.length, new Map(), config.rootDir, (_at, message) => problems.push(message));
  if (problems.length > 0) fail(`--route ${text}: ${problems.join("; ")}`);
  if (route.method === "GET")
    fail(
      `--route ${route.route}: a publishing route takes the event from the request body, and GET has none; use POST, PUT, PATCH or DELETE`,
    );
  const taken = config.routes.find((existing) => routeShape(existing) === routeShape(route));
  if (taken) fail(`--route ${route.route}: routes: already has ${taken.route}, which takes the same requests`);
  return route;
}

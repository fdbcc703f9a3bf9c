import path from "node:path";
import { z } from "zod";
import { describeValue } from "./errors.ts";
import { isValidSubject } from "./subjects.ts";
import type { CompiledRoute, Encoding, RouteSegment } from "./types.ts";

/**
 * `routes:` in `functions.yaml`: HTTP routes of the ingress listener. Each one either
 * publishes the request's body to a subject (202) or invokes a function and answers with
 * its result.
 */

export const ROUTE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
const PARAM = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A path segment: letters, digits and the URL-safe punctuation; no encoded or reserved characters. */
const LITERAL = /^[A-Za-z0-9._~-]+$/;
const EXPORT_NAME = /^[A-Za-z_$][\w$]*$/;

/** `POST /orders/:id/cancel` split into its method and segments; undefined when malformed. */
function parseRoute(text: string): { method: string; path: string; segments: RouteSegment[] } | undefined {
  const match = /^([A-Z]+) +(\/\S*)$/.exec(text.trim());
  if (!match || !(ROUTE_METHODS as readonly string[]).includes(match[1]!)) return undefined;
  const routePath = match[2]!;
  const parts = routePath === "/" ? [] : routePath.slice(1).split("/");
  const segments: RouteSegment[] = [];
  const seen = new Set<string>();
  for (const part of parts) {
    if (part.startsWith(":")) {
      const name = part.slice(1);
      if (!PARAM.test(name) || seen.has(name)) return undefined;
      seen.add(name);
      segments.push({ param: name });
    } else if (LITERAL.test(part)) {
      segments.push({ literal: part });
    } else {
      return undefined;
    }
  }
  return { method: match[1]!, path: routePath, segments };
}

const routeSchema = z
  .string({ error: (issue) => routeMessage(issue.input) })
  .refine((value) => parseRoute(value) !== undefined, { error: (issue) => routeMessage(issue.input) });

function routeMessage(input: unknown): string {
  return `expected a method (${ROUTE_METHODS.join(", ")}) and a path like "POST /orders" or "POST /orders/:id/cancel", got ${describeValue(input)}`;
}

/** A subject that may hold `{param}` placeholders, each standing for one whole token. */
const subjectTemplateSchema = z.string({ error: (issue) => subjectMessage(issue.input) }).refine(
  (value) =>
    isValidSubject(
      fillTemplate(value, () => "x"),
      { wildcards: false },
    ),
  {
    error: (issue) => subjectMessage(issue.input),
  },
);

function subjectMessage(input: unknown): string {
  return `expected a NATS subject without wildcards, optionally with {param} tokens, like orders.{id}.cancelled, got ${describeValue(input)}`;
}

/** Replaces each `{name}` in a subject template. */
export function fillTemplate(template: string, value: (name: string) => string): string {
  return template.replace(/\{([^{}]*)\}/g, (_, name: string) => value(name));
}

/** Names of the `{param}` placeholders of a subject template. */
export function templateParams(template: string): string[] {
  return [...template.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]!);
}

const schemaRefSchema = z.string({ error: (issue) => schemaRefMessage(issue.input) }).refine(
  (value) => {
    const [file, exportName, extra] = value.split("#");
    return file !== undefined && file.trim() !== "" && extra === undefined && (exportName === undefined || EXPORT_NAME.test(exportName));
  },
  { error: (issue) => schemaRefMessage(issue.input) },
);

function schemaRefMessage(input: unknown): string {
  return `expected a file path with the schema's export, like functions/schemas/order.ts#Order, got ${describeValue(input)}`;
}

/** One entry of `routes:` as written. */
export const routeEntrySchema = z
  .strictObject({
    route: routeSchema,
    publish: subjectTemplateSchema.optional(),
    invoke: z.string().optional(),
    schema: schemaRefSchema.optional(),
    auth: z.enum(["none", "bearer"]).optional(),
    encoding: z.enum(["json", "text", "binary"]).optional(),
  })
  .refine((entry) => (entry.publish === undefined) !== (entry.invoke === undefined), {
    error: "expected exactly one of publish: <subject> or invoke: <function>",
  });

export type RouteEntry = z.output<typeof routeEntrySchema>;

/**
 * Compiles `routes[index]`; `functions` maps each function to its encoding. `report` gets the problems that span keys: placeholders that are
 * not path parameters, functions that do not exist, schemas on a route that is not JSON.
 */
export function compileRoute(
  entry: RouteEntry,
  index: number,
  functions: ReadonlyMap<string, Encoding>,
  rootDir: string,
  report: (at: readonly PropertyKey[], message: string) => void,
): CompiledRoute {
  const parsed = parseRoute(entry.route)!;
  const at = (key: string): readonly PropertyKey[] => ["routes", index, key];
  const params = new Set(parsed.segments.flatMap((s) => ("param" in s ? [s.param] : [])));
  if (entry.publish !== undefined) {
    for (const name of templateParams(entry.publish)) {
      if (!params.has(name)) report(at("publish"), `{${name}} is not a parameter of the route's path ${parsed.path}`);
    }
  }
  if (entry.invoke !== undefined && !functions.has(entry.invoke)) {
    report(at("invoke"), `no function named "${entry.invoke}" in functions:`);
  }
  // An invoke route takes what its function decodes, unless it says otherwise.
  const encoding = entry.encoding ?? (entry.invoke !== undefined ? functions.get(entry.invoke) : undefined) ?? "json";
  if (entry.schema !== undefined && encoding !== "json") {
    report(at("schema"), `a schema checks JSON bodies; this route's encoding is ${encoding}`);
  }
  const [file = "", exportName = "default"] = entry.schema?.split("#") ?? [];
  return {
    route: `${parsed.method} ${parsed.path}`,
    method: parsed.method,
    path: parsed.path,
    segments: parsed.segments,
    target: entry.publish !== undefined ? { kind: "publish", subject: entry.publish } : { kind: "invoke", function: entry.invoke! },
    ...(entry.schema !== undefined ? { schema: { file: path.resolve(rootDir, file), exportName } } : {}),
    auth: entry.auth ?? "none",
    encoding,
  };
}

/** Two routes that match the same requests: the same method and the same path shape. */
export function routeShape(route: CompiledRoute): string {
  return `${route.method} /${route.segments.map((s) => ("param" in s ? ":" : s.literal)).join("/")}`;
}

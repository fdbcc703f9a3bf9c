import type { Encoding } from "../config/types.ts";
import type { EventSchema } from "../sdk/types.ts";

export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: Error };

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** Turns payload bytes into the handler's event, per the function's `encoding`. */
export function decode(data: Uint8Array, encoding: Encoding): Result<unknown> {
  if (encoding === "binary") return { ok: true, value: data };
  let text: string;
  try {
    text = utf8.decode(data);
  } catch {
    return { ok: false, error: new Error("payload is not valid UTF-8") };
  }
  if (encoding === "text") return { ok: true, value: text };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: new Error(`payload is not valid JSON: ${(err as Error).message}`) };
  }
}

/** Bytes for a value a handler returns or publishes: bytes as is, strings as UTF-8, else JSON. */
export function encode(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return utf8Encoder.encode(value);
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError(`cannot encode ${typeof value} as JSON`);
  return utf8Encoder.encode(json);
}

interface StandardSchema {
  "~standard": {
    validate(value: unknown):
      | StandardResult
      | Promise<StandardResult>;
  };
}
type StandardResult = { value: unknown; issues?: undefined } | { issues: readonly StandardIssue[] };
interface StandardIssue {
  message: string;
  path?: readonly (PropertyKey | { key: PropertyKey })[];
}

/**
 * Validates an event against a handler's schema: a Standard Schema (zod 3.24+, valibot,
 * arktype) or anything with zod's `safeParse`. Returns the parsed value (defaults applied).
 */
export async function validate(schema: EventSchema<unknown>, value: unknown): Promise<Result<unknown>> {
  const standard = (schema as Partial<StandardSchema>)["~standard"];
  if (standard && typeof standard.validate === "function") {
    const result = await standard.validate(value);
    if (result.issues) return { ok: false, error: new Error(`schema: ${formatIssues(result.issues)}`) };
    return { ok: true, value: result.value };
  }
  if (typeof schema.safeParse === "function") {
    const result = schema.safeParse(value);
    if (result.success) return { ok: true, value: result.data };
    const issues = (result.error as { issues?: StandardIssue[] } | undefined)?.issues;
    return { ok: false, error: new Error(`schema: ${issues ? formatIssues(issues) : String(result.error)}`) };
  }
  return { ok: true, value };
}

function formatIssues(issues: readonly StandardIssue[]): string {
  return issues
    .slice(0, 5)
    .map((issue) => {
      const path = (issue.path ?? [])
        .map((p) => String(typeof p === "object" && p !== null && "key" in p ? p.key : p))
        .join(".");
      return path ? `${path}: ${issue.message}` : issue.message;
    })
    .join("; ");
}

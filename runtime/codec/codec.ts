import type { Encoding } from "../config/types.ts";
import type { FieldIssue } from "../contracts/call.ts";
import type { EventSchema } from "../sdk/types.ts";

export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: Error };

/** An event its schema refused, with every failing field. */
export class ValidationError extends Error {
  readonly issues: readonly FieldIssue[];

  constructor(issues: readonly FieldIssue[]) {
    // Named plain "Error": dead letters and logs show the message as they always have.
    super(`schema: ${formatIssues(issues)}`);
    this.issues = issues;
  }
}

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

/** What kind of bytes a value encodes to: how a synchronous call's answer is typed. */
export type EncodedType = "json" | "text" | "binary";

/** A value already encoded (in a handler thread): its bytes, and what they were. */
export class Encoded {
  constructor(
    readonly bytes: Uint8Array,
    readonly type: EncodedType,
  ) {}
}

/** How {@link encode} encodes `value`. */
export function encodedType(value: unknown): EncodedType {
  if (value instanceof Encoded) return value.type;
  if (value instanceof Uint8Array) return "binary";
  return typeof value === "string" ? "text" : "json";
}

/** Bytes for a value a handler returns or publishes: bytes as is, strings as UTF-8, else JSON. */
export function encode(value: unknown): Uint8Array {
  if (value instanceof Encoded) return value.bytes;
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return utf8Encoder.encode(value);
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError(`cannot encode ${typeof value} as JSON`);
  return utf8Encoder.encode(json);
}

interface StandardSchema {
  "~standard": {
    validate(value: unknown): StandardResult | Promise<StandardResult>;
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
    if (result.issues) return { ok: false, error: new ValidationError(fieldIssues(result.issues)) };
    return { ok: true, value: result.value };
  }
  if (typeof schema.safeParse === "function") {
    const result = schema.safeParse(value);
    if (result.success) return { ok: true, value: result.data };
    const issues = (result.error as { issues?: StandardIssue[] } | undefined)?.issues;
    return { ok: false, error: new ValidationError(issues ? fieldIssues(issues) : [{ path: "", message: String(result.error) }]) };
  }
  return { ok: true, value };
}

function fieldIssues(issues: readonly StandardIssue[]): FieldIssue[] {
  return issues.map((issue) => ({
    path: (issue.path ?? []).map((p) => String(typeof p === "object" && p !== null && "key" in p ? p.key : p)).join("."),
    message: issue.message,
  }));
}

/** The first five issues in one line (log lines and dead-letter headers). */
function formatIssues(issues: readonly FieldIssue[]): string {
  return issues
    .slice(0, 5)
    .map((issue) => (issue.path ? `${issue.path}: ${issue.message}` : issue.message))
    .join("; ");
}

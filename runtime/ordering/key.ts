import type { CompiledOrderingKey } from "../config/types.ts";
import type { Delivery } from "../contracts/delivery.ts";

/**
 * The key of events that have none (a field absent, a subject too short, a header missing,
 * a body that is not JSON): all such events are one key, so they run one at a time, in
 * stream order, and are never dropped.
 */
export const MISSING_KEY = "";

const utf8 = new TextDecoder();

/** An event's ordering key, as a string (numbers and booleans by their JSON text). */
export function orderingKey(delivery: Pick<Delivery, "data" | "subject" | "headers">, spec: CompiledOrderingKey): string {
  switch (spec.kind) {
    case "subject":
      return delivery.subject.split(".")[spec.token - 1] ?? MISSING_KEY;
    case "header":
      return headerValue(delivery.headers, spec.name) ?? MISSING_KEY;
    case "json":
      return jsonKey(delivery.data, spec.path);
  }
}

function headerValue(headers: Readonly<Record<string, string>>, name: string): string | undefined {
  if (name in headers) return headers[name];
  const lower = name.toLowerCase();
  for (const key of Object.keys(headers)) if (key.toLowerCase() === lower) return headers[key];
  return undefined;
}

function jsonKey(data: Uint8Array, path: readonly string[]): string {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(data));
  } catch {
    return MISSING_KEY;
  }
  for (const part of path) {
    if (typeof value !== "object" || value === null || !Object.hasOwn(value, part)) return MISSING_KEY;
    value = (value as Record<string, unknown>)[part];
  }
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return JSON.stringify(value);
  return MISSING_KEY;
}

/**
 * The partition of a key: FNV-1a (32 bit) of its UTF-8 bytes, modulo `partitions`. Fixed
 * for ever: every replica, and every version of jetfn, must put a key in the same partition.
 */
export function partitionOf(key: string, partitions: number): number {
  let hash = 0x811c9dc5;
  const bytes = Buffer.from(key, "utf8");
  for (const byte of bytes) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % partitions;
}

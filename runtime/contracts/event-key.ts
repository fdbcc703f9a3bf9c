import type { Delivery } from "./delivery.ts";

/**
 * Where an event's key is read (`ordering.key`, `debounce.key`): a dot path into its JSON
 * body, a 1-based token of its subject, or a header.
 */
export type EventKeySpec =
  | { readonly kind: "json"; readonly path: readonly string[] }
  | { readonly kind: "subject"; readonly token: number }
  | { readonly kind: "header"; readonly name: string };

/**
 * The key of events that have none (a field absent, a subject too short, a header missing,
 * a body that is not JSON): all such events are one key (an ordered function runs them one
 * at a time, in stream order; a debounced one runs the last of them), and none is dropped.
 */
export const MISSING_KEY = "";

const utf8 = new TextDecoder();

/** An event's key, as a string (numbers and booleans by their JSON text). */
export function eventKey(delivery: Pick<Delivery, "data" | "subject" | "headers">, spec: EventKeySpec): string {
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

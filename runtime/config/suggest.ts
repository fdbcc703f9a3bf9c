import { z } from "zod";
import { configFileSchema } from "./schema.ts";

/**
 * `unknown key "timout" (did you mean "timeout"?)`: the suggestion is the closest key the
 * schema allows at `at`, when one is close enough to be a likely typo.
 */
export function unknownKeyMessage(key: string, at: readonly PropertyKey[]): string {
  const known = keysAt(configFileSchema, at);
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.min(3, Math.floor(key.length / 3)));
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance <= bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best === undefined ? `unknown key "${key}"` : `unknown key "${key}" (did you mean "${best}"?)`;
}

/** The keys an object schema allows at `at`, looking through optional, pipe, union and array. */
function keysAt(schema: z.core.$ZodType, at: readonly PropertyKey[]): string[] {
  const inner = unwrap(schema);
  if (inner instanceof z.ZodUnion) {
    return [...new Set(inner.options.flatMap((option: z.core.$ZodType) => keysAt(option, at)))];
  }
  const [head, ...rest] = at;
  if (head === undefined) return inner instanceof z.ZodObject ? Object.keys(inner.shape) : [];
  if (inner instanceof z.ZodArray && typeof head === "number") return keysAt(inner.element, rest);
  if (inner instanceof z.ZodObject && typeof head === "string") {
    const child: unknown = inner.shape[head];
    return child instanceof z.core.$ZodType ? keysAt(child, rest) : [];
  }
  return [];
}

function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let current = schema;
  for (;;) {
    if (current instanceof z.ZodOptional) current = current.unwrap();
    else if (current instanceof z.ZodPipe) current = current.in;
    else return current;
  }
}

/** Levenshtein distance; the strings are yaml keys, so a two-row table is plenty. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * A step's result as its record holds it: JSON text that reads back as the same value. A
 * value JSON would change on the way (a Date becomes a string, a Map `{}`, NaN `null`) is
 * refused at the step, where its author sees it, rather than replayed changed later.
 */

/** The result's JSON text (undefined for `undefined`), or what keeps it from being recorded as is. */
export type StepJson = { readonly ok: true; readonly json: string | undefined } | { readonly ok: false; readonly problem: string };

/** Checks that `value` survives `JSON.stringify` and `JSON.parse` unchanged, and writes it. */
export function stepJson(value: unknown): StepJson {
  if (value === undefined) return { ok: true, json: undefined };
  const problem = unfaithful(value, "the result", new Set());
  if (problem) return { ok: false, problem };
  return { ok: true, json: JSON.stringify(value) };
}

/** Where a value JSON cannot carry faithfully is, and what it is; undefined when there is none. */
function unfaithful(value: unknown, at: string, seen: Set<object>): string | undefined {
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : `${at} is ${value}, which JSON writes as null`;
    case "bigint":
      return `${at} is a BigInt, which JSON cannot write (return it as a string)`;
    case "undefined":
      return `${at} is undefined, which JSON writes as null in an array`;
    case "function":
    case "symbol":
      return `${at} is a ${typeof value}, which JSON leaves out`;
  }
  if (value === null) return undefined;
  const object = value as object;
  if (seen.has(object)) return `${at} refers back to itself (a cycle)`;
  if (Array.isArray(object)) {
    seen.add(object);
    for (let i = 0; i < object.length; i++) {
      const problem = unfaithful(object[i], `${at}[${i}]`, seen);
      if (problem) return problem;
    }
    seen.delete(object);
    return undefined;
  }
  const proto = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    const kind = object instanceof Date ? "a Date (return date.toISOString())" : `a ${proto?.constructor?.name ?? "class"} instance`;
    return `${at} is ${kind}, which JSON does not read back as it was`;
  }
  seen.add(object);
  for (const [key, item] of Object.entries(object)) {
    // An undefined property is left out, and reads back as undefined: the same.
    if (item === undefined) continue;
    const problem = unfaithful(item, `${at}.${key}`, seen);
    if (problem) return problem;
  }
  seen.delete(object);
  return undefined;
}

/** The UTF-8 size of a JSON text, in bytes. */
export function jsonBytes(json: string | undefined): number {
  return json === undefined ? 0 : Buffer.byteLength(json, "utf8");
}

/** A size for messages: `3013 bytes (2.9 KB)`. */
export function describeBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const kb = bytes / 1024;
  return `${bytes} bytes (${kb < 1024 ? `${Math.round(kb * 10) / 10} KB` : `${Math.round((kb / 1024) * 10) / 10} MB`})`;
}

/** True for a plain object (what YAML maps become), as opposed to arrays, class instances or null. */
export function isPlainMap(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Deep-copies plain maps and lists. Keys are defined, never assigned, so a `__proto__` key
 * stays an ordinary own property instead of replacing the copy's prototype (or, through a
 * later merge, `Object.prototype`'s contents). Other values are kept as they are.
 * @throws RangeError if the value contains itself (a YAML alias inside its own anchor).
 */
export function copyPlain(value: unknown, ancestors: Set<unknown> = new Set()): unknown {
  if (!Array.isArray(value) && !isPlainMap(value)) return value;
  if (ancestors.has(value)) throw new RangeError("a value cannot contain itself (recursive alias)");
  ancestors.add(value);
  let copy: unknown;
  if (Array.isArray(value)) copy = value.map((item: unknown) => copyPlain(item, ancestors));
  else {
    const map: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      Object.defineProperty(map, key, {
        value: copyPlain(value[key], ancestors),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    copy = map;
  }
  ancestors.delete(value);
  return copy;
}

/** Freezes plain maps, lists and dates reachable from `value`, and returns it. */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== "object" || value === null || Object.isFrozen(value)) return value;
  if (!Array.isArray(value) && !isPlainMap(value) && !(value instanceof Date)) return value;
  Object.freeze(value);
  for (const key of Object.keys(value)) {
    deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

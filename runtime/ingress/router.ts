import type { CompiledRoute } from "../config/types.ts";

/** What a request's method and path find among the routes. */
export type Match =
  | { readonly kind: "route"; readonly route: CompiledRoute; readonly params: Readonly<Record<string, string>> }
  /** The path exists, not with this method: 405 with `Allow`. */
  | { readonly kind: "method"; readonly allow: readonly string[] }
  | { readonly kind: "none" };

/**
 * Matches requests to `routes:`. Paths are compared segment by segment after percent-decoding
 * each one; a literal segment wins over a parameter at the same place, so `/orders/export`
 * is not taken by `/orders/:id`.
 */
export class Router {
  readonly #routes: readonly CompiledRoute[];

  constructor(routes: readonly CompiledRoute[]) {
    // Most literal segments first: the more specific route wins.
    this.#routes = [...routes].sort((a, b) => literalCount(b) - literalCount(a));
  }

  match(method: string, pathname: string): Match {
    const segments = splitPath(pathname);
    if (!segments) return { kind: "none" };
    const allow = new Set<string>();
    for (const route of this.#routes) {
      const params = matchSegments(route, segments);
      if (!params) continue;
      if (route.method === method) return { kind: "route", route, params };
      allow.add(route.method);
    }
    return allow.size > 0 ? { kind: "method", allow: [...allow].sort() } : { kind: "none" };
  }
}

function literalCount(route: CompiledRoute): number {
  return route.segments.filter((s) => "literal" in s).length;
}

/** The decoded segments of a path (a trailing `/` ignored); undefined if one cannot be decoded. */
function splitPath(pathname: string): string[] | undefined {
  const trimmed = pathname.length > 1 && pathname.endsWith("/") ? pathname.slice(0, -1) : pathname;
  if (trimmed === "/") return [];
  try {
    return trimmed
      .slice(1)
      .split("/")
      .map((segment) => decodeURIComponent(segment));
  } catch {
    return undefined;
  }
}

function matchSegments(route: CompiledRoute, segments: readonly string[]): Record<string, string> | undefined {
  if (route.segments.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const want = route.segments[i]!;
    const got = segments[i]!;
    if ("literal" in want) {
      if (want.literal !== got) return undefined;
    } else {
      if (got === "") return undefined;
      params[want.param] = got;
    }
  }
  return params;
}

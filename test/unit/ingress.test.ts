/** The ingress's dense parts without a server: routing, reading a body, bearer tokens. */
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import { compileRoute, routeEntrySchema } from "../../runtime/config/routes.ts";
import type { CompiledRoute } from "../../runtime/config/types.ts";
import { BearerTokens } from "../../runtime/ingress/auth.ts";
import { type BodyResult, jsonDepthExceeds, readBody } from "../../runtime/ingress/body.ts";
import { type Match, Router } from "../../runtime/ingress/router.ts";

// Every comparison of a presented token is counted (and still made by node:crypto).
const compares = vi.hoisted(() => ({ sizes: [] as [number, number][] }));
vi.mock("node:crypto", async (importOriginal) => {
  const crypto = await importOriginal<typeof import("node:crypto")>();
  return {
    ...crypto,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      compares.sizes.push([a.byteLength, b.byteLength]);
      return crypto.timingSafeEqual(a, b);
    },
  };
});

/** Routes compiled by the real compiler, from what a user writes in `routes:`. */
function routes(...written: string[]): CompiledRoute[] {
  return written.map((route, i) =>
    compileRoute(routeEntrySchema.parse({ route, publish: "orders.x" }), i, new Map(), "/", (at, message) => {
      throw new Error(`${String(at)}: ${message}`);
    }),
  );
}

/** A match, shortened to what a test compares: the route as written and its params, or the 405's Allow. */
function found(match: Match): string | { route: string; params: Record<string, string> } | { allow: readonly string[] } {
  if (match.kind === "route") return { route: match.route.route, params: { ...match.params } };
  if (match.kind === "method") return { allow: match.allow };
  return "none";
}

describe("Router", () => {
  const router = new Router(
    routes("GET /orders/:id", "POST /orders", "PUT /orders", "GET /orders/export", "POST /orders/:id/cancel", "GET /", "POST /a/:x/:y"),
  );

  it.each([
    ["GET", "/orders/42", { route: "GET /orders/:id", params: { id: "42" } }],
    ["GET", "/orders/export", { route: "GET /orders/export", params: {} }],
    ["POST", "/orders/7/cancel", { route: "POST /orders/:id/cancel", params: { id: "7" } }],
    ["POST", "/a/1/2", { route: "POST /a/:x/:y", params: { x: "1", y: "2" } }],
    ["POST", "/orders", { route: "POST /orders", params: {} }],
    ["PUT", "/orders", { route: "PUT /orders", params: {} }],
    ["GET", "/", { route: "GET /", params: {} }],
  ] as const)("%s %s finds its route", (method, path, expected) => {
    expect(found(router.match(method, path))).toEqual(expected);
  });

  it("prefers a literal segment to a parameter, whatever order the routes came in", () => {
    for (const order of [routes("GET /orders/:id", "GET /orders/export"), routes("GET /orders/export", "GET /orders/:id")]) {
      expect(found(new Router(order).match("GET", "/orders/export"))).toEqual({ route: "GET /orders/export", params: {} });
      expect(found(new Router(order).match("GET", "/orders/exports"))).toEqual({ route: "GET /orders/:id", params: { id: "exports" } });
    }
  });

  it("falls back to a parameter route with the method when the literal one has another method", () => {
    const mixed = new Router(routes("GET /orders/export", "POST /orders/:id"));
    expect(found(mixed.match("POST", "/orders/export"))).toEqual({ route: "POST /orders/:id", params: { id: "export" } });
  });

  it("percent-decodes each segment after splitting, so an encoded slash stays in its parameter", () => {
    expect(found(router.match("GET", "/orders/a%20b"))).toEqual({ route: "GET /orders/:id", params: { id: "a b" } });
    expect(found(router.match("GET", "/orders/a%2Fb"))).toEqual({ route: "GET /orders/:id", params: { id: "a/b" } });
    expect(found(router.match("GET", "/%6Frders/export"))).toEqual({ route: "GET /orders/export", params: {} });
  });

  it("ignores one trailing slash", () => {
    expect(found(router.match("POST", "/orders/"))).toEqual({ route: "POST /orders", params: {} });
    expect(found(router.match("GET", "/orders/42/"))).toEqual({ route: "GET /orders/:id", params: { id: "42" } });
  });

  it.each([
    ["DELETE", "/orders", ["POST", "PUT"]],
    ["POST", "/orders/42", ["GET"]],
    ["GET", "/orders/7/cancel", ["POST"]],
    ["POST", "/", ["GET"]],
  ] as const)("%s %s: the path exists with other methods (405, Allow sorted)", (method, path, allow) => {
    expect(found(router.match(method, path))).toEqual({ allow });
  });

  it.each([
    ["no such path", "/customers"],
    ["too many segments", "/orders/42/cancel/now"],
    ["too few segments", "/a/1"],
    ["an empty parameter", "/orders//cancel"],
    ["an undecodable segment", "/orders/%E0%A4%A"],
    ["literals compare by case", "/Orders/export"],
    ["two trailing slashes", "/orders//"],
  ])("no route: %s", (_, path) => {
    expect(router.match("GET", path)).toEqual({ kind: "none" });
  });

  it("matches nothing without routes", () => {
    expect(new Router([]).match("GET", "/")).toEqual({ kind: "none" });
  });
});

/** A request as readBody sees it: a readable stream with headers, `complete` once it has ended. */
class FakeRequest extends Readable {
  readonly headers: Record<string, string>;
  complete = false;

  constructor(headers: Record<string, string> = {}) {
    super({ read() {} });
    this.headers = headers;
  }

  /** Sends `chunks` of the body, then ends it. */
  send(...chunks: string[]): this {
    for (const chunk of chunks) this.push(Buffer.from(chunk));
    return this;
  }

  end(): this {
    this.complete = true;
    this.push(null);
    return this;
  }

  get listening(): number {
    return ["data", "end", "error", "close"].reduce((n, event) => n + this.listenerCount(event), 0);
  }
}

const read = (req: FakeRequest, limit: number): Promise<BodyResult> => readBody(req as unknown as IncomingMessage, limit);
const text = (result: BodyResult): string | BodyResult => (result.ok ? Buffer.from(result.bytes).toString() : result);

describe("readBody", () => {
  it("reads a body sent in chunks (no Content-Length: chunked)", async () => {
    const req = new FakeRequest();
    const body = read(req, 100);
    req.send('{"a"', ":12", "345}").end();
    expect(text(await body)).toBe('{"a":12345}');
  });

  it("takes exactly the limit, and an empty body", async () => {
    const exact = new FakeRequest({ "content-length": "5" });
    const body = read(exact, 5);
    exact.send("12", "345").end();
    expect(text(await body)).toBe("12345");
    const empty = new FakeRequest({ "content-length": "0" });
    const none = read(empty, 5);
    empty.end();
    expect(text(await none)).toBe("");
  });

  it("refuses a Content-Length over the limit before reading a byte", async () => {
    const req = new FakeRequest({ "content-length": "6" });
    expect(await read(req, 5)).toEqual({ ok: false, reason: "too-large" });
    expect(req.listening).toBe(0);
    expect(req.readableFlowing).toBe(null);
  });

  it("refuses a body that grows past the limit at that chunk, and reads no more", async () => {
    const req = new FakeRequest();
    const body = read(req, 5);
    req.send("123", "456");
    expect(await body).toEqual({ ok: false, reason: "too-large" });
    expect(req.isPaused()).toBe(true);
    expect(req.listening).toBe(0);
  });

  it("refuses a body longer than its Content-Length said", async () => {
    const req = new FakeRequest({ "content-length": "2" });
    const body = read(req, 4);
    req.send("12345").end();
    expect(await body).toEqual({ ok: false, reason: "too-large" });
  });

  it("says aborted when the client goes away before the end", async () => {
    const req = new FakeRequest();
    const body = read(req, 100);
    req.send("12");
    await new Promise((resolve) => setImmediate(resolve));
    req.destroy();
    expect(await body).toEqual({ ok: false, reason: "aborted" });
    expect(req.listening).toBe(0);
  });

  it("says aborted on a stream error (a reset connection)", async () => {
    const req = new FakeRequest();
    const body = read(req, 100);
    req.send("12");
    req.destroy(new Error("ECONNRESET"));
    expect(await body).toEqual({ ok: false, reason: "aborted" });
  });

  it("takes a close once the request is complete as no abort", async () => {
    const req = new FakeRequest();
    const body = read(req, 100);
    req.send("ok");
    req.complete = true;
    req.emit("close");
    req.end();
    expect(text(await body)).toBe("ok");
    expect(req.listening).toBe(0);
  });
});

describe("jsonDepthExceeds", () => {
  it.each([
    ["a scalar", "42", 0, false],
    ["flat at the limit", "[1, {}]", 2, false],
    ["one deeper than the limit", "[[[]]]", 2, true],
    ["siblings do not add up", "[[], [], {}]", 2, false],
    ["brackets inside strings", '["[[[[", "{{{{"]', 1, false],
    ["an escaped quote keeps the string open", '["\\"[[[["]', 1, false],
    ["an escaped backslash closes it", '["\\\\", [[]]]', 2, true],
  ] as const)("%s", (_, json, max, exceeds) => {
    expect(jsonDepthExceeds(json, max)).toBe(exceeds);
  });

  it("stops at the default limit of 64", () => {
    expect(jsonDepthExceeds(`${"[".repeat(64)}${"]".repeat(64)}`)).toBe(false);
    expect(jsonDepthExceeds(`${"[".repeat(65)}${"]".repeat(65)}`)).toBe(true);
  });
});

describe("BearerTokens", () => {
  const tokens = new BearerTokens(["s3cret-one", "s3cret-two", "t"]);

  it.each([
    ["the first token", "Bearer s3cret-one", "ok"],
    ["the last token", "Bearer t", "ok"],
    ["the scheme in any case", "bearer s3cret-two", "ok"],
    ["spaces around the token", "BEARER   s3cret-two  ", "ok"],
    ["no header", undefined, "missing"],
    ["an empty header", "", "missing"],
    ["another scheme", "Basic czNjcmV0LW9uZQ==", "missing"],
    ["the scheme alone", "Bearer", "missing"],
    ["the scheme and a space", "Bearer ", "missing"],
    ["two words", "Bearer s3cret one", "missing"],
    ["no space after the scheme", "Bearers3cret-one", "missing"],
    ["an unknown token", "Bearer nope", "invalid"],
    ["a prefix of a token", "Bearer s3cret", "invalid"],
    ["a token with more after it", "Bearer s3cret-one1", "invalid"],
    ["a token in another case", "Bearer S3CRET-ONE", "invalid"],
  ] as const)("%s: %s", (_, header, expected) => {
    expect(tokens.check(header)).toBe(expected);
  });

  it("compares a presented token with every known one, as same-length digests, wherever it matches", () => {
    for (const header of ["Bearer s3cret-one", "Bearer t", "Bearer a-much-longer-token-than-any-known-one", "Bearer x"]) {
      compares.sizes.length = 0;
      tokens.check(header);
      expect(compares.sizes).toEqual([
        [32, 32],
        [32, 32],
        [32, 32],
      ]);
    }
  });

  it("refuses every token when none is configured, and counts them", () => {
    const none = new BearerTokens([]);
    expect(none.size).toBe(0);
    expect(none.check("Bearer anything")).toBe("invalid");
    expect(none.check(undefined)).toBe("missing");
    expect(tokens.size).toBe(3);
  });
});

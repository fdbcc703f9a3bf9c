import { createServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { AddressInfo } from "node:net";
import { type Context, propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { type EncodedType, encode, encodedType, ValidationError, validate } from "../codec/codec.ts";
import { fillTemplate } from "../config/routes.ts";
import type { CompiledRoute } from "../config/types.ts";
import { CALL_STATUS, type CallResult, type FieldIssue, type SyncCaller } from "../contracts/call.ts";
import type { Publisher } from "../contracts/delivery.ts";
import { listen } from "../http/listen.ts";
import type { EventSchema } from "../sdk/types.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import { tracedPublish } from "../telemetry/traced-publish.ts";
import { BearerTokens } from "./auth.ts";
import { jsonDepthExceeds, MAX_JSON_DEPTH, readBody } from "./body.ts";
import { Router } from "./router.ts";

const tracer = trace.getTracer("jetfn");
const utf8 = new TextDecoder("utf-8", { fatal: true });
const CONTENT_TYPES: Readonly<Record<EncodedType, string>> = {
  json: "application/json",
  text: "text/plain; charset=utf-8",
  binary: "application/octet-stream",
};
/** What a client is told to wait while NATS is unreachable, in seconds. */
const UNREACHABLE_RETRY_S = 5;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;
/** A path parameter that goes into a subject must be one whole token. */
const SUBJECT_TOKEN = /^[^\s.*>]+$/;

const headerGetter = {
  keys: (carrier: IncomingMessage["headers"]) => Object.keys(carrier),
  get: (carrier: IncomingMessage["headers"], key: string) => carrier[key],
};

export interface IngressOptions {
  readonly routes: readonly CompiledRoute[];
  /** The loaded schema of each route that names one. */
  readonly schemas: ReadonlyMap<CompiledRoute, EventSchema<unknown>>;
  readonly publisher: Publisher;
  /** The caller of a function, for `invoke:` routes. */
  readonly caller: (fn: string) => SyncCaller | undefined;
  /** False while the NATS connection is down: publishes are refused rather than buffered. */
  readonly connected: () => boolean;
  readonly tokens: readonly string[];
  readonly maxBodyBytes: number;
  readonly readTimeoutMs: number;
  readonly metrics: Metrics;
  readonly log: Logger;
}

/** An answer: status, headers, body. */
interface Reply {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body?: Uint8Array | string;
}

/**
 * The ingress listener: `routes:` over HTTP, apart from `/metrics` and the probes. A route
 * publishes the request's body to a subject and answers 202 once the stream has it, or calls
 * a function and answers with its outcome. Every step that can refuse a request comes before
 * any work: routing (404, 405), auth (401), content type (415), size (413), the body's bytes,
 * JSON and schema (400). Slow clients are cut off by the server's read timeout (408).
 */
export class IngressServer {
  readonly #options: IngressOptions;
  readonly #router: Router;
  readonly #tokens: BearerTokens;
  readonly #server: Server;

  constructor(options: IngressOptions) {
    this.#options = options;
    this.#router = new Router(options.routes);
    this.#tokens = new BearerTokens(options.tokens);
    this.#server = createServer(
      {
        // The whole request (headers and body) must arrive within the read timeout: a
        // slow-loris client gets 408 and a closed connection, not a held slot.
        requestTimeout: options.readTimeoutMs,
        headersTimeout: options.readTimeoutMs,
        connectionsCheckingInterval: Math.max(100, Math.min(1000, options.readTimeoutMs / 4)),
      },
      (req, res) => void this.#handle(req, res),
    );
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listen(this.#server, host, port);
  }

  /** Stops accepting connections; resolves once the requests in flight are answered. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const path = pathOf(req.url);
    const match = this.#router.match(req.method ?? "", path);
    if (match.kind !== "route") {
      const reply =
        match.kind === "method"
          ? problem(405, `${req.method} is not allowed here`, undefined, { Allow: match.allow.join(", ") })
          : problem(404, "no route matches this path");
      return this.#send(req, res, reply, "unmatched", started);
    }
    const { route, params } = match;
    const parent = propagation.extract(ROOT_CONTEXT, req.headers, headerGetter);
    const span = tracer.startSpan(
      route.route,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "http.request.method": route.method,
          "http.route": route.path,
          "url.path": path,
          "url.scheme": "http",
        },
      },
      parent,
    );
    let reply: Reply;
    try {
      reply = await this.#serve(req, route, params, trace.setSpan(parent, span), span);
    } catch (error) {
      // Only a bug in the host gets here.
      this.#options.log.error({ err: error, route: route.route }, "ingress request failed in the host");
      reply = problem(500, "the request failed in the host");
    }
    span.setAttribute("http.response.status_code", reply.status);
    if (reply.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
    this.#send(req, res, reply, route.route, started);
  }

  async #serve(
    req: IncomingMessage,
    route: CompiledRoute,
    params: Readonly<Record<string, string>>,
    ctx: Context,
    span: Span,
  ): Promise<Reply> {
    if (route.auth === "bearer") {
      const auth = this.#tokens.check(req.headers.authorization);
      if (auth !== "ok") {
        const challenge = auth === "missing" ? 'Bearer realm="jetfn"' : 'Bearer realm="jetfn", error="invalid_token"';
        return problem(401, auth === "missing" ? "a bearer token is required" : "the bearer token is not valid", undefined, {
          "WWW-Authenticate": challenge,
        });
      }
    }
    if (!acceptsContentType(route.encoding, req.headers["content-type"])) {
      return problem(415, `this route takes ${route.encoding === "json" ? "application/json" : "text/*"} bodies`);
    }
    const idempotencyKey = req.headers["idempotency-key"];
    if (idempotencyKey !== undefined && (typeof idempotencyKey !== "string" || !IDEMPOTENCY_KEY.test(idempotencyKey))) {
      return problem(400, "Idempotency-Key must be 1 to 200 visible ASCII characters");
    }
    const body = await readBody(req, this.#options.maxBodyBytes);
    if (!body.ok) {
      return body.reason === "too-large"
        ? problem(413, `the body is larger than ${this.#options.maxBodyBytes} bytes`, undefined, { Connection: "close" })
        : problem(400, "the request was cut off");
    }
    span.setAttribute("http.request.body.size", body.bytes.length);
    const checked = await this.#check(route, body.bytes);
    if (checked) return checked;

    if (route.target.kind === "invoke") return this.#invoke(route, route.target.function, params, body.bytes, ctx);
    return this.#publish(route.target.subject, params, body.bytes, idempotencyKey, ctx);
  }

  /** The body against the route's encoding and schema: a 400 reply, or undefined when it passes. */
  async #check(route: CompiledRoute, bytes: Uint8Array): Promise<Reply | undefined> {
    if (route.encoding === "binary") return undefined;
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      return problem(400, "the body is not valid UTF-8");
    }
    if (route.encoding === "text") return undefined;
    if (text.trim() === "") return problem(400, "the body is empty; send a JSON value");
    if (jsonDepthExceeds(text)) return problem(400, `the body nests deeper than ${MAX_JSON_DEPTH} levels`);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      return problem(400, `the body is not valid JSON: ${(error as Error).message}`);
    }
    const schema = this.#options.schemas.get(route);
    if (!schema) return undefined;
    const valid = await validate(schema, value);
    if (valid.ok) return undefined;
    const issues: readonly FieldIssue[] =
      valid.error instanceof ValidationError ? valid.error.issues : [{ path: "", message: valid.error.message }];
    return problem(400, "the body does not match the route's schema", { errors: issues });
  }

  async #publish(
    template: string,
    params: Readonly<Record<string, string>>,
    bytes: Uint8Array,
    idempotencyKey: string | undefined,
    ctx: Context,
  ): Promise<Reply> {
    for (const [name, value] of Object.entries(params)) {
      if (!SUBJECT_TOKEN.test(value)) return problem(400, `path parameter ${name} must not contain ".", "*", ">" or white space`);
    }
    const subject = fillTemplate(template, (name) => params[name]!);
    // A publish made while disconnected would sit in the client's buffer and might go out
    // after the client was told it failed: refuse it instead, so a 503 means "not published".
    if (!this.#options.connected()) return unavailable("NATS is unreachable", UNREACHABLE_RETRY_S);
    try {
      const ack = await tracedPublish(this.#options.publisher, ctx, subject, bytes, {}, idempotencyKey);
      return json(202, { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate });
    } catch (error) {
      this.#options.log.warn({ err: error, subject }, "ingress publish failed");
      return unavailable(
        `publishing to ${subject} failed; retry with the same Idempotency-Key to keep it at most once`,
        UNREACHABLE_RETRY_S,
      );
    }
  }

  async #invoke(
    route: CompiledRoute,
    fn: string,
    params: Readonly<Record<string, string>>,
    bytes: Uint8Array,
    ctx: Context,
  ): Promise<Reply> {
    const caller = this.#options.caller(fn);
    if (!caller) return unavailable(`function ${fn} is not running`, 1);
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(params)) headers[`Jetfn-Param-${name}`] = value;
    const result = await caller.call({ data: bytes, subject: route.route, headers, parent: ctx, spanKind: SpanKind.INTERNAL });
    return callReply(result);
  }

  #send(req: IncomingMessage, res: ServerResponse, reply: Reply, label: string, started: number): void {
    const { metrics } = this.#options;
    metrics.ingressRequests.inc({ route: label, status: String(reply.status) });
    metrics.ingressDuration.observe({ route: label }, (performance.now() - started) / 1000);
    if (res.headersSent || res.destroyed) return;
    res.writeHead(reply.status, reply.headers);
    res.end(reply.body);
    // A body left unread (413, or a route refused before reading it) is not drained: the
    // connection closes once the answer is out.
    if (!req.complete) res.once("finish", () => req.socket.destroySoon());
  }
}

/** The answer to a call, per {@link CALL_STATUS}. */
export function callReply(result: CallResult): Reply {
  if (result.kind === "ok") {
    const value = result.value === undefined ? null : result.value;
    let body: Uint8Array;
    try {
      body = encode(value);
    } catch (error) {
      return problem(500, `the function's result cannot be sent: ${(error as Error).message}`);
    }
    return { status: 200, headers: { "Content-Type": CONTENT_TYPES[encodedType(value)] }, body };
  }
  if (result.kind === "unavailable") return unavailable(result.message, Math.ceil(result.retryAfterMs / 1000));
  return problem(CALL_STATUS[result.kind], result.message, result.kind === "invalid" ? { errors: result.issues } : undefined);
}

function pathOf(url: string | undefined): string {
  const raw = url ?? "/";
  const end = raw.search(/[?#]/);
  return end === -1 ? raw : raw.slice(0, end);
}

function acceptsContentType(encoding: CompiledRoute["encoding"], header: string | undefined): boolean {
  if (encoding === "binary") return true;
  const type = header?.split(";")[0]?.trim().toLowerCase() ?? "";
  if (encoding === "text") return type.startsWith("text/");
  return type === "application/json" || /^application\/[\w.+-]+\+json$/.test(type);
}

function json(status: number, value: unknown): Reply {
  return { status, headers: { "Content-Type": "application/json" }, body: JSON.stringify(value) };
}

/** An RFC 9457 problem: `title` is the status's reason phrase, `detail` says what was wrong. */
function problem(status: number, detail: string, extra?: Record<string, unknown>, headers?: Record<string, string>): Reply {
  const body = { type: "about:blank", title: STATUS_CODES[status] ?? "Error", status, detail, ...extra };
  return { status, headers: { "Content-Type": "application/problem+json", ...headers }, body: JSON.stringify(body) };
}

function unavailable(detail: string, retryAfterS: number): Reply {
  return problem(503, detail, undefined, { "Retry-After": String(Math.max(1, retryAfterS)) });
}

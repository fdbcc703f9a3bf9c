import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../telemetry/logger.ts";
import { ActionError, type ConsoleActions } from "./actions.ts";
import type { ConsoleAssets } from "./assets.ts";
import { type ConsoleAuth, isLoopback, type Session } from "./auth.ts";
import type { FleetFeed } from "./fleet-feed.ts";
import { consolePage, loginPage } from "./pages.ts";
import type { ReplayRequest } from "./view.ts";

export interface ConsoleServerOptions {
  readonly host: string;
  readonly port: number;
  readonly auth: ConsoleAuth;
  readonly feed: FleetFeed;
  readonly actions: ConsoleActions;
  readonly assets: ConsoleAssets;
  readonly log: Logger;
}

/** The largest request body taken (the forms send a few hundred bytes; a selection of dead letters a few KB). */
const MAX_BODY = 256 * 1024;

/** A comment on every event stream this often, so proxies keep it open. */
const KEEPALIVE_MS = 15_000;

const SECURITY_HEADERS = {
  "Content-Security-Policy":
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
} as const;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The console over HTTP (node:http): the page and its assets, the login, a JSON API under
 * `/api/`, and the fleet as server-sent events (`/api/events`). Reading needs a session;
 * every change is a POST with a JSON body and the session's CSRF token in a header.
 * Without a token (loopback only), a request must also name a loopback host (`Host`), so a
 * page elsewhere cannot reach the console through DNS rebinding.
 */
export class ConsoleServer {
  readonly #options: ConsoleServerOptions;
  readonly #server: Server;
  readonly #streams = new Set<ServerResponse>();

  constructor(options: ConsoleServerOptions) {
    this.#options = options;
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => this.#fail(res, error));
    });
  }

  /** Listens; resolves with the URL to open. */
  async listen(): Promise<string> {
    const { host, port } = this.#options;
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, host, () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    const address = this.#server.address() as AddressInfo;
    const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
    return `http://${shown}:${address.port}/`;
  }

  async close(): Promise<void> {
    for (const res of this.#streams) res.end();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { auth, assets } = this.#options;
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    const url = new URL(req.url ?? "/", "http://console");
    const method = req.method ?? "GET";
    if (!auth.required && !isLoopback(hostOf(req.headers.host))) {
      throw new HttpError(403, "this console answers only on a loopback address (127.0.0.1, localhost)");
    }

    if (method === "GET" && url.pathname === "/assets/app.js") return send(res, 200, "text/javascript; charset=utf-8", assets.js, true);
    if (method === "GET" && url.pathname === "/assets/app.css") return send(res, 200, "text/css; charset=utf-8", assets.css, true);
    if (method === "GET" && url.pathname === "/healthz") return send(res, 200, "text/plain; charset=utf-8", "ok\n");
    if (url.pathname === "/login") return this.#login(req, res, method);

    const session = auth.session(req);
    if (method === "GET" && (url.pathname === "/" || url.pathname === "/index.html")) {
      if (!session) return redirect(res, "/login");
      return send(res, 200, "text/html; charset=utf-8", consolePage({ csrf: session.csrf, loginRequired: auth.required }));
    }
    if (!url.pathname.startsWith("/api/") && url.pathname !== "/logout") throw new HttpError(404, `no page ${url.pathname}`);
    if (!session) throw new HttpError(401, "log in first");

    if (method === "GET") return this.#read(req, res, url);
    if (method !== "POST") throw new HttpError(405, `${method} is not allowed here`);
    if (!auth.csrfValid(req, session)) throw new HttpError(403, "missing or wrong CSRF token: reload the page");
    if (url.pathname === "/logout") {
      res.setHeader("Set-Cookie", auth.logout(req, secure(req)));
      return json(res, 200, { ok: true });
    }
    return this.#change(req, res, url, session);
  }

  async #login(req: IncomingMessage, res: ServerResponse, method: string): Promise<void> {
    const { auth } = this.#options;
    if (!auth.required) return redirect(res, "/");
    if (method === "GET") return send(res, 200, "text/html; charset=utf-8", loginPage(false));
    if (method !== "POST") throw new HttpError(405, `${method} is not allowed here`);
    const form = new URLSearchParams((await readBody(req)).toString("utf8"));
    const cookie = auth.login(form.get("token") ?? "", secure(req));
    if (!cookie) {
      this.#options.log.warn({ remote: req.socket.remoteAddress }, "a console login with a wrong token");
      return send(res, 401, "text/html; charset=utf-8", loginPage(true));
    }
    res.setHeader("Set-Cookie", cookie);
    return redirect(res, "/");
  }

  async #read(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const { feed, actions } = this.#options;
    const parts = url.pathname.split("/").slice(2).map(decodeURIComponent);
    if (url.pathname === "/api/fleet") return json(res, 200, (await feed.current()) ?? null);
    if (url.pathname === "/api/events") return this.#events(req, res);
    if (parts[0] === "functions" && parts[2] === "dead-letters" && parts.length === 3) {
      return json(res, 200, await actions.deadLetters(parts[1]!));
    }
    if (parts[0] === "functions" && parts[2] === "dead-letters" && parts.length === 4) {
      return json(res, 200, await actions.deadLetter(parts[1]!, sequence(parts[3]!)));
    }
    if (parts[0] === "replays" && parts.length === 2) return json(res, 200, actions.replayProgress(parts[1]!));
    throw new HttpError(404, `no API ${url.pathname}`);
  }

  async #change(req: IncomingMessage, res: ServerResponse, url: URL, _session: Session): Promise<void> {
    const { feed, actions } = this.#options;
    if (!(req.headers["content-type"] ?? "").startsWith("application/json")) throw new HttpError(415, "send JSON");
    const body = parseJson(await readBody(req));
    const parts = url.pathname.split("/").slice(2).map(decodeURIComponent);
    if (parts[0] !== "functions" || parts.length < 3) throw new HttpError(404, `no API ${url.pathname}`);
    const name = parts[1]!;
    const action = parts.slice(2).join("/");
    switch (action) {
      case "pause":
      case "resume": {
        const reason = typeof body.reason === "string" ? body.reason : undefined;
        const message = await actions.setPaused(name, action === "pause", reason);
        await feed.refresh();
        return json(res, 200, { message });
      }
      case "dead-letters/redrive": {
        const result = await actions.redrive(name, sequences(body.seqs), body.only === true);
        void feed.refresh();
        return json(res, 200, result);
      }
      case "dead-letters/purge": {
        const result = await actions.purge(name, sequences(body.seqs));
        void feed.refresh();
        return json(res, 200, result);
      }
      case "replay":
        return json(res, 200, await actions.replay(name, replayRequest(body)));
    }
    throw new HttpError(404, `no API ${url.pathname}`);
  }

  /** The fleet as server-sent events: the current view at once, then each new one. */
  async #events(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { feed } = this.#options;
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" });
    res.write("retry: 2000\n\n");
    const push = (view: unknown): void => {
      // The first picture may arrive after the page went away.
      if (!res.destroyed && !res.writableEnded) res.write(`event: fleet\ndata: ${JSON.stringify(view)}\n\n`);
    };
    const unsubscribe = feed.subscribe(push);
    const keepalive = setInterval(() => res.write(": keepalive\n\n"), KEEPALIVE_MS);
    this.#streams.add(res);
    req.on("close", () => {
      unsubscribe();
      clearInterval(keepalive);
      this.#streams.delete(res);
    });
    const current = await feed.current();
    if (current) push(current);
  }

  #fail(res: ServerResponse, error: unknown): void {
    const status = error instanceof HttpError || error instanceof ActionError ? error.status : 500;
    if (status === 500) this.#options.log.error({ err: error }, "a console request failed");
    if (res.headersSent) {
      res.end();
      return;
    }
    json(res, status, { error: (error as Error).message ?? String(error) });
  }
}

function hostOf(header: string | undefined): string {
  if (!header) return "";
  const bracket = /^\[([^\]]+)\]/.exec(header);
  return bracket ? bracket[1]! : header.replace(/:\d+$/, "");
}

function secure(req: IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean }).encrypted === true || req.headers["x-forwarded-proto"] === "https";
}

function send(res: ServerResponse, status: number, type: string, body: string | Uint8Array, cache = false): void {
  res.writeHead(status, { "Content-Type": type, "Cache-Control": cache ? "max-age=300" : "no-store" });
  res.end(body);
}

function json(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, "application/json; charset=utf-8", JSON.stringify(value));
}

function redirect(res: ServerResponse, to: string): void {
  res.writeHead(303, { Location: to, "Cache-Control": "no-store" });
  res.end();
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, "request body too large");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function parseJson(body: Buffer): Record<string, unknown> {
  try {
    const value = JSON.parse(body.toString("utf8") || "{}") as unknown;
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw new HttpError(400, "the body must be a JSON object");
}

function sequence(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new HttpError(400, `not a sequence: ${text}`);
  return n;
}

function sequences(value: unknown): number[] {
  if (!Array.isArray(value) || value.length === 0) throw new HttpError(400, "choose at least one dead letter (seqs)");
  return value.map((v) => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) throw new HttpError(400, `not a sequence: ${String(v)}`);
    return v;
  });
}

function replayRequest(body: Record<string, unknown>): ReplayRequest {
  const text = (key: string): string | undefined => (typeof body[key] === "string" && body[key] !== "" ? (body[key] as string) : undefined);
  const number = (key: string): number | undefined => {
    const value = body[key];
    if (value === undefined || value === null || value === "") return undefined;
    if (typeof value !== "number") throw new HttpError(400, `${key} must be a number`);
    return value;
  };
  const fromSeq = number("fromSeq");
  const since = text("since");
  const until = text("until");
  const subject = text("subject");
  const limit = number("limit");
  const key = text("key");
  return {
    ...(fromSeq !== undefined ? { fromSeq } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
    ...(subject !== undefined ? { subject } : {}),
    ...(limit !== undefined ? { limit } : {}),
    ...(key !== undefined ? { key } : {}),
    dryRun: body.dryRun === true,
  };
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { listen } from "./listen.ts";
import { LoopWatch } from "./loop-watch.ts";

/** What the HTTP endpoints ask of the host. */
export interface HttpSource {
  /** The metrics registry (prom-client's): its exposition and content type. */
  readonly registry: { readonly contentType: string; metrics(): Promise<string> };
  ready(): boolean;
  /** Lines `/readyz` adds to its answer: what the host waits for meanwhile (it stays ready). */
  readyNotes?(): readonly string[];
  functions(): unknown;
}

export interface HttpServerOptions {
  /** `/healthz` answers 503 after one event-loop stall longer than this in the window. @default 5000 */
  readonly stuckLoopMs?: number;
  /** @default 10000 */
  readonly windowMs?: number;
}

/**
 * `/metrics`, `/healthz`, `/readyz` and `/functions` on node:http. `/healthz` answers 503
 * when the event loop stalled for over 5 s in the current or the previous 10 s window.
 */
export class HttpServer {
  readonly #server: Server;
  readonly #source: HttpSource;
  readonly #stuckLoopMs: number;
  readonly #loop: LoopWatch;

  constructor(source: HttpSource, options: HttpServerOptions = {}) {
    this.#source = source;
    this.#stuckLoopMs = options.stuckLoopMs ?? 5000;
    this.#loop = new LoopWatch(options.windowMs ?? 10_000);
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => send(res, 500, "text/plain", `${(error as Error).message}\n`));
    });
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listen(this.#server, host, port);
  }

  close(): Promise<void> {
    this.#loop.stop();
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "text/plain", "method not allowed\n");
    const path = (req.url ?? "/").split("?")[0];
    switch (path) {
      case "/metrics":
        return send(res, 200, this.#source.registry.contentType, await this.#source.registry.metrics());
      case "/healthz": {
        const stalledMs = this.#loop.longestStallMs;
        return stalledMs > this.#stuckLoopMs
          ? send(res, 503, "text/plain", `event loop stalled for ${Math.round(stalledMs)}ms\n`)
          : send(res, 200, "text/plain", "ok\n");
      }
      case "/readyz": {
        // A function waiting for the broker does not make the host unready: it is connected
        // and recovers by itself, and unready replicas would turn the ingress's 503s (with
        // Retry-After) into refused connections. The body says what waits.
        const notes = (this.#source.readyNotes?.() ?? []).map((note) => `${note}\n`).join("");
        return this.#source.ready() ? send(res, 200, "text/plain", `ready\n${notes}`) : send(res, 503, "text/plain", `not ready\n${notes}`);
      }
      case "/functions":
        return send(res, 200, "application/json", `${JSON.stringify(this.#source.functions(), null, 2)}\n`);
      default:
        return send(res, 404, "text/plain", "not found\n");
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
  res.end(body);
}

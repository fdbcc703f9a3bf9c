import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Registry } from "prom-client";

/** What the HTTP endpoints ask of the host. */
export interface HttpSource {
  readonly registry: Registry;
  ready(): boolean;
  functions(): unknown;
}

/** The event loop counts as stuck when one delay in the last window exceeded this. */
const STUCK_LOOP_MS = 5000;
const WINDOW_MS = 10_000;

/**
 * `/metrics`, `/healthz`, `/readyz` and `/functions` on node:http. `/healthz` answers 503
 * when the event loop stalled for over 5 s in the last 10 s window.
 */
export class HttpServer {
  readonly #server: Server;
  readonly #source: HttpSource;
  readonly #loopDelay = monitorEventLoopDelay({ resolution: 20 });
  #lastWindowMaxMs = 0;
  readonly #window: NodeJS.Timeout;

  constructor(source: HttpSource) {
    this.#source = source;
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => send(res, 500, "text/plain", `${(error as Error).message}\n`));
    });
    this.#loopDelay.enable();
    this.#window = setInterval(() => {
      this.#lastWindowMaxMs = this.#loopDelay.max / 1e6;
      this.#loopDelay.reset();
    }, WINDOW_MS);
    this.#window.unref();
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, host, () => {
        this.#server.off("error", reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    clearInterval(this.#window);
    this.#loopDelay.disable();
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
        const stalledMs = Math.max(this.#lastWindowMaxMs, this.#loopDelay.max / 1e6);
        return stalledMs > STUCK_LOOP_MS
          ? send(res, 503, "text/plain", `event loop stalled for ${Math.round(stalledMs)}ms\n`)
          : send(res, 200, "text/plain", "ok\n");
      }
      case "/readyz":
        return this.#source.ready() ? send(res, 200, "text/plain", "ready\n") : send(res, 503, "text/plain", "not ready\n");
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

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { decodeSpans, type ReceivedSpan } from "./otlp-protobuf.ts";

export type { ReceivedSpan };

/**
 * A minimal OTLP/HTTP trace receiver: accepts `POST /v1/traces` in the protobuf encoding
 * jetfn's exporter sends, and keeps every span.
 */
export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<OtlpReceiver> {
    let receiver: OtlpReceiver | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        if (req.url === "/v1/traces" && req.method === "POST") receiver!.spans.push(...decodeSpans(Buffer.concat(chunks)));
        // An empty ExportTraceServiceResponse: everything accepted.
        res.writeHead(200, { "content-type": "application/x-protobuf" });
        res.end();
      });
    });
    receiver = new OtlpReceiver(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}

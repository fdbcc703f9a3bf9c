/**
 * A discarding OTLP/HTTP receiver for bench/process.ts, in its own process: it answers
 * every `POST /v1/traces` with an empty protobuf response and keeps only counts. `GET /stats`
 * answers `{"requests":n,"bytes":n,"spans":n}` (totals since start). Spans are counted by
 * walking the protobuf bodies jetfn's exporter sends, without decoding the spans.
 *
 * Prints its port on stdout once listening, on 127.0.0.1.
 */
import { createServer } from "node:http";
import { countSpans } from "../../test/support/otlp-protobuf.ts";

let requests = 0;
let bytes = 0;
let spans = 0;

const server = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ requests, bytes, spans }));
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    requests++;
    bytes += body.length;
    spans += countSpans(body);
    res.writeHead(200, { "content-type": "application/x-protobuf" });
    res.end();
  });
});

server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`${typeof address === "object" && address ? address.port : 0}\n`);
});
process.once("SIGTERM", () => server.close(() => process.exit(0)));

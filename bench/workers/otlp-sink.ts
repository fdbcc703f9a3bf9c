/**
 * A discarding OTLP/HTTP receiver for bench/process.ts, in its own process: it answers
 * every `POST /v1/traces` with `{}` and keeps only counts. `GET /stats` answers
 * `{"requests":n,"bytes":n,"spans":n}` (totals since start). Spans are counted by the
 * occurrences of `"spanId"` in the JSON bodies @opentelemetry/exporter-trace-otlp-http
 * sends (parent ids are `"parentSpanId"`, so they do not match), without parsing them.
 *
 * Prints its port on stdout once listening, on 127.0.0.1.
 */
import { createServer } from "node:http";

const SPAN_ID = Buffer.from('"spanId"');
let requests = 0;
let bytes = 0;
let spans = 0;

function countSpans(body: Buffer): number {
  let count = 0;
  for (let at = body.indexOf(SPAN_ID); at !== -1; at = body.indexOf(SPAN_ID, at + SPAN_ID.length)) count++;
  return count;
}

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
    res.writeHead(200, { "content-type": "application/json" });
    res.end("{}");
  });
});

server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`${typeof address === "object" && address ? address.port : 0}\n`);
});
process.once("SIGTERM", () => server.close(() => process.exit(0)));

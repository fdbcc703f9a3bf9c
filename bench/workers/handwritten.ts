/**
 * The hand-written workers of bench/process.ts: a plain `@nats-io/jetstream` worker, run as
 * its own process (bundled by esbuild and started with plain `node`, like jetfn's own
 * runtime), reading a durable pull consumer the benchmark created with `consume()`. Two
 * styles of the same loop:
 *
 *   careful  what a careful engineer writes, and the reference every ratio of
 *            bench/process.ts is taken against. It does the two things jetfn's host does
 *            for speed that a worker of its own can do too: the connection is opened with
 *            `noAsyncTraces: true` (as runtime/nats/connect.ts: nats.js otherwise builds an
 *            Error, with its stack, for every request, so for every PubAck awaited), and the
 *            acks asked for during one turn of the event loop are sent together on the next
 *            `setImmediate`, in one socket write (as runtime/nats/ack-batch.ts: nats.js
 *            writes out what one microtask queued, and a `for await` loop or a promise's
 *            continuation acks in a microtask of its own, so each ack is a write).
 *   naive    the same loop with nats.js's defaults: each `m.ack()` on its own, async traces
 *            on. The default, so bench/steps.ts's baseline stays what it was.
 *
 * Environment (set by bench/process.ts):
 *   NATS_URL        the server
 *   BENCH_STYLE     careful | naive (default naive)
 *   BENCH_STREAM    the stream
 *   BENCH_DURABLE   the durable consumer (explicit acks)
 *   BENCH_MODE      noop  | JSON.parse, then ack, one message at a time
 *                   echo  | JSON.parse, JSON.stringify, publish to BENCH_OUTPUT with
 *                         | `Nats-Msg-Id: <stream>:<seq>`, await the PubAck, then ack
 *                   io5ms | JSON.parse, wait 5 ms, then ack
 *   BENCH_OUTPUT    the output subject (echo)
 *   BENCH_INFLIGHT  echo and io5ms: messages in flight at most (default 64); also
 *                   consume()'s `max_messages`
 *
 * Prints `ready` on stdout once `consume()` is running. On SIGTERM it stops consuming,
 * lets the messages in flight finish, sends the acks still waiting, drains the connection
 * and exits 0. A failed publish naks the message and is reported on stderr.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { type JsMsg, jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    console.error(`handwritten worker: ${name} is required`);
    process.exit(2);
  }
  return value;
}

const mode = required("BENCH_MODE");
if (mode !== "noop" && mode !== "echo" && mode !== "io5ms") {
  console.error(`handwritten worker: BENCH_MODE must be noop, echo or io5ms, got ${mode}`);
  process.exit(2);
}
const style = process.env.BENCH_STYLE || "naive";
if (style !== "careful" && style !== "naive") {
  console.error(`handwritten worker: BENCH_STYLE must be careful or naive, got ${style}`);
  process.exit(2);
}
const careful = style === "careful";
const stream = required("BENCH_STREAM");
const durable = required("BENCH_DURABLE");
const output = mode === "echo" ? required("BENCH_OUTPUT") : "";
const limit = Number(process.env.BENCH_INFLIGHT ?? "64");

const nc = await connect({ servers: required("NATS_URL"), ...(careful ? { noAsyncTraces: true } : {}) });
const js = jetstream(nc);
const consumer = await js.consumers.get(stream, durable);
const messages = await consumer.consume({ max_messages: limit });

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** careful: the messages whose ack was asked for in this turn of the event loop. */
let unsent: JsMsg[] = [];
let flushing: NodeJS.Immediate | undefined;

/** Sends the waiting acks: nats.js queues them all in this one call stack, and writes them in one go. */
function flushAcks(): void {
  if (flushing) clearImmediate(flushing);
  flushing = undefined;
  const batch = unsent;
  unsent = [];
  for (const m of batch) m.ack();
}

const ack: (m: JsMsg) => void = careful
  ? (m) => {
      unsent.push(m);
      flushing ??= setImmediate(flushAcks);
    }
  : (m) => m.ack();

async function echo(m: JsMsg): Promise<void> {
  const event: unknown = JSON.parse(decoder.decode(m.data));
  await js.publish(output, encoder.encode(JSON.stringify(event)), { msgID: `${stream}:${m.seq}` });
  ack(m);
}

async function io(m: JsMsg): Promise<void> {
  JSON.parse(decoder.decode(m.data));
  await sleep(5);
  ack(m);
}

let inflight = 0;
let wake: (() => void) | undefined;
let idle: (() => void) | undefined;

function settled(): void {
  inflight--;
  const w = wake;
  wake = undefined;
  w?.();
  if (inflight === 0) idle?.();
}

function failed(m: JsMsg, error: unknown): void {
  console.error(`handwritten worker: seq ${m.seq}: ${error instanceof Error ? error.message : String(error)}`);
  m.nak();
}

process.once("SIGTERM", () => messages.stop());
process.stdout.write("ready\n");

const run = mode === "echo" ? echo : io;
for await (const m of messages) {
  if (mode === "noop") {
    JSON.parse(decoder.decode(m.data));
    ack(m);
    continue;
  }
  while (inflight >= limit) await new Promise<void>((resolve) => (wake = resolve));
  inflight++;
  run(m)
    .catch((error: unknown) => failed(m, error))
    .finally(settled);
}
if (inflight > 0) await new Promise<void>((resolve) => (idle = resolve));
flushAcks();
await nc.drain();
process.exit(0);

/**
 * The hand-written baselines of bench/batch.ts: a plain `@nats-io/jetstream` worker, run as
 * its own process (bundled by esbuild, started with plain `node`), reading a durable pull
 * consumer the benchmark created, with `consume()`.
 *
 * Environment (set by bench/batch.ts):
 *   NATS_URL          the server
 *   BENCH_STREAM      the stream
 *   BENCH_DURABLE     the durable consumer (explicit acks)
 *   BENCH_MODE        single | JSON.parse, a BENCH_INSERT_MS "insert" per message, ack;
 *                     |   BENCH_CONCURRENCY messages at once
 *                     batch  | gather BENCH_BATCH_SIZE messages (or what came within
 *                     |   BENCH_BATCH_WAIT_MS of the first), JSON.parse each, one
 *                     |   BENCH_INSERT_MS "insert" for the batch, ack each;
 *                     |   BENCH_CONCURRENCY batches at once
 *   BENCH_INSERT_MS   the insert's duration (a timer, as a database round trip would be)
 *
 * Prints `ready` on stdout once `consume()` is running; exits 0 on SIGTERM after the
 * messages in hand are done.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { type JsMsg, jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    console.error(`batch worker: ${name} is required`);
    process.exit(2);
  }
  return value;
}

const mode = required("BENCH_MODE");
if (mode !== "single" && mode !== "batch") {
  console.error(`batch worker: BENCH_MODE must be single or batch, got ${mode}`);
  process.exit(2);
}
const concurrency = Number(required("BENCH_CONCURRENCY"));
const insertMs = Number(required("BENCH_INSERT_MS"));
const size = Number(process.env.BENCH_BATCH_SIZE ?? "100");
const waitMs = Number(process.env.BENCH_BATCH_WAIT_MS ?? "100");

const nc = await connect({ servers: required("NATS_URL") });
const js = jetstream(nc);
const consumer = await js.consumers.get(required("BENCH_STREAM"), required("BENCH_DURABLE"));
// Room for every slot's messages, and one batch filling.
const messages = await consumer.consume({ max_messages: mode === "batch" ? (concurrency + 1) * size : concurrency });
const decoder = new TextDecoder();

let running = 0;
let wake: (() => void) | undefined;
const all = new Set<Promise<void>>();

async function slot(): Promise<void> {
  while (running >= concurrency) await new Promise<void>((resolve) => (wake = resolve));
  running++;
}

function start(work: () => Promise<void>): void {
  const done = work()
    .catch((error: unknown) => console.error(`batch worker: ${error instanceof Error ? error.message : String(error)}`))
    .finally(() => {
      running--;
      all.delete(done);
      const w = wake;
      wake = undefined;
      w?.();
    });
  all.add(done);
}

async function insertOne(m: JsMsg): Promise<void> {
  JSON.parse(decoder.decode(m.data));
  await sleep(insertMs);
  m.ack();
}

async function insertMany(batch: JsMsg[]): Promise<void> {
  for (const m of batch) JSON.parse(decoder.decode(m.data));
  await sleep(insertMs);
  for (const m of batch) m.ack();
}

let filling: JsMsg[] = [];
let timer: NodeJS.Timeout | undefined;

async function flush(): Promise<void> {
  clearTimeout(timer);
  timer = undefined;
  const batch = filling;
  filling = [];
  if (batch.length === 0) return;
  await slot();
  start(() => insertMany(batch));
}

process.once("SIGTERM", () => messages.stop());
process.stdout.write("ready\n");

for await (const m of messages) {
  if (mode === "single") {
    await slot();
    start(() => insertOne(m));
    continue;
  }
  filling.push(m);
  if (filling.length >= size) await flush();
  else if (filling.length === 1) timer = setTimeout(() => void flush(), waitMs);
}
await flush();
await Promise.all(all);
await nc.drain();
process.exit(0);

/** Helpers of the delayed events' tests and benchmark: movers on their own connections, and reading what arrived. */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { DELAYED_STREAM, type DelayedFailureReason } from "../../runtime/contracts/delayed.ts";
import { DelayedMover, type DelayedMoverOptions } from "../../runtime/nats/delayed-mover.ts";
import { LogCapture } from "./project.ts";

/** A mover as a host runs it, on a connection of its own (closing it is the host dying). */
export interface TestMover {
  readonly id: string;
  readonly mover: DelayedMover;
  readonly nc: NatsConnection;
  readonly logs: LogCapture;
  /** Each delivery's lateness (ms), as the observer heard it. */
  readonly lateness: number[];
  readonly failures: DelayedFailureReason[];
}

/** Connects, starts a mover (lease ttl 2 s unless given), and returns it once started. */
export async function startMover(
  url: string,
  id: string,
  options: Partial<Pick<DelayedMoverOptions, "leaseTtlMs" | "sweepMs" | "tickMs" | "clock">> = {},
): Promise<TestMover> {
  const nc = await connect({ servers: url });
  const logs = new LogCapture();
  const lateness: number[] = [];
  const failures: DelayedFailureReason[] = [];
  const mover = new DelayedMover({
    nc,
    js: jetstream(nc),
    jsm: await jetstreamManager(nc),
    hostId: id,
    leaseTtlMs: 2000,
    log: pino({ level: "info" }, logs.stream),
    observer: { delivered: (ms) => lateness.push(ms), failed: (reason) => failures.push(reason) },
    ...options,
  });
  await mover.start();
  return { id, mover, nc, logs, lateness, failures };
}

/** Stops a mover and closes its connection (either may be gone already). */
export async function stopMover(m: TestMover): Promise<void> {
  await m.mover.stop().catch(() => {});
  if (!m.nc.isClosed()) await m.nc.close();
}

/** Creates a file stream `name` capturing `subjects`. */
export async function addStream(jsm: JetStreamManager, name: string, subjects: string[]): Promise<void> {
  await jsm.streams.add({ name, subjects, storage: StorageType.File });
}

/** One message that arrived in a target stream. */
export interface Arrived {
  readonly seq: number;
  readonly subject: string;
  readonly data: string;
  readonly headers: Record<string, string[]>;
  /** When the stream stored it (epoch ms). */
  readonly at: number;
}

/** Every message of `stream`, in order, through an ordered consumer. */
export async function readStream(js: JetStreamClient, stream: string): Promise<Arrived[]> {
  const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  const out: Arrived[] = [];
  try {
    if ((await consumer.info(true)).num_pending === 0) return out;
    for (;;) {
      let last = -1;
      for await (const m of await consumer.fetch({ max_messages: 5000, expires: 2000 })) {
        const headers: Record<string, string[]> = {};
        for (const [name, values] of m.headers ?? []) headers[name] = values;
        out.push({ seq: m.seq, subject: m.subject, data: m.string(), headers, at: m.time.getTime() });
        last = m.info.pending;
        if (last === 0) break;
      }
      if (last <= 0) return out;
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
}

/** The number of messages in `stream`. */
export async function countOf(jsm: JetStreamManager, stream: string): Promise<number> {
  return (await jsm.streams.info(stream)).state.messages;
}

/** The highest `num_ack_pending` of any consumer on `JETFN_DELAYED` now (0 with none). */
export async function delayedAckPending(jsm: JetStreamManager): Promise<number> {
  let max = 0;
  // A consumer deleted while the list is made comes back as null.
  for await (const c of jsm.consumers.list(DELAYED_STREAM)) max = Math.max(max, c?.num_ack_pending ?? 0);
  return max;
}

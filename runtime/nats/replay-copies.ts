import { DeliverPolicy, JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JsMsg } from "@nats-io/jetstream";
import { type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node";
import type { CompiledFunction } from "../config/types.ts";
import { formatReplayOf, REPLAY_STREAM, ReplayHeader, replayMsgId, replaySubject } from "../contracts/replay.ts";
import type { StreamPosition } from "../sdk/types.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { NatsClients } from "./clients.ts";
import { ensureReplayStream, replayDurable } from "./provision.ts";

/** Where a replay starts, by stream sequence or by stream time. */
export type ReplayBound = { readonly seq: number } | { readonly time: Date };

/** Which past events `jetfn replay` copies. */
export interface ReplayOptions {
  readonly from: ReplayBound;
  /** The last event, inclusive. @default the stream's last message when the replay starts */
  readonly until?: ReplayBound;
  /** Only events on this subject (wildcards allowed); it must be within the function's subjects. @default the function's subjects */
  readonly subject?: string;
  /** At most this many events. */
  readonly limit?: number;
  /** Count what would be copied; publish nothing. */
  readonly dryRun?: boolean;
  /** Makes the copies' ids this replay's own: the same events replayed again within the duplicate window run again. */
  readonly key?: string;
  /** Called after every event read, and once at the end. */
  readonly progress?: (counts: ReplayCounts) => void;
}

export interface ReplayCounts {
  /** Events that match, from the start point on, when the replay began (an upper bound of `read`). */
  readonly total: number;
  /** Events read from the function's stream. */
  read: number;
  /** Copies stored in `JETFN_REPLAY`. */
  published: number;
  /** Copies the stream already had (the same replay, run before within its duplicate window). */
  duplicates: number;
  /** The stream sequence of the last event read. */
  seq?: number;
}

/** Copies acknowledged by the stream before more are sent. */
const WINDOW = 256;

/**
 * Replays past events of a function's stream to that function alone: reads them with an
 * ordered consumer from `options.from`, and publishes each, byte for byte with its headers,
 * to `jetfn.replay.<function>` in `JETFN_REPLAY`, marked with `Jetfn-Replay-Of` and its
 * original subject, with a `Nats-Msg-Id` per event and function, so a replay run again
 * (interrupted, say) stores nothing twice. Copies are pipelined, `WINDOW` awaiting their
 * PubAck at a time. Events stored after the replay began are not read: the function gets
 * them anyway. Throws on the first copy that fails to publish, after the others settled.
 */
export async function replayEvents(
  clients: Pick<NatsClients, "js" | "jsm">,
  fn: CompiledFunction,
  options: ReplayOptions,
  log: Logger,
): Promise<ReplayCounts> {
  const { js, jsm } = clients;
  let lastSeq: number;
  try {
    lastSeq = (await jsm.streams.info(fn.stream)).state.last_seq;
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)
      throw new Error(`its stream ${fn.stream} does not exist`);
    throw error;
  }
  if (!options.dryRun) await ensureReplayStream(jsm, log);
  const until = options.until;
  const endSeq = until && "seq" in until ? Math.min(until.seq, lastSeq) : lastSeq;
  const untilMs = until && "time" in until ? until.time.getTime() : Number.POSITIVE_INFINITY;
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const filters = options.subject ? [options.subject] : [...fn.subjects];
  const consumer = await js.consumers.get(fn.stream, {
    // One subject as a plain filter: nats-server 2.9 has no multi-filter consumers.
    filter_subjects: filters.length === 1 ? filters[0]! : filters,
    ...("seq" in options.from
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: options.from.seq }
      : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: options.from.time.toISOString() }),
  });
  const counts: ReplayCounts = { total: Math.min((await consumer.info()).num_pending, limit), read: 0, published: 0, duplicates: 0 };
  const copier = options.dryRun ? undefined : new Copier(js, fn.name, options.key);
  let done = counts.total === 0 || lastSeq === 0;
  try {
    while (!done && !copier?.failure) {
      const batch = await consumer.fetch({ max_messages: Math.min(WINDOW, limit - counts.read), expires: 2000 });
      let got = 0;
      for await (const msg of batch) {
        got++;
        // The rest of a batch is let go once the end is passed.
        if (done || copier?.failure) continue;
        if (msg.seq > endSeq || Number(msg.info.timestampNanos / 1e6) > untilMs) {
          done = true;
          continue;
        }
        counts.read++;
        counts.seq = msg.seq;
        if (copier) await copier.copy(msg, counts);
        if (counts.read >= limit || msg.seq >= endSeq || msg.info.pending === 0) done = true;
        options.progress?.(counts);
      }
      if (got === 0) done = true;
    }
    await copier?.settled();
  } finally {
    await consumer.delete().catch(() => {});
  }
  if (copier?.failure) throw copier.failure;
  options.progress?.(counts);
  return counts;
}

/** Publishes copies, `WINDOW` at a time; keeps the first failure. */
class Copier {
  readonly #js: JetStreamClient;
  readonly #fn: string;
  readonly #key?: string;
  readonly #inflight = new Set<Promise<void>>();
  failure?: Error;

  constructor(js: JetStreamClient, fn: string, key?: string) {
    this.#js = js;
    this.#fn = fn;
    this.#key = key;
  }

  async copy(msg: JsMsg, counts: ReplayCounts): Promise<void> {
    while (this.#inflight.size >= WINDOW) await Promise.race(this.#inflight);
    const of = { stream: msg.info.stream, seq: msg.seq };
    const publishing = publishReplayCopy(
      this.#js,
      this.#fn,
      { data: msg.data, headers: msg.headers, subject: msg.subject, of },
      replayMsgId(this.#fn, of, this.#key),
    )
      .then(
        (duplicate) => {
          if (duplicate) counts.duplicates++;
          else counts.published++;
        },
        (error: unknown) => {
          this.failure ??= new Error(`copying ${formatReplayOf(of)} to ${replaySubject(this.#fn)} failed: ${(error as Error).message}`, {
            cause: error,
          });
        },
      )
      .finally(() => this.#inflight.delete(publishing));
    this.#inflight.add(publishing);
  }

  async settled(): Promise<void> {
    await Promise.all(this.#inflight);
  }
}

/** One event as a replay copies it. */
export interface ReplayCopy {
  readonly data: Uint8Array;
  /** Its own headers: every value is kept, but not the server's `Nats-*` ones (expectations, its id). */
  readonly headers: MsgHdrs | Readonly<Record<string, string>> | undefined;
  /** The subject it was first published on: the function sees it as `ctx.subject`. */
  readonly subject: string;
  readonly of: StreamPosition;
}

/**
 * Publishes a copy to `jetfn.replay.<function>`, for that function alone (`jetfn replay`,
 * and `jetfn dlq redrive --only`). Resolves with whether the stream had it already.
 */
export async function publishReplayCopy(js: JetStreamClient, fn: string, copy: ReplayCopy, msgId: string): Promise<boolean> {
  const h = natsHeaders();
  const source = copy.headers;
  if (isMsgHdrs(source)) {
    for (const key of source.keys()) if (!SERVER_HEADER.test(key)) for (const value of source.values(key)) h.append(key, value);
  } else if (source) {
    for (const [key, value] of Object.entries(source)) if (!SERVER_HEADER.test(key)) h.append(key, value);
  }
  h.set(ReplayHeader.Of, formatReplayOf(copy.of));
  h.set(ReplayHeader.Subject, copy.subject);
  const ack = await js.publish(replaySubject(fn), copy.data, { headers: h, msgID: msgId });
  return ack.duplicate;
}

const SERVER_HEADER = /^nats-/i;

function isMsgHdrs(value: ReplayCopy["headers"]): value is MsgHdrs {
  return typeof (value as MsgHdrs | undefined)?.values === "function";
}

/**
 * Whether a host has created the function's replay consumer: until one has (a host of this
 * version started with the function), copies wait in `JETFN_REPLAY`.
 */
export async function replayConsumerExists(clients: Pick<NatsClients, "jsm">, fn: CompiledFunction): Promise<boolean> {
  try {
    await clients.jsm.consumers.info(REPLAY_STREAM, replayDurable(fn.name));
    return true;
  } catch (error) {
    if (
      error instanceof JetStreamApiError &&
      (error.code === JetStreamApiCodes.ConsumerNotFound || error.code === JetStreamApiCodes.StreamNotFound)
    )
      return false;
    throw error;
  }
}

/**
 * Reading `JETFN_DELAYED` without a durable consumer, so that no delayed event ever sits in
 * an ack-pending list: a direct get (`next_by_subj`, which nats-server 2.9 serves) finds
 * whether a bucket holds anything past a sequence, and a short-lived ordered consumer (ack
 * policy none, deleted when read) streams what it holds.
 */
import { DeliverPolicy, JetStreamApiCodes, JetStreamApiError, type JetStreamManager, type JsMsg, type StoredMsg } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/transport-node";
import { DELAYED_STREAM, DelayedHeader, dueOf, isForwardedHeader, parseDelayedSubject, parseDeliverAt } from "../contracts/delayed.ts";

/** One delayed event as read from the stream. */
export interface StoredDelayed {
  readonly seq: number;
  readonly subject: string;
  /** Undefined when the subject is not `jetfn.delayed.<bucket>.<target>` (a producer's mistake). */
  readonly bucket: number | undefined;
  readonly target: string | undefined;
  /** When it is due (epoch ms): `Jetfn-Deliver-At`, or its bucket's start. NaN without a bucket. */
  readonly due: number;
  /** When the stream stored it (epoch ms). */
  readonly storedAt: number;
  readonly headers: MsgHdrs | undefined;
  readonly data: Uint8Array;
}

/** How long a read waits for messages the server said were there (some may have gone meanwhile). */
const FETCH_EXPIRES_MS = 1000;

function stored(seq: number, subject: string, headers: MsgHdrs | undefined, data: Uint8Array, storedAt: number): StoredDelayed {
  const place = parseDelayedSubject(subject);
  const deliverAt = parseDeliverAt(headers?.get(DelayedHeader.DeliverAt) || undefined);
  return {
    seq,
    subject,
    bucket: place?.bucket,
    target: place?.target,
    due: place ? dueOf(place.bucket, deliverAt) : Number.NaN,
    storedAt,
    headers,
    data,
  };
}

function fromStoredMsg(m: StoredMsg): StoredDelayed {
  return stored(m.seq, m.subject, m.header, m.data, m.time.getTime());
}

function fromJsMsg(m: JsMsg): StoredDelayed {
  return stored(m.seq, m.subject, m.headers, m.data, m.time.getTime());
}

/** The headers that go on to the target: every value of every header but `Jetfn-*` and `Nats-*`. */
export function forwardedHeaders(headers: MsgHdrs | undefined): [name: string, value: string][] {
  const out: [string, string][] = [];
  if (headers === undefined) return out;
  for (const [name, values] of headers) {
    if (!isForwardedHeader(name)) continue;
    for (const value of values) out.push([name, value]);
  }
  return out;
}

/** The same as a plain record (the last value of a repeated header wins), for listings. */
export function forwardedRecord(headers: MsgHdrs | undefined): Record<string, string> {
  return Object.fromEntries(forwardedHeaders(headers));
}

/**
 * Whether a delete failed because the message is not there (delivered, cancelled, or never
 * was). nats-server 2.9 answers 10043 "sequence N not found" for a deleted one, 10057
 * "stream store EOF" past the last, and 10037 "no message found" elsewhere.
 */
export function isGone(error: unknown): boolean {
  if (!(error instanceof JetStreamApiError)) return false;
  if (error.code === JetStreamApiCodes.NoMessageFound || error.code === 10057) return true;
  return error.code === 10043 && /not found/i.test(error.message);
}

/** The first event matching `filter` at or after sequence `fromSeq`, or null when there is none. */
export async function firstDelayed(jsm: JetStreamManager, filter: string, fromSeq: number): Promise<StoredDelayed | null> {
  const m = await jsm.direct.getMessage(DELAYED_STREAM, { seq: Math.max(fromSeq, 1), next_by_subj: filter });
  return m === null ? null : fromStoredMsg(m);
}

/** The event with sequence `seq`, or null when it is gone (delivered or cancelled). */
export async function delayedAt(jsm: JetStreamManager, seq: number): Promise<StoredDelayed | null> {
  const m = await jsm.direct.getMessage(DELAYED_STREAM, { seq });
  return m === null ? null : fromStoredMsg(m);
}

/** Options of {@link readDelayed}. */
export interface ReadDelayedOptions {
  /** The first sequence to read (events before it are skipped). */
  readonly fromSeq: number;
  /** Events handed over at a time. @default 1000 */
  readonly batch?: number;
  /** Takes each batch in stream order; returning (or resolving to) `false` stops the read. */
  readonly onBatch: (events: StoredDelayed[]) => unknown;
}

/**
 * Reads every event matching `filter` from `fromSeq` on, in stream order and in batches,
 * through an ordered consumer (ack policy none) that is deleted when done.
 * @returns the last sequence read, or `fromSeq - 1` when none was.
 */
export async function readDelayed(jsm: JetStreamManager, filter: string, options: ReadDelayedOptions): Promise<number> {
  const batch = options.batch ?? 1000;
  let lastSeq = options.fromSeq - 1;
  const consumer = await jsm.jetstream().consumers.get(DELAYED_STREAM, {
    filter_subjects: filter,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: Math.max(options.fromSeq, 1),
  });
  try {
    if ((await consumer.info(true)).num_pending === 0) return lastSeq;
    for (;;) {
      const events: StoredDelayed[] = [];
      let drained = false;
      for await (const m of await consumer.fetch({ max_messages: batch, expires: FETCH_EXPIRES_MS })) {
        events.push(fromJsMsg(m));
        if (m.info.pending === 0) {
          drained = true;
          break;
        }
      }
      if (events.length > 0) lastSeq = events[events.length - 1]!.seq;
      const more = events.length > 0 ? await options.onBatch(events) : undefined;
      if (drained || events.length === 0 || more === false) return lastSeq;
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
}

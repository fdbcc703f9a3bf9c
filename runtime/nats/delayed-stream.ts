/**
 * The delayed events' stream, `JETFN_DELAYED` (wire format: contracts/delayed.ts): creating
 * it, scheduling an event, listing the waiting ones and cancelling one. The mover, which
 * delivers them when due, is in delayed-mover.ts.
 */
import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import {
  DELAYED_PREFIX,
  DELAYED_STREAM,
  DELAYED_SUBJECTS,
  DelayError,
  type DelayedEvent,
  delayedPublication,
  formatDelayedId,
  parseDelayedId,
  targetFilter,
} from "../contracts/delayed.ts";
import { forwardedRecord, isGone, readDelayed, type StoredDelayed } from "./delayed-read.ts";

/** What the mover needs to know of the stream. */
export interface DelayedStreamInfo {
  /** When the stream was created (epoch ms): part of each delivery's `Nats-Msg-Id`. */
  readonly createdMs: number;
  /** Events in it now. */
  readonly messages: number;
}

/** Options of {@link ensureDelayedStream}. */
export interface EnsureDelayedStreamOptions {
  /** Replicas of a stream created here (an existing one keeps its own). @default 1 */
  readonly replicas?: number;
}

function isNotFound(error: unknown, code: number): boolean {
  return error instanceof JetStreamApiError && error.code === code;
}

/**
 * Creates `JETFN_DELAYED` when missing: `jetfn.delayed.>`, file storage, limits retention
 * (an event stays until the mover or a cancel deletes it; nothing expires), direct gets
 * allowed (the mover reads with them), the server's duplicate window for a producer's own
 * `Nats-Msg-Id`. An existing one is kept, with direct gets turned on if they were off.
 */
export async function ensureDelayedStream(jsm: JetStreamManager, options: EnsureDelayedStreamOptions = {}): Promise<DelayedStreamInfo> {
  try {
    const info = await jsm.streams.info(DELAYED_STREAM);
    if (!info.config.allow_direct) await jsm.streams.update(DELAYED_STREAM, { ...info.config, allow_direct: true });
    return { createdMs: Date.parse(info.created), messages: info.state.messages };
  } catch (error) {
    if (!isNotFound(error, JetStreamApiCodes.StreamNotFound)) throw error;
  }
  const info = await jsm.streams.add({
    name: DELAYED_STREAM,
    subjects: [...DELAYED_SUBJECTS],
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    storage: StorageType.File,
    num_replicas: options.replicas ?? 1,
    allow_direct: true,
  });
  return { createdMs: Date.parse(info.created), messages: info.state.messages };
}

/** What {@link publishDelayed} schedules. */
export interface DelayedMessage {
  /** The subject the event goes to when due: literal, and captured by a stream by then. */
  readonly target: string;
  readonly data: Uint8Array;
  /** The event's own headers (a `traceparent`, ...): delivered with it, less `Jetfn-*` and `Nats-*`. */
  readonly headers?: Readonly<Record<string, string>>;
  /** When it is due: in the past means at once; at most a year ahead (contracts' `resolveDeliverAt` reads a delay or an `at`). */
  readonly deliverAt: Date | number;
  /** The `Nats-Msg-Id` of this scheduling publish: the same one again within `JETFN_DELAYED`'s duplicate window schedules nothing new, and returns the same id. */
  readonly msgId?: string;
}

/**
 * Schedules one event (a plain publish of the wire format, which `JETFN_DELAYED` must
 * capture: see {@link ensureDelayedStream}). Throws a `DelayError` for a bad target or a
 * time over a year ahead, and the client's error when the broker refuses.
 * @returns the event's id.
 */
export async function publishDelayed(js: JetStreamClient, message: DelayedMessage): Promise<string> {
  const deliverAt = message.deliverAt instanceof Date ? message.deliverAt.getTime() : message.deliverAt;
  const publication = delayedPublication(message.target, deliverAt, message.headers);
  const headers = natsHeaders();
  for (const [name, value] of Object.entries(publication.headers)) headers.set(name, value);
  const ack = await js.publish(publication.subject, message.data, { headers, ...(message.msgId ? { msgID: message.msgId } : {}) });
  if (ack.stream !== DELAYED_STREAM) {
    throw new Error(`${publication.subject} was stored by stream ${ack.stream}, not ${DELAYED_STREAM}: no mover will deliver it`);
  }
  return formatDelayedId(ack.seq);
}

/** Options of {@link listDelayed}. */
export interface ListDelayedOptions {
  /** Only events for targets this matches (a subject or filter: `orders.*`). */
  readonly subject?: string;
  /** At most this many, the soonest due first. @default 100 */
  readonly limit?: number;
}

/** What {@link listDelayed} found. */
export interface DelayedListing {
  /** The soonest due first (then in the order they were scheduled). */
  readonly events: DelayedEvent[];
  /** Every event that matched, listed or not. */
  readonly total: number;
}

/**
 * The waiting events, soonest due first. Counts come from one stream info request; only
 * the buckets that hold the events listed are read.
 */
export async function listDelayed(jsm: JetStreamManager, options: ListDelayedOptions = {}): Promise<DelayedListing> {
  const limit = options.limit ?? 100;
  const filter = targetFilter(options.subject);
  const info = await jsm.streams.info(DELAYED_STREAM, { subjects_filter: filter });
  const byBucket = new Map<number, number>();
  let total = 0;
  for (const [subject, count] of Object.entries(info.state.subjects ?? {})) {
    const token = subject.slice(DELAYED_PREFIX.length + 1).split(".", 1)[0] ?? "";
    if (!/^[0-9]+$/.test(token)) continue;
    total += count;
    byBucket.set(Number(token), (byBucket.get(Number(token)) ?? 0) + count);
  }
  const events: DelayedEvent[] = [];
  for (const bucket of [...byBucket.keys()].sort((a, b) => a - b)) {
    if (events.length >= limit) break;
    const found: StoredDelayed[] = [];
    const tail = options.subject === undefined || options.subject === ">" ? ">" : options.subject;
    await readDelayed(jsm, `${DELAYED_PREFIX}.${bucket}.${tail}`, {
      fromSeq: 1,
      onBatch: (batch) => found.push(...batch.filter((e) => e.target !== undefined)),
    });
    found.sort((a, b) => a.due - b.due || a.seq - b.seq);
    for (const e of found.slice(0, limit - events.length)) events.push(toEvent(e));
  }
  return { events, total };
}

function toEvent(e: StoredDelayed): DelayedEvent {
  return {
    id: formatDelayedId(e.seq),
    target: e.target!,
    deliverAt: e.due,
    scheduledAt: e.storedAt,
    headers: forwardedRecord(e.headers),
    data: e.data,
  };
}

/**
 * Cancels a waiting event: deletes it from `JETFN_DELAYED`. A mover takes each event as its
 * time comes and checks it is still there just before delivering it, so an event
 * cancelled before it is due never arrives.
 * @returns false when no such event waits (delivered, cancelled, or never scheduled).
 */
export async function cancelDelayed(jsm: JetStreamManager, id: string): Promise<boolean> {
  const seq = parseDelayedId(id);
  if (seq === undefined) throw new DelayError(`not a delayed event id: ${JSON.stringify(id)} (ids are positive integers)`);
  try {
    return await jsm.streams.deleteMessage(DELAYED_STREAM, seq, false);
  } catch (error) {
    if (isGone(error)) return false;
    throw error;
  }
}

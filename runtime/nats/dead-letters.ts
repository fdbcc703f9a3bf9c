import type { MsgHdrs } from "@nats-io/transport-node";
import type { CompiledFunction } from "../config/types.ts";
import { DeadLetterHeader, type DeadLetterReason, isOwnHeader } from "../contracts/dead-letter.ts";
import { parseReplayOf, ReplayHeader } from "../contracts/replay.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { NatsClients } from "./clients.ts";
import { ensureReplayStream } from "./provision.ts";
import { publishReplayCopy } from "./replay-copies.ts";

/** One dead letter as `jetfn dlq list` shows it. */
export interface DeadLetter {
  /** Where it is kept: the stream capturing the function's `deadLetter` subject. */
  readonly dlqStream: string;
  readonly dlqSeq: number;
  readonly function: string;
  /** Where it was published first, and its place in that stream. */
  readonly subject: string;
  readonly stream: string;
  readonly streamSeq: number;
  readonly deliveries: number;
  readonly reason: string;
  readonly error: string;
  readonly failedAt: string;
  readonly size: number;
  /** Set when the failed delivery was a replay's copy: `<stream>:<seq>` of the original event. */
  readonly replayOf?: string;
}

/** One dead letter in full, as `jetfn dlq show` prints it. */
export interface DeadLetterDetail extends DeadLetter {
  /** When the dead-letter stream stored it (ISO 8601). */
  readonly storedAt: string;
  /** Every header as stored (jetfn's, the server's and the message's own), each value apart. */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
  /** The body: the failed message's bytes as they were published. */
  readonly data: Uint8Array;
}

/** Which of a function's dead letters `jetfn dlq list` shows. */
export interface DeadLetterFilter {
  /** Only those with this `Jetfn-Reason`. */
  readonly reason?: DeadLetterReason;
  /** Only those that failed at or after this time. */
  readonly since?: Date;
  /** At most this many, the oldest that match. */
  readonly limit?: number;
}

/** Which of a function's dead letters `jetfn dlq purge` removes; every one given must match. */
export interface DeadLetterSelection {
  /** Only these dead-letter stream sequences. */
  readonly seqs?: ReadonlySet<number>;
  /** Only those that failed before this time. */
  readonly before?: Date;
}

/** What `jetfn dlq purge` is about to remove, for a confirmation before {@link remove}. */
export interface DeadLetterPurge {
  readonly dlqStream: string;
  /** The dead letters selected, oldest first. */
  readonly letters: readonly DeadLetter[];
  /** Sequences asked for that are not among the function's dead letters. */
  readonly missing: readonly number[];
  /** Removes {@link letters}; resolves with how many went (fewer if some went meanwhile, e.g. redriven). */
  remove(): Promise<number>;
}

/** What {@link getDeadLetter} found at a sequence. */
export type DeadLetterLookup =
  | { readonly kind: "found"; readonly letter: DeadLetterDetail }
  | { readonly kind: "missing"; readonly dlqStream: string }
  /** A message of the stream, but on another function's dead-letter subject. */
  | { readonly kind: "elsewhere"; readonly dlqStream: string; readonly subject: string; readonly function: string };

interface Stored {
  readonly letter: DeadLetter;
  readonly data: Uint8Array;
  /** The original message's own headers: everything but jetfn's and the server's (see isOwnHeader). */
  readonly headers: Record<string, string>;
  /** When it failed, in ms: `Jetfn-Failed-At`, or when the stream stored it if that is absent. */
  readonly failedAtMs: number;
}

/**
 * Reads a function's dead letters that match `filter`, oldest first, with an ordered
 * consumer on the stream that captures its `deadLetter` subject. Reading changes nothing.
 */
export async function listDeadLetters(clients: NatsClients, fn: CompiledFunction, filter: DeadLetterFilter = {}): Promise<DeadLetter[]> {
  const { reason, since } = filter;
  const matches = (stored: Stored): boolean =>
    (reason === undefined || stored.letter.reason === reason) && (since === undefined || stored.failedAtMs >= since.getTime());
  return (await read(clients, fn, filter.limit, matches)).map((stored) => stored.letter);
}

/**
 * The dead letter at `dlqSeq` of the stream capturing the function's `deadLetter` subject,
 * with every header and its body; read by sequence, so it changes nothing.
 */
export async function getDeadLetter(clients: NatsClients, fn: CompiledFunction, dlqSeq: number): Promise<DeadLetterLookup> {
  const dlqStream = await findStream(clients, fn);
  const msg = await clients.jsm.streams.getMessage(dlqStream, { seq: dlqSeq });
  if (!msg) return { kind: "missing", dlqStream };
  if (msg.subject !== fn.deadLetter) {
    return { kind: "elsewhere", dlqStream, subject: msg.subject, function: msg.header?.get(DeadLetterHeader.Function) ?? "" };
  }
  const headers = (msg.header?.keys() ?? []).flatMap((name) => msg.header!.values(name).map((value) => [name, value] as const));
  const letter = toLetter(dlqStream, fn, msg.seq, msg.header, msg.data);
  return { kind: "found", letter: { ...letter, storedAt: msg.time.toISOString(), headers, data: msg.data } };
}

/**
 * Finds the function's dead letters that `selection` chooses and returns them with a
 * `remove()` to call once the user agreed. Removal takes only those listed: letters that
 * arrive after the plan stay. When they are the oldest of the function's letters (all of
 * them, or those before a time), one purge of the subject up to the last one's sequence
 * removes them; otherwise each is deleted.
 */
export async function planDeadLetterPurge(
  clients: NatsClients,
  fn: CompiledFunction,
  selection: DeadLetterSelection,
): Promise<DeadLetterPurge> {
  const { seqs, before } = selection;
  const all = await read(clients, fn);
  const chosen = all.filter(
    (stored) => (seqs === undefined || seqs.has(stored.letter.dlqSeq)) && (before === undefined || stored.failedAtMs < before.getTime()),
  );
  const letters = chosen.map((stored) => stored.letter);
  const present = new Set(all.map((stored) => stored.letter.dlqSeq));
  const missing = [...(seqs ?? [])].filter((seq) => !present.has(seq)).sort((a, b) => a - b);
  const dlqStream = all[0]?.letter.dlqStream ?? (await findStream(clients, fn));
  const oldest = letters.every((letter, i) => all[i]!.letter.dlqSeq === letter.dlqSeq);
  return {
    dlqStream,
    letters,
    missing,
    async remove() {
      const last = letters.at(-1);
      if (!last) return 0;
      if (oldest) return (await clients.jsm.streams.purge(dlqStream, { filter: fn.deadLetter, seq: last.dlqSeq + 1 })).purged;
      // A few deletes in flight at a time: one round trip each, without flooding the server.
      let next = 0;
      let removed = 0;
      const worker = async (): Promise<void> => {
        while (next < letters.length) if (await deleteIfPresent(clients, dlqStream, letters[next++]!.dlqSeq)) removed++;
      };
      await Promise.all(Array.from({ length: Math.min(16, letters.length) }, worker));
      return removed;
    },
  };
}

/**
 * Sends a function's dead letters (all, or those whose dead-letter sequence is in `only`)
 * back to the subject they were first published on, with their original bytes and headers,
 * and removes each from the dead-letter stream once the republish is acknowledged. The
 * republish carries a `Nats-Msg-Id` per dead letter, so running it again after a crash
 * between the two steps does not publish twice (within the stream's duplicate window).
 * Every function bound to that subject sees the message again; with `toFunction`, only
 * this one does: each goes through the function's replay subject, as a replay of its
 * original event (`jetfn dlq redrive --only`).
 */
export async function redriveDeadLetters(
  clients: NatsClients,
  fn: CompiledFunction,
  only?: ReadonlySet<number>,
  toFunction?: { readonly log: Logger },
): Promise<DeadLetter[]> {
  if (toFunction) await ensureReplayStream(clients.jsm, toFunction.log);
  const redriven: DeadLetter[] = [];
  for (const { letter, data, headers } of await read(clients, fn)) {
    // Only jetfn's own dead letters say where they came from.
    if ((only && !only.has(letter.dlqSeq)) || !letter.subject) continue;
    const msgId = `redrive:${letter.dlqStream}:${letter.dlqSeq}`;
    if (toFunction) {
      // A replay's dead letter is a replay of the same original event again.
      const of = parseReplayOf(letter.replayOf) ?? { stream: letter.stream, seq: letter.streamSeq };
      await publishReplayCopy(clients.js, fn.name, { data, headers, subject: letter.subject, of }, msgId);
    } else {
      await clients.publisher.publish(letter.subject, data, { headers, msgId });
    }
    await clients.jsm.streams.deleteMessage(letter.dlqStream, letter.dlqSeq, false);
    redriven.push(letter);
  }
  return redriven;
}

async function findStream(clients: NatsClients, fn: CompiledFunction): Promise<string> {
  try {
    return await clients.jsm.streams.find(fn.deadLetter);
  } catch {
    throw new Error(`no stream captures its dead-letter subject ${fn.deadLetter}`);
  }
}

async function read(
  clients: NatsClients,
  fn: CompiledFunction,
  limit = Number.POSITIVE_INFINITY,
  matches: (stored: Stored) => boolean = () => true,
): Promise<Stored[]> {
  const dlqStream = await findStream(clients, fn);
  const consumer = await clients.js.consumers.get(dlqStream, { filter_subjects: fn.deadLetter });
  let remaining = (await consumer.info()).num_pending;
  const stored: Stored[] = [];
  while (remaining > 0 && stored.length < limit) {
    const batch = await consumer.fetch({ max_messages: Math.min(remaining, 256), expires: 2000 });
    let got = 0;
    for await (const msg of batch) {
      got++;
      const letter = toLetter(dlqStream, fn, msg.seq, msg.headers, msg.data);
      const headers = Object.create(null) as Record<string, string>;
      for (const key of msg.headers?.keys() ?? []) if (!isOwnHeader(key)) headers[key] = msg.headers!.get(key);
      const failedAt = Date.parse(letter.failedAt);
      const one = { letter, data: msg.data, headers, failedAtMs: Number.isNaN(failedAt) ? msg.time.getTime() : failedAt };
      if (stored.length < limit && matches(one)) stored.push(one);
    }
    if (got === 0) break;
    remaining -= got;
  }
  return stored;
}

function toLetter(dlqStream: string, fn: CompiledFunction, dlqSeq: number, headers: MsgHdrs | undefined, data: Uint8Array): DeadLetter {
  const h = (name: string): string => headers?.get(name) ?? "";
  return {
    dlqStream,
    dlqSeq,
    function: h(DeadLetterHeader.Function) || fn.name,
    subject: h(DeadLetterHeader.Subject),
    stream: h(DeadLetterHeader.Stream),
    streamSeq: Number(h(DeadLetterHeader.StreamSeq)),
    deliveries: Number(h(DeadLetterHeader.Deliveries)),
    reason: h(DeadLetterHeader.Reason),
    error: h(DeadLetterHeader.Error),
    failedAt: h(DeadLetterHeader.FailedAt),
    size: data.length,
    ...(h(ReplayHeader.Of) ? { replayOf: h(ReplayHeader.Of) } : {}),
  };
}

/** Deletes one message; false if it was gone already. */
async function deleteIfPresent(clients: NatsClients, stream: string, seq: number): Promise<boolean> {
  try {
    return await clients.jsm.streams.deleteMessage(stream, seq, false);
  } catch (error) {
    // The server answers a missing sequence with one of several codes (not found, store
    // EOF); asking for the message tells them apart from a real failure.
    if (
      await clients.jsm.streams.getMessage(stream, { seq }).then(
        (msg) => msg === null,
        () => false,
      )
    )
      return false;
    throw error;
  }
}

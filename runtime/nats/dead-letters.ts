import type { JsMsg } from "@nats-io/jetstream";
import type { CompiledFunction } from "../config/types.ts";
import { DeadLetterHeader, isOwnHeader } from "../contracts/dead-letter.ts";
import { parseReplayOf, ReplayHeader } from "../contracts/replay.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { NatsClients } from "./clients.ts";
import { ensureReplayStream } from "./provision.ts";
import { publishReplayCopy } from "./replay.ts";

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

interface Stored {
  readonly letter: DeadLetter;
  readonly data: Uint8Array;
  /** The original message's own headers: everything but jetfn's and the server's (see isOwnHeader). */
  readonly headers: Record<string, string>;
}

/**
 * Reads a function's dead letters, oldest first, with an ordered consumer on the stream
 * that captures its `deadLetter` subject. Reading changes nothing.
 */
export async function listDeadLetters(clients: NatsClients, fn: CompiledFunction, limit = Number.POSITIVE_INFINITY): Promise<DeadLetter[]> {
  return (await read(clients, fn, limit)).map((stored) => stored.letter);
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

async function read(clients: NatsClients, fn: CompiledFunction, limit = Number.POSITIVE_INFINITY): Promise<Stored[]> {
  let dlqStream: string;
  try {
    dlqStream = await clients.jsm.streams.find(fn.deadLetter);
  } catch {
    throw new Error(`function ${fn.name}: no stream captures its dead-letter subject ${fn.deadLetter}`);
  }
  const consumer = await clients.js.consumers.get(dlqStream, { filter_subjects: fn.deadLetter });
  let remaining = Math.min(limit, (await consumer.info()).num_pending);
  const stored: Stored[] = [];
  while (remaining > 0) {
    const batch = await consumer.fetch({ max_messages: Math.min(remaining, 256), expires: 2000 });
    let got = 0;
    for await (const msg of batch) {
      stored.push(toStored(dlqStream, fn, msg));
      got++;
    }
    if (got === 0) break;
    remaining -= got;
  }
  return stored;
}

function toStored(dlqStream: string, fn: CompiledFunction, msg: JsMsg): Stored {
  const h = (name: string): string => msg.headers?.get(name) ?? "";
  const headers = Object.create(null) as Record<string, string>;
  for (const key of msg.headers?.keys() ?? []) if (!isOwnHeader(key)) headers[key] = msg.headers!.get(key);
  return {
    letter: {
      dlqStream,
      dlqSeq: msg.seq,
      function: h(DeadLetterHeader.Function) || fn.name,
      subject: h(DeadLetterHeader.Subject),
      stream: h(DeadLetterHeader.Stream),
      streamSeq: Number(h(DeadLetterHeader.StreamSeq)),
      deliveries: Number(h(DeadLetterHeader.Deliveries)),
      reason: h(DeadLetterHeader.Reason),
      error: h(DeadLetterHeader.Error),
      failedAt: h(DeadLetterHeader.FailedAt),
      size: msg.data.length,
      ...(h(ReplayHeader.Of) ? { replayOf: h(ReplayHeader.Of) } : {}),
    },
    data: msg.data,
    headers,
  };
}

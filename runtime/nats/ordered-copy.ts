import type { JetStreamManager, PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { Delivery } from "../contracts/delivery.ts";
import { escapeName, OrderedHeader } from "../contracts/ordered.ts";
import type { PubAcks } from "./pub-acks.ts";

/**
 * A copy's id (`Nats-Msg-Id`): where its original is, in which incarnation of its stream
 * (`created`, when it was made, in epoch ms): a stream deleted and added again numbers its
 * messages from 1 again, and its events must not be taken for copies of the old one's.
 */
export function copyId(delivery: Delivery, created: number): string {
  return `${delivery.stream}:${created}:${delivery.seq}`;
}

/**
 * Publishes a forwarded copy of `delivery` to a partition's subject (see ordering/forwarder.ts):
 * its data, its headers (`Nats-*` escaped) and where the original is, with `Nats-Msg-Id`
 * `id` (its {@link copyId}), expecting the stream's last sequence or last message id to be `expect`'s.
 */
export function publishCopy(
  pubAcks: PubAcks,
  subject: string,
  delivery: Delivery,
  id: string,
  expect: { lastSequence: number } | { lastMsgID: string },
): Promise<PubAck> {
  const headers = natsHeaders();
  // The server reads a header at its first mention in the block, and only if that begins a
  // line: the copy's own come first, and no original's name may mention one (see escapeName).
  headers.set("Nats-Msg-Id", id);
  if ("lastMsgID" in expect) headers.set("Nats-Expected-Last-Msg-Id", expect.lastMsgID);
  else headers.set("Nats-Expected-Last-Sequence", String(expect.lastSequence));
  headers.set(OrderedHeader.Subject, delivery.subject);
  headers.set(OrderedHeader.Stream, delivery.stream);
  headers.set(OrderedHeader.Seq, String(delivery.seq));
  headers.set(OrderedHeader.Time, String(delivery.timestamp.getTime()));
  const original = delivery.headers;
  for (const name in original) headers.set(escapeName(name), original[name]!);
  return pubAcks.publish(subject, delivery.data, headers);
}

/**
 * The original whose copy is the stream's message at `seq` (its last), or 0 when there is
 * none (a work queue's copy is gone once its partition acked it) or its original is older
 * than `since` (epoch ms): of a stream of that name deleted before.
 */
export async function copiedUpTo(jsm: JetStreamManager, stream: string, seq: number, since: number): Promise<number> {
  if (seq === 0) return 0;
  const header = (await jsm.streams.getMessage(stream, { seq }))?.header;
  if (!(Number(header?.get(OrderedHeader.Time)) >= since)) return 0;
  return Number(header?.get(OrderedHeader.Seq)) || 0;
}

import type { PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { Delivery } from "../contracts/delivery.ts";
import { escapeName, OrderedHeader } from "../contracts/ordered.ts";
import type { PubAcks } from "./pub-acks.ts";

/** A copy's id (`Nats-Msg-Id`): where its original is. */
export function copyId(delivery: Delivery): string {
  return `${delivery.stream}:${delivery.seq}`;
}

/**
 * Publishes a forwarded copy of `delivery` to a partition's subject (see ordering/forwarder.ts):
 * its data, its headers (`Nats-*` escaped) and where the original is, with `Nats-Msg-Id`
 * {@link copyId}, expecting the stream's last sequence or last message id to be `expect`'s.
 */
export function publishCopy(
  pubAcks: PubAcks,
  subject: string,
  delivery: Delivery,
  expect: { lastSequence: number } | { lastMsgID: string },
): Promise<PubAck> {
  const headers = natsHeaders();
  // The server reads a header at its first mention in the block, and only if that begins a
  // line: the copy's own come first, and no original's name may mention one (see escapeName).
  headers.set("Nats-Msg-Id", copyId(delivery));
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

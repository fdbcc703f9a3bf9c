import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { Delivery } from "../contracts/delivery.ts";
import { mustEscape, OrderedHeader } from "../contracts/ordered.ts";

/**
 * Publishes a forwarded copy of `delivery` to a partition's subject (see ordering/forwarder.ts):
 * its data, its headers (`Nats-*` escaped) and where the original is, with `Nats-Msg-Id:
 * <stream>:<seq>` and the stream's last sequence expected to be `expectedLast`.
 */
export function publishCopy(js: JetStreamClient, subject: string, delivery: Delivery, expectedLast: number): Promise<PubAck> {
  const headers = natsHeaders();
  const original = delivery.headers;
  for (const name in original) headers.set(mustEscape(name) ? OrderedHeader.Escaped + name : name, original[name]!);
  headers.set(OrderedHeader.Subject, delivery.subject);
  headers.set(OrderedHeader.Stream, delivery.stream);
  headers.set(OrderedHeader.Seq, String(delivery.seq));
  headers.set(OrderedHeader.Time, String(delivery.timestamp.getTime()));
  return js.publish(subject, delivery.data, {
    headers,
    msgID: `${delivery.stream}:${delivery.seq}`,
    expect: { lastSequence: expectedLast },
  });
}

/** PubAcks (runtime/nats/pub-acks.ts): JetStream publishes awaited through one subscription, on a real nats-server. */
import { headers } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PubAckError, PubAcks, STAGED_DUPLICATE } from "../../runtime/nats/pub-acks.ts";
import { useNats } from "../support/project.ts";

const nats = useNats();
const data = new TextEncoder().encode("x");

function withId(id: string, expect: Record<string, string> = {}) {
  const h = headers();
  h.set("Nats-Msg-Id", id);
  for (const [name, value] of Object.entries(expect)) h.set(name, value);
  return h;
}

describe("PubAcks", () => {
  let acks: PubAcks;
  beforeAll(async () => {
    await nats.jsm.streams.add({ name: "PA", subjects: ["pa.>"], storage: "memory" });
    acks = new PubAcks(nats.nc, 1000);
  });
  afterAll(() => acks.close());

  it("resolves each publish with its own PubAck, many in flight at once, and says which were duplicates", async () => {
    const sent = await Promise.all(Array.from({ length: 200 }, (_, n) => acks.publish("pa.a", data, withId(`m${n}`))));
    expect(sent.map((ack) => ack.seq)).toEqual(Array.from({ length: 200 }, (_, n) => n + 1));
    expect(sent.every((ack) => ack.stream === "PA" && !ack.duplicate)).toBe(true);
    const again = await acks.publish("pa.a", data, withId("m7"));
    expect([again.seq, again.duplicate]).toEqual([8, true]);
  });

  it("rejects a publish JetStream refuses with its error code, and one no stream takes with 503", async () => {
    const refused = acks.publish("pa.a", data, withId("late", { "Nats-Expected-Last-Msg-Id": "not-the-last" }));
    await expect(refused).rejects.toMatchObject({ name: "PubAckError", code: 10070 });
    await expect(acks.publish("nowhere.a", data, withId("n"))).rejects.toBeInstanceOf(PubAckError);
    await expect(acks.publish("nowhere.a", data, withId("n"))).rejects.toMatchObject({ code: 503 });
  });

  it("rejects a duplicate answer with sequence 0 (an id staged, not stored) as JetStream's 10158", async () => {
    // What a nats-server 2.9 stream leader answers for an id whose first publish is in
    // process: answered here by hand, as a server can be made to only by a race.
    const answering = nats.nc.subscribe("staged.a", {
      callback: (_, msg) => {
        msg.respond('{"stream":"PA","seq":0,"duplicate": true}');
      },
    });
    try {
      await expect(acks.publish("staged.a", data, withId("d"))).rejects.toMatchObject({ name: "PubAckError", code: STAGED_DUPLICATE });
    } finally {
      answering.unsubscribe();
    }
  });

  it("times a publish out when its PubAck does not come", async () => {
    // A subject with a plain subscriber that never answers: the request stays unanswered.
    const silent = nats.nc.subscribe("silent.a");
    try {
      await expect(acks.publish("silent.a", data, withId("s"))).rejects.toMatchObject({ code: 408 });
    } finally {
      silent.unsubscribe();
    }
  });
});

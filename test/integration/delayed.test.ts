/**
 * Delayed events (issue 18) against a real nats-server: scheduling, listing and cancelling,
 * and the mover, each "host" a DelayedMover on its own connection in this process, so that
 * arrival times can be checked against due times on one clock. The lease ttl is 2 s.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { afterEach, expect, it } from "vitest";
import { bucketOf, bucketStart, DelayError, delayedSubject, deliveryMsgId } from "../../runtime/contracts/delayed.ts";
import { cancelDelayed, ensureDelayedStream, listDelayed, publishDelayed } from "../../runtime/nats/delayed-stream.ts";
import { addStream, countOf, readStream, startMover, stopMover, type TestMover } from "../support/delayed.ts";
import { useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
const TTL = 2000;
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const encoder = new TextEncoder();

const movers: TestMover[] = [];
async function mover(id: string, options: Parameters<typeof startMover>[2] = {}): Promise<TestMover> {
  const m = await startMover(nats.server.url, id, options);
  movers.push(m);
  return m;
}
afterEach(async () => {
  await Promise.all(movers.splice(0).map(stopMover));
});

/** Schedules `{"i":i,"due":due}` for `target` at `due`; returns the id. */
function schedule(target: string, i: number, due: number, headers: Record<string, string> = {}): Promise<string> {
  return publishDelayed(nats.js, { target, data: encoder.encode(JSON.stringify({ i, due })), headers, deliverAt: due });
}

function parsed(data: string): { i: number; due: number } {
  return JSON.parse(data) as { i: number; due: number };
}

it("schedules, lists the soonest first (by target too), and cancels", async () => {
  await ensureDelayedStream(nats.jsm);
  const now = Date.now();
  const late = await schedule("list.a", 1, now + 3_600_000);
  const soon = await schedule("list.b", 2, now + 1_800_000, { traceparent: TRACEPARENT });
  const middle = await schedule("list.a", 3, now + 2_700_000);

  const all = await listDelayed(nats.jsm);
  expect(all.total).toBe(3);
  expect(all.events.map((e) => e.id)).toEqual([soon, middle, late]);
  expect(all.events[0]).toMatchObject({ target: "list.b", deliverAt: now + 1_800_000, headers: { traceparent: TRACEPARENT } });
  expect(all.events[0]!.scheduledAt).toBeGreaterThanOrEqual(now - 1000);
  expect(new TextDecoder().decode(all.events[0]!.data)).toBe(JSON.stringify({ i: 2, due: now + 1_800_000 }));

  const onlyA = await listDelayed(nats.jsm, { subject: "list.a", limit: 1 });
  expect(onlyA.total).toBe(2);
  expect(onlyA.events.map((e) => e.id)).toEqual([middle]);
  expect((await listDelayed(nats.jsm, { subject: "list.*" })).total).toBe(3);

  expect(await cancelDelayed(nats.jsm, middle)).toBe(true);
  expect(await cancelDelayed(nats.jsm, middle)).toBe(false);
  expect(await cancelDelayed(nats.jsm, "999999")).toBe(false);
  await expect(cancelDelayed(nats.jsm, "abc")).rejects.toThrow(/not a delayed event id/);
  expect((await listDelayed(nats.jsm, { subject: "list.a" })).events.map((e) => e.id)).toEqual([late]);

  // The same msgId within the duplicate window schedules nothing new: the same id.
  const again = { target: "list.a", data: encoder.encode("x"), deliverAt: now + 3_600_000, msgId: "once" };
  expect(await publishDelayed(nats.js, again)).toBe(await publishDelayed(nats.js, again));

  await expect(publishDelayed(nats.js, { target: "list.*", data: encoder.encode("x"), deliverAt: now })).rejects.toThrow(DelayError);
  await expect(publishDelayed(nats.js, { target: "list.a", data: encoder.encode("x"), deliverAt: now + 366 * 86_400_000 })).rejects.toThrow(
    /at most a year ahead/,
  );
  for (const e of (await listDelayed(nats.jsm, { limit: 100 })).events) await cancelDelayed(nats.jsm, e.id);
  expect((await listDelayed(nats.jsm)).total).toBe(0);
});

it("delivers due events once, on time (within 1 s, never early), with their headers and a Nats-Msg-Id of its own", async () => {
  await addStream(nats.jsm, "ON_TIME", ["ontime.>"]);
  const m = await mover("a");
  await waitFor(() => m.mover.stats().moving, { message: "moving" });
  const start = Date.now();
  const N = 200;
  const ids = await Promise.all(
    Array.from({ length: N }, (_, i) =>
      schedule("ontime.x", i, start + 1500 + Math.floor((i * 3000) / N), {
        traceparent: TRACEPARENT,
        "X-Own": `v${i}`,
        "Jetfn-Private": "x",
      }),
    ),
  );
  await waitFor(async () => (await countOf(nats.jsm, "ON_TIME")) >= N, { timeout: 15_000, message: "all delivered" });
  await sleep(1500); // nothing more comes
  const arrived = await readStream(nats.js, "ON_TIME");
  expect(arrived).toHaveLength(N);
  expect(new Set(arrived.map((a) => parsed(a.data).i)).size).toBe(N);
  for (const a of arrived) {
    const { i, due } = parsed(a.data);
    expect(a.at, `event ${i} early`).toBeGreaterThanOrEqual(due);
    expect(a.at - due, `event ${i} late`).toBeLessThan(1000);
    expect(a.headers.traceparent).toEqual([TRACEPARENT]);
    expect(a.headers["X-Own"]).toEqual([`v${i}`]);
    expect(a.headers["Jetfn-Private"]).toBeUndefined();
    expect(a.headers["Jetfn-Deliver-At"]).toBeUndefined();
    expect(a.headers["Nats-Msg-Id"]?.[0]).toMatch(new RegExp(`^delayed:\\d+:${ids[i]}$`));
  }
  expect(m.mover.stats()).toMatchObject({ moving: true, delivered: N, duplicates: 0, failures: 0 });
  expect(m.lateness).toHaveLength(N);
  expect(Math.max(...m.lateness)).toBeLessThan(1000);
  expect((await listDelayed(nats.jsm, { subject: "ontime.>" })).total).toBe(0);
});

it("delivers an event due in the past at once", async () => {
  await addStream(nats.jsm, "PAST", ["past.>"]);
  const m = await mover("a");
  await waitFor(() => m.mover.stats().moving, { message: "moving" });
  const sent = Date.now();
  await schedule("past.x", 1, sent - 3_600_000);
  const [a] = await waitFor(async () => {
    const arrived = await readStream(nats.js, "PAST");
    return arrived.length > 0 ? arrived : undefined;
  });
  expect(a!.at - sent).toBeLessThan(1000);
  expect(m.lateness[0]).toBeLessThan(1000); // from when it was scheduled, not from an hour ago
});

it("never delivers a cancelled event, even one already read and waiting for its moment", async () => {
  await addStream(nats.jsm, "CANCEL", ["cancel.>"]);
  const m = await mover("a");
  await waitFor(() => m.mover.stats().moving, { message: "moving" });
  // Due 900 ms into a second that begins at least 2 s from now: the mover reads that
  // second's events as it begins, and holds this one until its moment.
  const bucket = bucketOf(Date.now()) + 3;
  const due = bucketStart(bucket) + 900;
  const early = await schedule("cancel.x", 1, Date.now() + 1500);
  const held = await schedule("cancel.x", 2, due);
  await schedule("cancel.x", 3, due); // kept
  expect(await cancelDelayed(nats.jsm, early)).toBe(true);
  while (Date.now() < bucketStart(bucket) + 400) await sleep(20); // read and held by now
  expect(await cancelDelayed(nats.jsm, held)).toBe(true);
  await waitFor(async () => (await countOf(nats.jsm, "CANCEL")) >= 1, { timeout: 10_000, message: "the kept one" });
  await sleep(1500);
  const arrived = await readStream(nats.js, "CANCEL");
  expect(arrived.map((a) => parsed(a.data).i)).toEqual([3]);
  expect(m.mover.stats().cancelled).toBe(1);
});

it("keeps retrying, with backoff, an event whose target no stream captures, and delivers it once one does", async () => {
  const m = await mover("a");
  await waitFor(() => m.mover.stats().moving, { message: "moving" });
  await schedule("uncaptured.x", 1, Date.now());
  await schedule("uncaptured.x", 2, Date.now() + 200);
  await waitFor(() => m.mover.stats().parked === 2 && m.failures.length >= 2, { message: "parked, tried again" });
  expect(m.failures[0]).toBe("no-responders");
  const before = m.failures.length;
  await sleep(3000);
  // 200 ms doubling (jittered): a handful of tries in 3 s, not a spin.
  expect(m.failures.length - before).toBeLessThanOrEqual(6);
  expect(m.mover.stats().delivered).toBe(0);
  await addStream(nats.jsm, "UNCAPTURED", ["uncaptured.>"]);
  await waitFor(async () => (await countOf(nats.jsm, "UNCAPTURED")) >= 2, { timeout: 10_000, message: "delivered once captured" });
  await sleep(500);
  expect((await readStream(nats.js, "UNCAPTURED")).map((a) => parsed(a.data).i)).toEqual([1, 2]);
  expect(m.mover.stats()).toMatchObject({ parked: 0, delivered: 2 });
  expect(m.logs.find((l) => l.msg === "a delayed event's target refused it; it waits and is tried again")).toBeDefined();
});

it("moves with one of two movers; when its host dies the other takes over within ttl + 2 s, nothing lost, nothing twice", async () => {
  await addStream(nats.jsm, "TAKEOVER", ["takeover.>"]);
  const a = await mover("host-a");
  const b = await mover("host-b");
  await waitFor(() => a.mover.stats().moving || b.mover.stats().moving, { message: "one moves" });
  await sleep(500);
  expect([a, b].filter((m) => m.mover.stats().moving)).toHaveLength(1);
  const [first, second] = a.mover.stats().moving ? [a, b] : [b, a];

  const start = Date.now();
  const N = 400;
  await Promise.all(Array.from({ length: N }, (_, i) => schedule("takeover.x", i, start + 500 + Math.floor((i * 9000) / N))));
  await sleep(3000 - (Date.now() - start));
  const died = Date.now();
  await first.nc.close(); // its host dies: no hand-over, the lease just stops being renewed
  await waitFor(async () => (await countOf(nats.jsm, "TAKEOVER")) >= N, { timeout: 20_000, message: "all delivered" });
  await sleep(1500);

  const arrived = await readStream(nats.js, "TAKEOVER");
  expect(arrived).toHaveLength(N);
  expect(new Set(arrived.map((x) => parsed(x.data).i)).size).toBe(N);
  const takeoverBy = died + TTL + 2000;
  for (const x of arrived) {
    const { i, due } = parsed(x.data);
    expect(x.at, `event ${i} early`).toBeGreaterThanOrEqual(due);
    if (due < died - 1000 || due > takeoverBy) expect(x.at - due, `event ${i}, due ${due - died} ms after the death`).toBeLessThan(1000);
    else expect(x.at, `event ${i}, due ${due - died} ms after the death`).toBeLessThanOrEqual(Math.max(takeoverBy, due + 1000));
  }
  const acquired = second.logs.find((l) => l.msg === "lease acquired");
  expect(Number(acquired?.time) - died).toBeLessThanOrEqual(TTL + 2000);
  expect(second.mover.stats().moving).toBe(true);
  expect(first.mover.stats().moving).toBe(false);
  // Each event delivered once by one of them; one the first published as its connection went
  // (its PubAck lost) the second finds there already, a duplicate: counted there, not twice.
  const delivered = second.mover.stats().delivered + first.mover.stats().delivered;
  expect(delivered).toBeLessThanOrEqual(N);
  expect(delivered + second.mover.stats().duplicates).toBeGreaterThanOrEqual(N);
});

it("drops, as a duplicate in the target, the second delivery of an event whose mover died between publishing and deleting it", async () => {
  await addStream(nats.jsm, "TWICE", ["twice.>"]);
  const created = (await ensureDelayedStream(nats.jsm)).createdMs;
  // No mover runs between the tests: this one is due, and waits.
  const id = await schedule("twice.x", 1, Date.now());
  // What the mover that died did: published it to its target, with the Nats-Msg-Id every mover derives.
  await nats.js.publish("twice.x", encoder.encode(JSON.stringify({ i: 1 })), { msgID: deliveryMsgId(created, Number(id)) });
  const m = await mover("a");
  await waitFor(() => m.mover.stats().duplicates === 1, { message: "the second publish is a duplicate" });
  expect(await countOf(nats.jsm, "TWICE")).toBe(1);
  expect(m.mover.stats().delivered).toBe(0);
  await waitFor(async () => (await listDelayed(nats.jsm, { subject: "twice.>" })).total === 0, { message: "deleted after all" });
});

it("loses nothing across a full restart: what fell due while no mover ran is delivered when one starts", async () => {
  await addStream(nats.jsm, "RESTART", ["restart.>"]);
  const a = await mover("host-a");
  await waitFor(() => a.mover.stats().moving, { message: "moving" });
  const start = Date.now();
  const N = 100;
  await Promise.all(Array.from({ length: N }, (_, i) => schedule("restart.x", i, start + 1000 + i * 20)));
  await stopMover(movers.pop()!);
  await sleep(6000 - (Date.now() - start)); // every event overdue, some by 3 s and more
  expect(await countOf(nats.jsm, "RESTART")).toBe(0);
  const restarted = Date.now();
  await mover("host-b");
  await waitFor(async () => (await countOf(nats.jsm, "RESTART")) >= N, { timeout: 10_000, message: "all delivered" });
  expect(Date.now() - restarted).toBeLessThan(3000);
  await sleep(500);
  const arrived = await readStream(nats.js, "RESTART");
  expect(new Set(arrived.map((x) => parsed(x.data).i)).size).toBe(N);
  expect(arrived).toHaveLength(N);
});

it("delivers what any producer publishes in the wire format: ISO times, a passed second, a time in a later bucket", async () => {
  await addStream(nats.jsm, "WIRE", ["wire.>"]);
  const m = await mover("a", { sweepMs: 1500 });
  await waitFor(() => m.mover.stats().moving, { message: "moving" });
  const plain = async (subject: string, deliverAt: string | undefined, i: number): Promise<void> => {
    const h = natsHeaders();
    h.set("traceparent", TRACEPARENT);
    if (deliverAt !== undefined) h.set("Jetfn-Deliver-At", deliverAt);
    await nats.js.publish(subject, encoder.encode(JSON.stringify({ i })), { headers: h });
  };
  const now = Date.now();
  const soon = bucketOf(now) + 2;
  // An ISO 8601 time with a zone.
  await plain(delayedSubject(soon, "wire.iso"), new Date(bucketStart(soon) + 300).toISOString(), 1);
  // No header: the start of its bucket.
  await plain(delayedSubject(soon, "wire.bare"), undefined, 2);
  // A producer whose clock is 20 s behind puts an event due now in a second long passed.
  await plain(delayedSubject(bucketOf(now) - 20, "wire.behind"), String(now - 20_000), 3);
  // Its time is in a later bucket than its subject's: it waits for its time.
  await plain(delayedSubject(soon, "wire.later"), String(bucketStart(soon) + 3200), 4);

  await waitFor(async () => (await countOf(nats.jsm, "WIRE")) >= 4, { timeout: 15_000, message: "all four" });
  const arrived = new Map((await readStream(nats.js, "WIRE")).map((a) => [a.subject, a]));
  expect(arrived.size).toBe(4);
  const iso = arrived.get("wire.iso")!;
  expect(iso.at - (bucketStart(soon) + 300)).toBeGreaterThanOrEqual(0);
  expect(iso.at - (bucketStart(soon) + 300)).toBeLessThan(1000);
  expect(iso.headers.traceparent).toEqual([TRACEPARENT]);
  expect(arrived.get("wire.bare")!.at - bucketStart(soon)).toBeLessThan(1000);
  expect(arrived.get("wire.behind")!.at - now).toBeLessThan(1500 + 1000); // found by the sweep
  expect(arrived.get("wire.later")!.at).toBeGreaterThanOrEqual(bucketStart(soon) + 3200);
  expect(arrived.get("wire.later")!.at - (bucketStart(soon) + 3200)).toBeLessThan(1000);
  expect(m.logs.find((l) => l.msg === "moved a delayed event to the bucket of its Jetfn-Deliver-At")).toBeDefined();
});

it("loses nothing and sends nothing twice when the broker restarts while events wait and fall due", async () => {
  await addStream(nats.jsm, "BOUNCE", ["bounce.>"]);
  const m = await mover("a");
  await waitFor(() => m.mover.stats().moving, { message: "moving" });
  const start = Date.now();
  const N = 200;
  await Promise.all(Array.from({ length: N }, (_, i) => schedule("bounce.x", i, start + 1000 + i * 20)));
  await sleep(2000 - (Date.now() - start)); // half of them delivered
  await nats.server.restart();
  await waitFor(async () => (await countOf(nats.jsm, "BOUNCE")) >= N, { timeout: 20_000, message: "all delivered" });
  await sleep(1000);
  const arrived = await readStream(nats.js, "BOUNCE");
  expect(arrived).toHaveLength(N);
  expect(new Set(arrived.map((x) => parsed(x.data).i)).size).toBe(N);
  await waitFor(() => m.mover.stats().moving, { message: "moving again" });
});

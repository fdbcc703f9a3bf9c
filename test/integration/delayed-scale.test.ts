/**
 * 30,000 delayed events in `npm test`, 100,000 in `npm run test:long` (issue 18's figure;
 * JETFN_TEST_DELAYED_EVENTS) against a real nats-server, with two movers on their own
 * connections: every event delivered exactly once although the moving one's host dies
 * mid-way, and no consumer of JETFN_DELAYED ever holds a message pending its ack.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, expect, it } from "vitest";
import { publishDelayed } from "../../runtime/nats/delayed-stream.ts";
import { addStream, countOf, delayedAckPending, readStream, startMover, stopMover, type TestMover } from "../support/delayed.ts";
import { useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
const N = Number(process.env.JETFN_TEST_DELAYED_EVENTS) || 30_000;
const TTL = 2000;
const encoder = new TextEncoder();
const movers: TestMover[] = [];
afterAll(async () => {
  await Promise.all(movers.map(stopMover));
});

it(`delivers ${N.toLocaleString("en")} delayed events exactly once, with no ack pending on the delayed stream, across the death of the moving host`, async () => {
  await addStream(nats.jsm, "SCALE", ["scale.>"]);
  movers.push(
    await startMover(nats.server.url, "host-a", { leaseTtlMs: TTL }),
    await startMover(nats.server.url, "host-b", { leaseTtlMs: TTL }),
  );
  await waitFor(() => movers.some((m) => m.mover.stats().moving), { message: "one moves" });
  const first = movers.find((m) => m.mover.stats().moving)!;
  const second = movers.find((m) => m !== first)!;

  let ackPending = 0;
  let looks = 0;
  let watching = true;
  const watch = (async () => {
    while (watching) {
      ackPending = Math.max(ackPending, await delayedAckPending(nats.jsm));
      looks++;
      await sleep(200);
    }
  })();

  // Due from 8 s after the start, 10,000 a second.
  const start = Date.now();
  for (let i = 0; i < N; i += 1000) {
    await Promise.all(
      Array.from({ length: Math.min(1000, N - i) }, (_, k) =>
        publishDelayed(nats.js, {
          target: "scale.x",
          data: encoder.encode(String(i + k)),
          deliverAt: start + 8000 + Math.floor((i + k) / 10),
        }),
      ),
    );
  }
  const published = Date.now() - start;

  await waitFor(async () => (await countOf(nats.jsm, "SCALE")) >= N / 3, { timeout: 30_000, interval: 50, message: "a third delivered" });
  await first.nc.close(); // the moving host dies mid-way
  await waitFor(async () => (await countOf(nats.jsm, "SCALE")) >= N, { timeout: 40_000, interval: 200, message: "all delivered" });
  const delivered = Date.now() - start;
  await sleep(1000);
  watching = false;
  await watch;

  const arrived = await readStream(nats.js, "SCALE");
  expect(arrived).toHaveLength(N);
  expect(new Set(arrived.map((a) => a.data)).size).toBe(N);
  expect(await countOf(nats.jsm, "JETFN_DELAYED")).toBe(0);
  expect(ackPending).toBe(0);
  expect(looks).toBeGreaterThan(20);
  expect(second.mover.stats().moving).toBe(true);
  // Published by the first but not acked to it before it died: sent again by the second, and dropped as duplicates.
  const [a, b] = [first.mover.stats(), second.mover.stats()];
  expect(a.delivered + b.delivered).toBeLessThanOrEqual(N);
  expect(a.delivered + b.delivered + b.duplicates).toBeGreaterThanOrEqual(N);
  console.log(
    `${N} delayed: published in ${published} ms, all delivered ${delivered - 8000} ms after the first was due; ` +
      `first mover ${first.mover.stats().delivered}, second ${second.mover.stats().delivered} (duplicates ${second.mover.stats().duplicates})`,
  );
});

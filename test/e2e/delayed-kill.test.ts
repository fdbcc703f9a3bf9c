/**
 * The delayed-event mover's host SIGKILLed mid-burst: two `jetfn start` processes, 20,000
 * delayed events falling due at once, the process holding the mover's lease killed once a
 * quarter of them arrived. The other takes the lease over and moves the rest: each event
 * reaches its target once, and JETFN_DELAYED ends empty.
 */
import path from "node:path";
import { Kvm } from "@nats-io/kv";
import { afterEach, expect, it } from "vitest";
import { DELAYED_STREAM } from "../../runtime/contracts/delayed.ts";
import { ensureDelayedStream, publishDelayed } from "../../runtime/nats/delayed-stream.ts";
import { killCliHosts, startCliHost } from "../support/cli.ts";
import { makeProject, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
afterEach(killCliHosts);

const EVENTS = 20_000;

it("loses nothing and delivers nothing twice when the mover's host is SIGKILLed mid-burst", async () => {
  await nats.jsm.streams.add({ name: "DK", subjects: ["dk.>"] });
  const dir = makeProject(
    { "functions.yaml": "functions:\n  - name: idle\n    handler: fns/tick.ts\n    schedule: { cron: '0 0 1 1 *' }\n" },
    { fixtures: "schedule" },
  );
  const config = path.join(dir, "functions.yaml");
  const hosts = [
    await startCliHost(config, nats.server.url, { LOG_LEVEL: "warn" }),
    await startCliHost(config, nats.server.url, { LOG_LEVEL: "warn" }),
  ];

  await ensureDelayedStream(nats.jsm);
  const due = Date.now() + 5000;
  const data = new TextEncoder().encode("{}");
  for (let i = 0; i < EVENTS; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, EVENTS - i) }, (_, j) =>
        publishDelayed(nats.js, { target: `dk.e.${i + j}`, data, deliverAt: due + ((i + j) % 1000) }),
      ),
    );
  }

  // The process holding the mover's lease: its host id names its pid.
  const kv = await new Kvm(nats.nc).open("JETFN_LEASES");
  const owner = await waitFor(async () => (await kv.get("jetfn_delayed.mover"))?.json<{ owner: string }>().owner);
  const mover = hosts.find(({ cli }) => owner.includes(`-${cli.child.pid}-`));
  expect(mover, `the lease's owner ${owner} is one of the two hosts`).toBeDefined();
  await waitFor(async () => (await nats.jsm.streams.info("DK")).state.messages >= EVENTS / 4, { timeout: 30_000, interval: 20 });
  mover!.cli.child.kill("SIGKILL");
  const killedWith = (await nats.jsm.streams.info("DK")).state.messages;

  await waitFor(async () => (await nats.jsm.streams.info(DELAYED_STREAM)).state.messages === 0, {
    timeout: 60_000,
    interval: 250,
    message: "JETFN_DELAYED emptied by the other host",
  });
  const target = await nats.jsm.streams.info("DK", { subjects_filter: "dk.>" });
  expect(killedWith).toBeLessThan(EVENTS);
  // One message per event: every subject once, none missing (the target's duplicate window
  // dropped what the killed mover had published but not yet deleted).
  expect(target.state.messages).toBe(EVENTS);
  expect(Object.keys(target.state.subjects ?? {})).toHaveLength(EVENTS);
  expect(Object.values(target.state.subjects ?? {}).every((count) => count === 1)).toBe(true);
});

/**
 * Durable steps across a SIGKILLed host (`jetfn start` processes): events that sat between
 * their steps and their acks replay their steps on the next host, each side effect once
 * (counted in an effect log, not by jetfn); a step killed mid-run is taken over by the next
 * host only after its lease, its event handed back meanwhile without spending attempts.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { killCliHosts, startCliHost } from "../support/cli.ts";
import { makeProject, scrape, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();

afterEach(killCliHosts);

it("replays every step recorded before the kill, and runs each side effect once", async () => {
  const effects = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-steps-kill-")), "effects.log");
  const yaml = `
streams:
  - { name: PACK, subjects: ["pack.>"], storage: file }
functions:
  - name: pack
    handler: fns/pack.ts
    stream: PACK
    subjects: [pack.orders]
    concurrency: 20
    timeout: 20s
    ackWait: 1s
    config: { effects: ${JSON.stringify(effects)}, lingerMs: 30000 }
`;
  const dir = makeProject({ "functions.yaml": yaml }, { fixtures: "steps" });
  const config = path.join(dir, "functions.yaml");
  const lines = () => (existsSync(effects) ? readFileSync(effects, "utf8").split("\n").filter(Boolean) : []);
  const orders = Array.from({ length: 10 }, (_, i) => `o-${i}`);

  const first = await startCliHost(config, nats.server.url);
  for (const order of orders) await nats.js.publish("pack.orders", JSON.stringify({ order }));
  // Every step ran and was recorded; every handler now lingers, unacked.
  await waitFor(() => lines().length === orders.length, { message: "every step ran once" });
  await waitFor(async () => (await scrape(first.base, 'jetfn_steps_total{function="pack",result="ran"}')) === orders.length);
  first.cli.child.kill("SIGKILL");
  await first.cli.exited;

  // The next host (its handlers no longer linger) gets them again after the ack wait: the steps replay.
  const quick = path.join(dir, "functions.quick.yaml");
  writeFileSync(quick, yaml.replace("lingerMs: 30000", "lingerMs: 0"));
  const second = await startCliHost(quick, nats.server.url);
  // At least once each: with a 1 s ack wait, a busy machine may deliver one again meanwhile.
  await waitFor(async () => (await scrape(second.base, 'jetfn_steps_total{function="pack",result="replayed"}')) >= orders.length, {
    timeout: 20_000,
    message: "every step replayed on the second host",
  });
  await waitFor(
    async () => {
      const info = await nats.jsm.consumers.info("PACK", "jetfn_pack");
      return info.num_pending === 0 && info.num_ack_pending === 0;
    },
    { message: "every event acked" },
  );
  expect(lines().sort()).toEqual(orders.map((order) => `pack pack ${order}`).sort());
});

it("a step whose host died while running it is taken over only after its lease, never earlier", async () => {
  const effects = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-steps-lease-")), "effects.log");
  // timeout 2s: a claim's lease is 7 s (the timeout and 5 s).
  const yaml = `
streams:
  - { name: STALL, subjects: ["stall.>"], storage: file }
functions:
  - name: stall
    handler: fns/stall.ts
    stream: STALL
    subjects: [stall.orders]
    timeout: 2s
    ackWait: 1s
    config: { effects: ${JSON.stringify(effects)}, stepMs: 60000 }
`;
  const dir = makeProject({ "functions.yaml": yaml }, { fixtures: "steps" });
  const starts = () =>
    (existsSync(effects) ? readFileSync(effects, "utf8").split("\n").filter(Boolean) : []).map((line) => Number(line.split(" ").pop()));

  const first = await startCliHost(path.join(dir, "functions.yaml"), nats.server.url);
  await nats.js.publish("stall.orders", JSON.stringify({ order: "o-1" }));
  await waitFor(() => starts().length === 1, { message: "the step started" });
  first.cli.child.kill("SIGKILL");
  await first.cli.exited;
  const killedAt = Date.now();

  const quick = path.join(dir, "functions.quick.yaml");
  writeFileSync(quick, yaml.replace("stepMs: 60000", "stepMs: 0"));
  const second = await startCliHost(quick, nats.server.url);
  await waitFor(() => starts().length === 2, { timeout: 20_000, message: "the step taken over" });
  // Not before the second host had seen the claim unchanged for the whole lease.
  expect(starts()[1]! - killedAt).toBeGreaterThanOrEqual(7_000);
  expect(await scrape(second.base, 'jetfn_steps_total{function="stall",result="busy"}')).toBeGreaterThanOrEqual(1);
  await waitFor(async () => (await nats.jsm.consumers.info("STALL", "jetfn_stall")).num_ack_pending === 0, { message: "acked" });
  // Handed back while busy without spending attempts: it was not dead-lettered.
  expect(await scrape(second.base, 'jetfn_dead_letters_total{function="stall",reason="attempts-exhausted"}')).toBe(0);
});

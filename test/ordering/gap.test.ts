/**
 * A delivery lost on its way to a partition's owner (the server counts it delivered; the
 * host never sees it: a pull ended by a reconnect or a stall) must not let the events
 * behind it run first. Here the loss is made on purpose: while the function is paused,
 * another client takes the partition durable's next delivery and never settles it, so the
 * host's next delivery comes with a gap in the consumer's delivery sequence. With an ack
 * wait of 30 s, the taken event would come back only after the ones behind it had run.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { openControlBucket, writePause } from "../../runtime/nats/control.ts";
import { type LogCapture, makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host;
let logs: LogCapture;

beforeAll(async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: GAP, subjects: ["gap.>"], storage: memory }
  - { name: REC_GAP, subjects: ["rec.gap"], storage: memory }
functions:
  - name: apply-ledger
    handler: fns/ledger.ts
    stream: GAP
    subjects: ["gap.entries"]
    timeout: 25s
    ordering: { key: account, partitions: 1, leaseTtl: 2s }
    config: { record: rec.gap }
`,
    },
    { fixtures: "ordering" },
  );
  ({ host, logs } = await startHost(dir, nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

async function recorded(): Promise<number[]> {
  const info = await nats.jsm.streams.info("REC_GAP");
  const order: number[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const message = await nats.jsm.streams.getMessage("REC_GAP", { seq });
    if (message) order.push(message.json<{ i: number }>().i);
  }
  return order;
}

async function pause(paused: boolean): Promise<void> {
  const kv = await openControlBucket(nats.nc);
  await writePause(kv, "apply-ledger", { paused, at: new Date().toISOString(), by: "gap.test" });
  await waitFor(() => host.functions()[0]?.paused === paused);
}

it("rewinds the partition's consumer on a gap in its deliveries, so the key's events still run in order", async () => {
  const publish = (i: number) => nats.js.publish("gap.entries", JSON.stringify({ account: "acct-1", i }));
  await publish(0);
  await waitFor(async () => (await recorded()).length === 1);

  await pause(true);
  for (let i = 1; i <= 3; i++) await publish(i);
  // Entry 1 goes to another client, which never settles it: lost, as far as the host knows.
  const taken = await (await nats.js.consumers.get("GAP", "jetfn_apply_ledger_p0")).next({ expires: 2000 });
  expect(taken?.json<{ i: number }>().i).toBe(1);
  await pause(false);

  await waitFor(async () => (await recorded()).length >= 4, { timeout: 20_000, message: "entries 1 to 3 ran" });
  expect(await recorded()).toEqual([0, 1, 2, 3]);
  expect(logs.find((line) => String(line.msg).startsWith("a delivery went missing in transit"))).toBeDefined();
});

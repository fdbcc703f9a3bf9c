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
    retry: { maxAttempts: 5, backoff: fixed, initialDelay: 5s, jitter: false }
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

interface Run {
  key: string;
  i: number;
  ok: boolean;
}

/** The indexes of `key`'s successful runs, in the order they ran. */
async function recorded(key = "acct-1"): Promise<number[]> {
  const info = await nats.jsm.streams.info("REC_GAP");
  const order: number[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const run = (await nats.jsm.streams.getMessage("REC_GAP", { seq }))?.json<Run>();
    if (run?.key === key && run.ok) order.push(run.i);
  }
  return order;
}

/** Whether `key`'s entry `i` has failed once. */
async function failed(key: string, i: number): Promise<boolean> {
  const info = await nats.jsm.streams.info("REC_GAP");
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const run = (await nats.jsm.streams.getMessage("REC_GAP", { seq }))?.json<Run>();
    if (run?.key === key && run.i === i && !run.ok) return true;
  }
  return false;
}

async function pause(paused: boolean): Promise<void> {
  const kv = await openControlBucket(nats.nc);
  await writePause(kv, "apply-ledger", { paused, at: new Date().toISOString(), by: "gap.test" });
  await waitFor(() => host.functions()[0]?.paused === paused);
  // A pull the host had open when it paused stays on the server until it expires (2 s),
  // and would take the next event: the test's own client must be the only one waiting.
  if (paused) await waitFor(async () => (await nats.jsm.consumers.info("GAP", "jetfn_apply_ledger_p0")).num_waiting === 0);
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

it("does not wait on events held behind a key's retry before it rewinds: they are let go and come again", async () => {
  // Entry 0 fails once and waits 5 s for its retry; entry 1 waits behind it, in its lane.
  const publish = (i: number, failTimes = 0) => nats.js.publish("gap.entries", JSON.stringify({ account: "acct-2", i, failTimes }));
  await publish(0, 1);
  await publish(1);
  await waitFor(() => failed("acct-2", 0));

  // Before the retry is due, another client takes entry 2's delivery: the retry's
  // redelivery comes with a gap. The rewind must not wait for entry 1, which can only run
  // after the retry the loop would then never pull.
  await pause(true);
  await publish(2);
  const taken = await (await nats.js.consumers.get("GAP", "jetfn_apply_ledger_p0")).next({ expires: 2000 });
  expect(taken?.json<{ i: number }>().i).toBe(2);
  await pause(false);

  await waitFor(async () => (await recorded("acct-2")).length >= 3, { timeout: 30_000, message: "entries 0 to 2 of acct-2 ran" });
  expect(await recorded("acct-2")).toEqual([0, 1, 2]);
});

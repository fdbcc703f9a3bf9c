/**
 * Delayed events through a host: a handler's `ctx.publish(subject, data, { delay | at })`
 * waits in JETFN_DELAYED (never in a consumer) and reaches its target on time, once, with
 * its headers (the trace context among them); a bad delay fails the handler's call.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { listDelayed, publishDelayed } from "../../runtime/nats/delayed-stream.ts";
import { makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host;
let baseUrl: string;

interface Record_ {
  kind: "scheduled" | "reminded";
  id: string;
  ack?: { stream: string; id?: string };
  scheduledAt?: number;
  at?: number;
  traceparent?: string | null;
  order?: string | null;
}

beforeAll(async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: DLH, subjects: ["dlh.>"], storage: memory }
  - { name: REC_DLH, subjects: ["rec.dlh"], storage: memory }
functions:
  - name: remind
    handler: fns/remind.ts
    stream: DLH
    subjects: ["dlh.in"]
    retry: { maxAttempts: 1 }
    config: { record: rec.dlh }
  - name: reminded
    handler: fns/reminded.ts
    stream: DLH
    subjects: ["dlh.reminder"]
    config: { record: rec.dlh }
`,
    },
    { fixtures: "delayed-host" },
  );
  ({ host, baseUrl } = await startHost(dir, nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

async function records(): Promise<Record_[]> {
  const info = await nats.jsm.streams.info("REC_DLH");
  const found: Record_[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage("REC_DLH", { seq });
    if (message) found.push(message.json<Record_>());
  }
  return found;
}

it("delivers a handler's delayed publish once, on time, with its trace context, waiting in no consumer meanwhile", async () => {
  await nats.js.publish("dlh.in", JSON.stringify({ id: "a", delayMs: 2000 }));
  const scheduledA = await waitFor(async () => (await records()).find((r) => r.kind === "scheduled"));
  expect(scheduledA.ack).toMatchObject({ stream: "JETFN_DELAYED", id: expect.stringMatching(/^\d+$/) });
  // While it waits: in JETFN_DELAYED, and no consumer holds it.
  expect((await nats.jsm.streams.info("JETFN_DELAYED")).state.messages).toBe(1);
  const reminders = await nats.jsm.consumers.info("DLH", "jetfn_reminded");
  expect(reminders.num_ack_pending + reminders.num_pending).toBe(0);
  await nats.js.publish("dlh.in", JSON.stringify({ id: "past", at: "2000-01-01T00:00:00Z" }));
  const done = await waitFor(
    async () => {
      const found = (await records()).filter((r) => r.kind === "reminded");
      return found.length >= 2 ? found : undefined;
    },
    { timeout: 10_000, interval: 100 },
  );
  const a = done.find((r) => r.id === "a")!;
  // Due 2 s after it was scheduled; arrived within a second of that.
  expect(a.at! - a.scheduledAt!).toBeGreaterThanOrEqual(1900);
  expect(a.at! - a.scheduledAt!).toBeLessThan(2000 + 1500);
  expect(a).toMatchObject({ traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", order: "a" });
  // An `at` in the past: at once.
  const past = done.find((r) => r.id === "past")!;
  expect(past.at! - past.scheduledAt!).toBeLessThan(1500);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  expect((await records()).filter((r) => r.kind === "reminded")).toHaveLength(2);
  expect(await scrape(baseUrl, "jetfn_delayed_lateness_seconds_count")).toBeGreaterThanOrEqual(2);
  // Read from the stream once a second: empty once both were moved.
  await waitFor(async () => (await scrape(baseUrl, "jetfn_delayed_events")) === 0, { timeout: 5000, interval: 100 });
});

it("fails the handler's call for a delay that is negative or over a year", async () => {
  await nats.js.publish("dlh.in", JSON.stringify({ id: "bad", delayMs: -5 }));
  const letter = await waitFor(() => nats.jsm.streams.getMessage("JETFN_DLQ", { last_by_subj: "jetfn.dlq.remind" }));
  expect(letter.header.get("Jetfn-Error")).toMatch(/delay must not be negative/);
});

it("counts a due event its target refuses (no stream captures it), keeps it, and delivers it once a stream does", async () => {
  const id = await publishDelayed(nats.js, { target: "dlh-late.x", data: new TextEncoder().encode("{}"), deliverAt: Date.now() });
  await waitFor(async () => (await scrape(baseUrl, 'jetfn_delayed_failures_total{reason="no-responders"}')) > 0, {
    timeout: 10_000,
    interval: 100,
  });
  expect((await listDelayed(nats.jsm)).events.map((event) => event.id)).toContain(id);
  await nats.jsm.streams.add({ name: "DLH_LATE", subjects: ["dlh-late.>"] });
  await waitFor(() => nats.jsm.streams.getMessage("DLH_LATE", { last_by_subj: "dlh-late.x" }), { timeout: 15_000, interval: 200 });
});

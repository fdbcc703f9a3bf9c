/**
 * The poison guard, in both isolation modes: a delivery that arrives with its attempts
 * already used up (earlier hosts died while running it) is dead-lettered without running.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host | undefined;

afterAll(async () => {
  await host?.shutdown();
});

let dir: string;

beforeAll(() => {
  dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: PSN, subjects: ["psn.>"], storage: memory }
  - { name: CALLS, subjects: ["calls.>"], storage: memory }
functions:
  - { name: guarded, handler: fns/ok.ts, stream: PSN, subjects: [psn.in], ackWait: 1s, retry: { maxAttempts: 2 } }
`,
    },
    { fixtures: "outcomes" },
  );
});

it("dead-letters a delivery whose count is past maxAttempts without running it", async () => {
  // A first host creates the consumer; then the event is delivered three times to a
  // "host" that dies each time (here: the test, which takes it and never settles it).
  const first = await startHost(dir, nats.server.url);
  await first.host.shutdown();
  const { seq } = await nats.js.publish("psn.in", JSON.stringify({ n: 1 }));
  const consumer = await nats.js.consumers.get("PSN", "jetfn_guarded");
  for (let delivery = 1; delivery <= 3; delivery++) {
    const msg = await waitFor(async () => consumer.next({ expires: 2000 }), { message: `delivery ${delivery}` });
    expect(msg.info.deliveryCount).toBe(delivery);
    // No ack: the ack wait (1 s) runs out, as when a host dies mid-invocation.
  }
  let baseUrl: string;
  ({ host, baseUrl } = await startHost(dir, nats.server.url));
  const letter = await waitFor(() => nats.jsm.streams.getMessage("JETFN_DLQ", { last_by_subj: "jetfn.dlq.guarded" }), {
    message: "the dead letter",
  });
  expect(letter.header.get("Jetfn-Reason")).toBe("attempts-exhausted");
  expect(letter.header.get("Jetfn-Stream-Seq")).toBe(String(seq));
  expect(letter.header.get("Jetfn-Deliveries")).toBe("4");
  expect(letter.header.get("Jetfn-Error")).toMatch(/^not run: attempt 4 is past retry.maxAttempts \(2\)/);
  expect(await scrape(baseUrl, 'jetfn_dead_letters_total{function="guarded",reason="attempts-exhausted"}')).toBe(1);
  // Never invoked: no outcome counted, and the handler recorded no call.
  for (const outcome of ["success", "error", "timeout", "invalid", "crashed"]) {
    expect(await scrape(baseUrl, `jetfn_invocations_total{function="guarded",outcome="${outcome}"}`)).toBe(0);
  }
  expect((await nats.jsm.streams.info("CALLS")).state.messages).toBe(0);
});

/**
 * Circuit breakers against a real nats-server: during a dependency outage the function
 * breaker stops pulling and a named breaker fails fast, and no message is dead-lettered
 * because of the outage. Each test prints its figures.
 */
import type { Msg, Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { type Call, DEPENDENCY_SUBJECT, type DependencyReply } from "../fixtures/breaker/dependency.ts";
import { type LogCapture, makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

/**
 * The simulated dependency the handlers in test/fixtures/breaker/ call: this file answers
 * their requests on DEPENDENCY_SUBJECT, and collects what they publish to calls.<function>.
 */
const dep = {
  down: false,
  deliveries: new Map<string, { id: number; at: number }[]>(),
  processed: new Map<string, Set<number>>(),
};

function noted(fn: string, { kind, id, at }: Call): void {
  if (kind === "delivered") {
    const seen = dep.deliveries.get(fn) ?? [];
    seen.push({ id, at });
    dep.deliveries.set(fn, seen);
  } else {
    let ids = dep.processed.get(fn);
    if (!ids) dep.processed.set(fn, (ids = new Set()));
    ids.add(id);
  }
}

let host: Host;
let baseUrl: string;
let logs: LogCapture;
let subscriptions: Subscription[] = [];

const nats = useNats();

beforeAll(async () => {
  subscriptions = [
    nats.nc.subscribe(DEPENDENCY_SUBJECT, {
      callback: (_err: Error | null, msg: Msg) => {
        msg.respond(JSON.stringify({ up: !dep.down } satisfies DependencyReply));
      },
    }),
    nats.nc.subscribe("calls.>", {
      callback: (_err: Error | null, msg: Msg) => noted(msg.subject.slice("calls.".length), msg.json<Call>()),
    }),
  ];
  const dir = makeProject(
    {
      "functions.yaml": `
defaults:
  config: { natsUrl: ${JSON.stringify(nats.server.url)} }
streams:
  - { name: BRK, subjects: ["brk.>"], storage: memory }
  - { name: BRKCALLS, subjects: ["calls.>"], storage: memory }
functions:
  - name: guarded
    handler: guarded.ts
    stream: BRK
    subjects: [brk.guarded]
    concurrency: 1
    retry: { maxAttempts: 2, initialDelay: 100ms, jitter: false }
    breaker: { failureThreshold: 3, openFor: 1s, halfOpenRequests: 1 }
  - name: named
    handler: named.ts
    stream: BRK
    subjects: [brk.named]
    concurrency: 1
    retry: { maxAttempts: 3, initialDelay: 100ms, jitter: false }
`,
    },
    { fixtures: "breaker" },
  );
  ({ host, baseUrl, logs } = await startHost(dir, nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
  for (const subscription of subscriptions) subscription.unsubscribe();
});

const metric = (series: string) => scrape(baseUrl, series);

function figures(fn: string, published: number) {
  const deliveries = dep.deliveries.get(fn) ?? [];
  const perMessage = new Map<number, number>();
  for (const { id } of deliveries) perMessage.set(id, (perMessage.get(id) ?? 0) + 1);
  return {
    published,
    processed: dep.processed.get(fn)?.size ?? 0,
    deliveries: deliveries.length,
    maxDeliveriesPerMessage: Math.max(0, ...perMessage.values()),
    messagesDeliveredMoreThanTwice: [...perMessage.values()].filter((count) => count > 2).length,
  };
}

async function outage(fn: string, subject: string, published: number, whileOpen: () => Promise<void>) {
  dep.down = true;
  for (let id = 1; id <= published; id++) await nats.js.publish(subject, JSON.stringify({ id }));
  try {
    await whileOpen();
  } finally {
    dep.down = false;
  }
  await waitFor(() => (dep.processed.get(fn)?.size ?? 0) === published, { timeout: 20_000, message: `${fn} processed everything` });
  await waitFor(async () => {
    const info = await nats.jsm.consumers.info("BRK", `jetfn_${fn}`);
    return info.num_pending === 0 && info.num_ack_pending === 0;
  });
}

describe("breakers during a dependency outage", () => {
  it("function breaker: stops pulling while open, dead-letters nothing, recovers", async () => {
    const published = 20;
    let open: [number, number] | undefined;
    await outage("guarded", "brk.guarded", published, async () => {
      // Between opening and its first probe (openFor later), nothing may be pulled.
      const transitions = () => logs.lines.filter((l) => l.function === "guarded" && l.breaker === "function");
      const opened = await waitFor(() => transitions().find((l) => l.to === "open"), { message: "breaker open" });
      const probing = await waitFor(() => transitions().find((l) => l.to === "half-open"), { message: "half-open after openFor" });
      const [from, to] = [Number(opened.time), Number(probing.time)]; // pino's epoch ms
      expect(to - from).toBeGreaterThanOrEqual(990);
      open = [from, to];
    });
    // Counted once every delivery's report has arrived.
    const [from, to] = open!;
    const deliveriesWhileOpen = dep.deliveries.get("guarded")!.filter((d) => d.at > from && d.at < to).length;
    const result = {
      ...figures("guarded", published),
      deadLettered: await metric('jetfn_dead_letters_total{function="guarded",reason="attempts-exhausted"}'),
    };
    console.log("function breaker outage:", JSON.stringify({ ...result, deliveriesWhileOpen }));
    expect(result.processed).toBe(published);
    expect(result.deadLettered).toBe(0);
    expect(deliveriesWhileOpen).toBe(0);
    expect(result.deliveries).toBeLessThan(published + 10);
    expect(await metric('jetfn_breaker_state{function="guarded",breaker="function"}')).toBe(0);
  });

  it("named breaker: fails fast with BreakerOpenError, which never uses up attempts", async () => {
    const published = 10;
    await outage("named", "brk.named", published, async () => {
      await waitFor(async () => (await metric('jetfn_breaker_state{function="named",breaker="dep"}')) === 2, {
        message: "named breaker open",
      });
      // Every message is delivered at least maxAttempts times while the breaker refuses it.
      await waitFor(() => figures("named", published).maxDeliveriesPerMessage >= 4, { timeout: 10_000 });
      const fns = (await (await fetch(`${baseUrl}/functions`)).json()) as { name: string; breakers: Record<string, string> }[];
      expect(fns.find((f) => f.name === "named")?.breakers.dep).toMatch(/open/);
    });
    const result = {
      ...figures("named", published),
      deadLettered: await metric('jetfn_dead_letters_total{function="named",reason="attempts-exhausted"}'),
    };
    console.log("named breaker outage:", JSON.stringify(result));
    expect(result.processed).toBe(published);
    expect(result.deadLettered).toBe(0);
    await waitFor(async () => (await metric('jetfn_breaker_state{function="named",breaker="dep"}')) === 0);
  });
});

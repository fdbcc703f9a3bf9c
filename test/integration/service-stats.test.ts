/**
 * `$SRV.STATS.jetfn`, as every NATS tool (and the console) reads it: each error reply of an
 * endpoint counts in its `num_errors`, and its `last_error` says what the last one was. The
 * services API counts only handlers that throw synchronously; ours answer later.
 */
import { type ServiceStats, Svcm } from "@nats-io/services";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";

const nats = useNats();
let host: Host | undefined;

beforeAll(async () => {
  const yaml = `
streams:
  - { name: STATS, subjects: ["stats.>"], storage: memory }
functions:
  - { name: quote, handler: quote.ts, stream: STATS, subjects: [stats.quote], invoke: true }
  - { name: decline, handler: decline.ts, stream: STATS, subjects: [stats.decline], invoke: true }
`;
  ({ host } = await startHost(makeProject({ "functions.yaml": yaml }, { fixtures: "invoke-service" }), nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

async function code(fn: string, body: unknown): Promise<number> {
  const reply = await nats.nc.request(`jetfn.invoke.${fn}`, JSON.stringify(body), { timeout: 10_000 });
  return Number(reply.headers?.get("Nats-Service-Error-Code") || 200);
}

async function stats(): Promise<ServiceStats> {
  const replies = await new Svcm(nats.nc).client({ strategy: "timer", maxWait: 500 }).stats("jetfn");
  const all: ServiceStats[] = [];
  for await (const s of replies) all.push(s);
  expect(all).toHaveLength(1);
  return all[0]!;
}

it("counts every error reply in its endpoint's num_errors, with the last error", async () => {
  expect(await code("quote", { qty: 2 })).toBe(200);
  expect(await code("quote", { qty: -1 })).toBe(400);
  expect(await code("quote", { qty: "x" })).toBe(400);
  expect(await code("decline", {})).toBe(422);

  const byName = new Map(((await stats()).endpoints ?? []).map((e) => [e.name, e]));
  expect(byName.get("quote")).toMatchObject({ num_requests: 3, num_errors: 2 });
  expect(byName.get("quote")!.last_error).toMatch(/^400 /);
  expect(byName.get("decline")).toMatchObject({ num_requests: 1, num_errors: 1 });
  expect(byName.get("decline")!.last_error).toContain("card declined");
  expect(byName.get("_status")).toMatchObject({ num_errors: 0 });

  // Asking again counts nothing twice.
  expect(((await stats()).endpoints ?? []).find((e) => e.name === "quote")).toMatchObject({ num_errors: 2 });
  expect(await code("quote", { qty: 1 })).toBe(200);
  expect(((await stats()).endpoints ?? []).find((e) => e.name === "quote")).toMatchObject({ num_requests: 4, num_errors: 2 });
});

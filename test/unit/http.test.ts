import { Registry } from "prom-client";
import { afterEach, expect, it } from "vitest";
import { HttpServer } from "../../runtime/http/server.ts";

let server: HttpServer | undefined;
afterEach(async () => {
  await server?.close();
});

async function start(ready: boolean, stuckLoopMs = 5000): Promise<string> {
  const registry = new Registry();
  server = new HttpServer({ registry, ready: () => ready, functions: () => [{ name: "f" }] }, { stuckLoopMs });
  const address = await server.listen("127.0.0.1", 0);
  return `http://127.0.0.1:${address.port}`;
}

it("serves /readyz from the host's readiness, /functions as JSON, and 404/405 otherwise", async () => {
  const base = await start(false);
  expect((await fetch(`${base}/readyz`)).status).toBe(503);
  const functions = await fetch(`${base}/functions`);
  expect(functions.headers.get("content-type")).toBe("application/json");
  expect(await functions.json()).toEqual([{ name: "f" }]);
  expect((await fetch(`${base}/metrics`)).headers.get("content-type")).toContain("text/plain");
  expect((await fetch(`${base}/nope`)).status).toBe(404);
  expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(405);
});

it("answers /healthz 503 after the event loop stalled past the bound", async () => {
  const base = await start(true, 100);
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
  const until = Date.now() + 300;
  while (Date.now() < until) {
    // a handler hogging the event loop
  }
  await new Promise((resolve) => setTimeout(resolve, 120)); // the watch measures on its next tick
  const stuck = await fetch(`${base}/healthz`);
  expect(stuck.status).toBe(503);
  expect(await stuck.text()).toMatch(/^event loop stalled for \d+ms/);
});

it("stays ready while functions wait for the broker, and says which in the /readyz body", async () => {
  const registry = new Registry();
  let notes: string[] = [];
  server = new HttpServer({ registry, ready: () => true, readyNotes: () => notes, functions: () => [] });
  const base = `http://127.0.0.1:${(await server.listen("127.0.0.1", 0)).port}`;
  expect(await (await fetch(`${base}/readyz`)).text()).toBe("ready\n");
  notes = ["shout: waiting for the broker (storage-full) since 2030-01-01T00:00:00.000Z, 2 waiting; not pulling"];
  const held = await fetch(`${base}/readyz`);
  expect(held.status).toBe(200);
  expect(await held.text()).toBe(`ready\n${notes[0]}\n`);
});

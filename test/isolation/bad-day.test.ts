/**
 * Handler code cannot stop the host (isolation: worker): a spinning handler, one that runs
 * out of memory and one that calls process.exit(), next to a healthy function in the same
 * host; a bystander on a terminated thread; values that cannot cross between threads.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { JsMsg } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import type { Mode } from "../fixtures/isolation/bad.ts";
import { type LogCapture, makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host;
let logs: LogCapture;
let baseUrl: string;

beforeAll(async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
defaults:
  isolation: worker
  retry: { maxAttempts: 2, initialDelay: 100ms, maxDelay: 200ms, jitter: false }
streams:
  - { name: ISO, subjects: ["iso.>"], storage: memory }
functions:
  - { name: healthy, handler: healthy.ts, stream: ISO, subjects: [iso.healthy], concurrency: 16 }
  - { name: spin, handler: bad.ts, stream: ISO, subjects: [iso.spin], output: iso.done.spin, timeout: 1s }
  - { name: oom, handler: bad.ts, stream: ISO, subjects: [iso.oom], output: iso.done.oom, timeout: 20s, memoryLimit: 64MB }
  - { name: exit, handler: bad.ts, stream: ISO, subjects: [iso.exit], output: iso.done.exit }
  - { name: bad, handler: bad.ts, stream: ISO, subjects: [iso.bad], output: iso.done.bad }
  - name: shared
    handler: bad.ts
    stream: ISO
    subjects: [iso.shared]
    output: iso.done.shared
    timeout: 3s
    concurrency: 2
    retry: { maxAttempts: 1 }
  - { name: odd, handler: odd.ts, stream: ISO, subjects: [iso.odd], output: iso.done.odd, retry: { maxAttempts: 1 } }
`,
    },
    { fixtures: "isolation" },
  );
  ({ host, logs, baseUrl } = await startHost(dir, nats.server.url, {}, { isolation: { graceMs: 500 } }));
});

afterAll(async () => {
  await host?.shutdown();
});

const metric = (series: string): Promise<number> => scrape(baseUrl, series);

interface Letter {
  readonly body: Record<string, unknown>;
  readonly reason: string;
  readonly error: string;
}

/** Every message of `stream` on `subject`, oldest first, read with an ordered consumer. */
async function read(stream: string, subject: string): Promise<JsMsg[]> {
  const consumer = await nats.js.consumers.get(stream, { filter_subjects: subject });
  const pending = (await consumer.info()).num_pending;
  const found: JsMsg[] = [];
  if (pending === 0) return found;
  for await (const msg of await consumer.fetch({ max_messages: pending, expires: 2000 })) {
    found.push(msg);
    if (found.length === pending) break;
  }
  return found;
}

/** A function's dead letters: body, reason and error of each. */
async function deadLetters(fn: string): Promise<Letter[]> {
  return (await read("JETFN_DLQ", `jetfn.dlq.${fn}`)).map((msg) => ({
    body: msg.json<Record<string, unknown>>(),
    reason: msg.headers?.get("Jetfn-Reason") ?? "",
    error: msg.headers?.get("Jetfn-Error") ?? "",
  }));
}

/** Outputs published by `fn` (subject iso.done.<fn>). */
async function outputs(fn: string): Promise<Record<string, unknown>[]> {
  return (await read("ISO", `iso.done.${fn}`)).map((msg) => msg.json<Record<string, unknown>>());
}

async function publishHealthy(count: number): Promise<void> {
  await Promise.all(Array.from({ length: count }, (_, n) => nats.js.publish("iso.healthy", JSON.stringify({ n }))));
}

const succeeded = (fn: string): Promise<number> => metric(`jetfn_invocations_total{function="${fn}",outcome="success"}`);

describe("isolation: worker", () => {
  it("a spinning, an out-of-memory and an exiting handler end their thread, never the host", async () => {
    // The healthy function alone first: its throughput with nothing else going on.
    let started = performance.now();
    await publishHealthy(300);
    await waitFor(async () => (await succeeded("healthy")) === 300, { message: "300 healthy events, alone" });
    const aloneMs = performance.now() - started;

    const probes: number[] = [];
    let probing = true;
    const prober = (async () => {
      while (probing) {
        probes.push((await fetch(`${baseUrl}/healthz`)).status);
        await sleep(100);
      }
    })();
    const bad = ["spin", "oom", "exit"] as const satisfies Mode[];
    for (const mode of bad) await nats.js.publish(`iso.${mode}`, JSON.stringify({ mode }));
    started = performance.now();
    await publishHealthy(300);
    await waitFor(async () => (await succeeded("healthy")) === 600, { message: "300 healthy events next to the bad ones" });
    const besideBadMs = performance.now() - started;
    const letters = await waitFor(
      async () => {
        const found = (await Promise.all(bad.map((fn) => deadLetters(fn)))).flat();
        return found.length === 3 ? found : undefined;
      },
      { timeout: 30_000, message: "the three bad events dead-lettered" },
    );
    probing = false;
    await prober;

    const byMode = Object.fromEntries(letters.map((letter) => [letter.body.mode, letter]));
    // The dead letter is written when the timeout fires; the thread is terminated a grace later.
    await waitFor(async () => (await metric('jetfn_worker_restarts_total{function="spin",reason="timeout"}')) === 2);
    const restarts = {
      spin: await metric('jetfn_worker_restarts_total{function="spin",reason="timeout"}'),
      oom: await metric('jetfn_worker_restarts_total{function="oom",reason="out-of-memory"}'),
      exit: await metric('jetfn_worker_restarts_total{function="exit",reason="exit"}'),
    };
    console.log(
      "bad day, isolation: worker:",
      JSON.stringify({
        healthyAloneMs: Math.round(aloneMs),
        healthyBesideBadMs: Math.round(besideBadMs),
        throughputRatio: Number((aloneMs / besideBadMs).toFixed(2)),
        healthzProbes: probes.length,
        healthzNot200: probes.filter((status) => status !== 200).length,
        deadLetters: letters.map((l) => ({ mode: l.body.mode, reason: l.reason, error: l.error })),
        restarts,
      }),
    );

    expect(besideBadMs).toBeLessThan(10_000);
    expect(aloneMs / besideBadMs).toBeGreaterThanOrEqual(0.5);
    expect(probes.length).toBeGreaterThan(10);
    expect(probes.every((status) => status === 200)).toBe(true);
    // A timeout on the last attempt is dead-lettered as attempts-exhausted (DESIGN.md's reasons); the error says it timed out.
    expect(byMode.spin).toMatchObject({ reason: "attempts-exhausted", error: "timed out after 1000ms" });
    expect(byMode.oom).toMatchObject({ reason: "crashed", error: "its worker thread ran out of memory (memoryLimit 64MB)" });
    expect(byMode.exit).toMatchObject({ reason: "crashed", error: "handler code ended its worker thread with process.exit(3)" });
    expect(restarts).toEqual({ spin: 2, oom: 2, exit: 2 });
    for (const fn of ["oom", "exit"]) {
      expect(await metric(`jetfn_invocations_total{function="${fn}",outcome="crashed"}`)).toBe(2);
      expect(await metric(`jetfn_dead_letters_total{function="${fn}",reason="crashed"}`)).toBe(1);
    }
    // The retry went to a fresh thread, not to the one about to be terminated: no bystander.
    expect(await metric('jetfn_invocations_total{function="spin",outcome="timeout"}')).toBe(2);
    expect(await metric('jetfn_invocations_total{function="spin",outcome="crashed"}')).toBe(0);
    expect(host.state).toBe("running");

    // The same functions then serve good events normally, on fresh threads.
    for (const fn of bad) await nats.js.publish(`iso.${fn}`, JSON.stringify({ mode: "ok" }));
    for (const fn of bad) {
      await waitFor(async () => (await outputs(fn)).some((out) => out.mode === "ok"), {
        message: `a good event for ${fn} after the bad one`,
      });
    }
  });

  it("an uncaught exception and an unhandled rejection in handler code end only their thread: crashed", async () => {
    // One after the other: a crash takes down whatever else runs on its thread.
    const byMode: Record<string, Letter | undefined> = {};
    for (const mode of ["uncaught", "reject"] satisfies Mode[]) {
      await nats.js.publish("iso.bad", JSON.stringify({ mode }));
      byMode[mode] = await waitFor(async () => (await deadLetters("bad")).find((l) => l.body.mode === mode), { timeout: 20_000 });
    }
    expect(byMode.uncaught?.reason).toBe("crashed");
    expect(byMode.uncaught?.error).toMatch(/^handler code threw outside any invocation .*: thrown from a timer nobody awaits$/);
    expect(byMode.reject?.reason).toBe("crashed");
    expect(byMode.reject?.error).toMatch(/a rejection nobody handles$/);
    expect(await metric('jetfn_worker_restarts_total{function="bad",reason="uncaught"}')).toBe(4);
    expect(host.state).toBe("running");
  });

  it("a bystander on a thread terminated for another's hard timeout is redelivered and succeeds, no attempt lost", async () => {
    // maxAttempts is 1: had the bystander's delivery spent its attempt, its redelivery would be dead-lettered unrun.
    await nats.js.publish("iso.shared", JSON.stringify({ mode: "spin" }));
    const threadOf = (name: string) =>
      (host.functions().find((f) => (f as { name: string }).name === name) as { thread?: { state: string } }).thread;
    await waitFor(() => threadOf("shared")?.state === "stuck", { message: "/functions reports the spinning thread stuck" });
    const { seq } = await nats.js.publish("iso.shared", JSON.stringify({ mode: "slow" }));
    const done = await waitFor(async () => (await outputs("shared")).find((out) => out.seq === seq), {
      timeout: 20_000,
      message: "the bystander's output",
    });
    expect(done).toMatchObject({ mode: "slow" });
    const letters = await deadLetters("shared");
    expect(letters.map((l) => [l.body.mode, l.reason, l.error])).toEqual([["spin", "attempts-exhausted", "timed out after 3000ms"]]);
    expect(await metric('jetfn_worker_restarts_total{function="shared",reason="timeout"}')).toBe(1);
    const bystander = logs.find((line) => line.msg === "delivery failed" && line.function === "shared" && line.seq === seq);
    expect(bystander).toMatchObject({ outcome: "aborted", action: "nak", delay_ms: 0 });
  });

  it("values that cannot cross or be encoded fail their delivery with a clear error, and crash nothing", async () => {
    for (const mode of ["circular", "bigint", "throw-object", "log-function"]) await nats.js.publish("iso.odd", JSON.stringify({ mode }));
    const letters = await waitFor(
      async () => {
        const found = await deadLetters("odd");
        return found.length === 3 ? found : undefined;
      },
      { message: "three dead letters" },
    );
    const byMode = Object.fromEntries(letters.map((letter) => [letter.body.mode, letter.error]));
    expect(byMode.circular).toMatch(/^TypeError: Converting circular structure to JSON/);
    expect(byMode.bigint).toMatch(/^TypeError: Do not know how to serialize a BigInt/);
    expect(byMode["throw-object"]).toBe("not an Error");
    await waitFor(async () => (await outputs("odd")).some((out) => out.logged === true));
    expect(logs.find((line) => line.msg === "a field that cannot be cloned")).toMatchObject({ function: "odd", n: 1 });
    expect(await metric('jetfn_worker_restarts_total{function="odd",reason="uncaught"}')).toBe(0);
  });
});

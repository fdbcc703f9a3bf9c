/**
 * The bad day, host side: a host killed mid-stream, a SIGTERM under load, the broker killed
 * under load, and a burst of poison messages. Each test prints its figures: published,
 * processed, duplicates, lost, dead-lettered.
 */
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { killCliHosts, startCliHost } from "../support/cli.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();

afterEach(killCliHosts);

/** A project whose `work` function (test/fixtures/host/work.ts) records each processing in the SEEN stream. */
function project(name: string): string {
  return makeProject(
    {
      "functions.yaml": `
streams:
  - { name: ${name}, subjects: ["${name.toLowerCase()}.in"] }
  - { name: ${name}_SEEN, subjects: ["${name.toLowerCase()}.seen"] }
functions:
  - name: work
    handler: work.ts
    stream: ${name}
    subjects: ["${name.toLowerCase()}.in"]
    concurrency: 8
    timeout: 2s
    ackWait: 3s
    retry: { maxAttempts: 10, initialDelay: 100ms, maxDelay: 1s }
`,
    },
    { fixtures: "host" },
  );
}

const startCli = (dir: string) => startCliHost(path.join(dir, "functions.yaml"), nats.server.url, { JETFN_SHUTDOWN_TIMEOUT: "10s" });

async function publishAll(subject: string, count: number): Promise<void> {
  for (let start = 1; start <= count; start += 100) {
    const ids = Array.from({ length: Math.min(100, count - start + 1) }, (_, i) => start + i);
    await Promise.all(ids.map((id) => nats.js.publish(subject, JSON.stringify({ id }))));
  }
}

/** Every id recorded in a SEEN stream, in order. */
async function seen(stream: string): Promise<number[]> {
  const { state } = await nats.jsm.streams.info(stream);
  const ids: number[] = [];
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
    const msg = await nats.jsm.streams.getMessage(stream, { seq });
    if (msg) ids.push(msg.json<{ id: number }>().id);
  }
  return ids;
}

async function count(stream: string): Promise<number> {
  return (await nats.jsm.streams.info(stream)).state.messages;
}

function figures(published: number, ids: number[]) {
  const unique = new Set(ids);
  return {
    published,
    processed: unique.size,
    duplicates: ids.length - unique.size,
    lost: Array.from({ length: published }, (_, i) => i + 1).filter((id) => !unique.has(id)).length,
  };
}

describe("host faults", () => {
  it("host SIGKILL mid-stream, then a new host: nothing lost", async () => {
    const dir = project("KILL");
    const published = 600;
    const first = await startCli(dir);
    await publishAll("kill.in", published);
    await waitFor(async () => (await count("KILL_SEEN")) >= 100);
    first.cli.child.kill("SIGKILL");
    expect(await first.cli.exited).toBe("SIGKILL");
    await startCli(dir);
    await waitFor(async () => new Set(await seen("KILL_SEEN")).size === published, {
      timeout: 30_000,
      message: "all processed after restart",
    });
    const result = figures(published, await seen("KILL_SEEN"));
    console.log("host SIGKILL mid-stream:", JSON.stringify(result));
    expect(result.lost).toBe(0);
    expect(result.duplicates).toBeLessThanOrEqual(8 + 8); // at most what was in flight or just acked
  });

  it("SIGTERM under load, then a new host: nothing lost, nothing processed twice", async () => {
    const dir = project("TERM");
    const published = 600;
    const first = await startCli(dir);
    await publishAll("term.in", published);
    await waitFor(async () => (await count("TERM_SEEN")) >= 100);
    first.cli.child.kill("SIGTERM");
    expect(await first.cli.exited).toBe(0);
    const beforeRestart = await count("TERM_SEEN");
    await startCli(dir);
    await waitFor(async () => new Set(await seen("TERM_SEEN")).size === published, { timeout: 30_000 });
    const result = { ...figures(published, await seen("TERM_SEEN")), processedBeforeSigterm: beforeRestart };
    console.log("SIGTERM under load:", JSON.stringify(result));
    expect(result.lost).toBe(0);
    expect(result.duplicates).toBe(0);
  });

  it("broker SIGKILL under load, then restart: not ready while down, nothing lost", async () => {
    const dir = project("BRK");
    const { host, baseUrl } = await startHost(dir, nats.server.url);
    try {
      const published = 600;
      await publishAll("brk.in", published);
      await waitFor(async () => (await count("BRK_SEEN")) >= 100);
      await nats.server.kill();
      await waitFor(async () => (await fetch(`${baseUrl}/readyz`)).status === 503, { message: "503 while the broker is down" });
      await nats.server.restart();
      await waitFor(async () => (await fetch(`${baseUrl}/readyz`)).status === 200, { timeout: 30_000 });
      await waitFor(async () => new Set(await seen("BRK_SEEN")).size === published, { timeout: 30_000 });
      const result = figures(published, await seen("BRK_SEEN"));
      console.log("broker SIGKILL under load:", JSON.stringify(result));
      expect(result.lost).toBe(0);
    } finally {
      await host.shutdown();
    }
  });

  it("100 poison messages: 100 dead letters with byte-identical bodies, the host unharmed", async () => {
    const dir = project("POISON");
    const { host } = await startHost(dir, nats.server.url);
    try {
      const bodies = Array.from({ length: 100 }, (_, i) => {
        const junk = Uint8Array.from({ length: 64 + i }, (_, j) => (i * 31 + j * 7) % 256);
        junk[0] = 0xff; // never valid UTF-8, so never valid JSON
        return junk;
      });
      const seqs = await Promise.all(bodies.map((body) => nats.js.publish("poison.in", body).then((ack) => ack.seq)));
      await waitFor(async () => {
        const info = await nats.jsm.consumers.info("POISON", "jetfn_work");
        return info.num_pending === 0 && info.num_ack_pending === 0;
      });
      const dlq = await nats.jsm.streams.info("JETFN_DLQ", { subjects_filter: "jetfn.dlq.work" });
      let identical = 0;
      for (let seq = dlq.state.first_seq; seq <= dlq.state.last_seq; seq++) {
        const msg = await nats.jsm.streams.getMessage("JETFN_DLQ", { seq });
        if (msg?.header.get("Jetfn-Stream") !== "POISON") continue;
        const index = seqs.indexOf(Number(msg.header.get("Jetfn-Stream-Seq")));
        if (index >= 0 && Buffer.from(msg.data).equals(Buffer.from(bodies[index]!))) identical++;
      }
      console.log("poison messages:", JSON.stringify({ published: 100, deadLettered: identical, byteIdentical: identical }));
      expect(identical).toBe(100);
      expect(host.state).toBe("running");
    } finally {
      await host.shutdown();
    }
  });
});

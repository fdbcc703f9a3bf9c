/**
 * Ordered functions across replicas: `jetfn start` processes sharing one function with
 * `ordering:` on a real nats-server. Every run of the handler records (key, index, host,
 * start, end) in a stream; the checks read those records back.
 */
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { type CliProcess, killCliHosts, startCliHost } from "../support/cli.ts";
import { makeProject, scrape, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
afterEach(killCliHosts);

interface Run {
  key: string;
  i: number;
  host: number;
  start: number;
  end: number;
  delivery: number;
  ok: boolean;
}

const FUNCTION = "apply-ledger";

function project(stream: string, ordering = "{ key: account, partitions: 8, leaseTtl: 2s }"): string {
  return makeProject(
    {
      "functions.yaml": `
streams:
  - { name: ${stream}, subjects: ["${stream.toLowerCase()}.>"], storage: memory }
  - { name: REC_${stream}, subjects: ["rec.${stream.toLowerCase()}"], storage: memory }
functions:
  - name: ${FUNCTION}
    handler: fns/ledger.ts
    stream: ${stream}
    subjects: ["${stream.toLowerCase()}.entries"]
    concurrency: 32
    timeout: 5s
    retry: { maxAttempts: 3, initialDelay: 300ms, backoff: fixed, jitter: false }
    ordering: ${ordering}
    config: { record: rec.${stream.toLowerCase()} }
`,
    },
    { fixtures: "ordering" },
  );
}

async function publishEntries(
  stream: string,
  keys: number,
  perKey: number,
  extra: (key: string, i: number) => object = () => ({}),
): Promise<void> {
  const subject = `${stream.toLowerCase()}.entries`;
  const acks: Promise<unknown>[] = [];
  for (let i = 0; i < perKey; i++) {
    for (let k = 0; k < keys; k++) {
      const account = `acct-${k}`;
      acks.push(nats.js.publish(subject, JSON.stringify({ account, i, ...extra(account, i) })));
    }
    await Promise.all(acks.splice(0));
  }
}

async function runs(stream: string): Promise<Run[]> {
  const info = await nats.jsm.streams.info(`REC_${stream}`);
  const found: Run[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const message = await nats.jsm.streams.getMessage(`REC_${stream}`, { seq });
    if (message) found.push(message.json<Run>());
  }
  return found;
}

async function okCount(stream: string): Promise<number> {
  const info = await nats.jsm.streams.info(`REC_${stream}`);
  return info.state.messages;
}

function byKey(all: Run[]): Map<string, Run[]> {
  const keys = new Map<string, Run[]>();
  for (const run of all) {
    const list = keys.get(run.key) ?? [];
    list.push(run);
    keys.set(run.key, list);
  }
  for (const list of keys.values()) list.sort((a, b) => a.start - b.start || a.end - b.end);
  return keys;
}

/** Each key's runs one after another, never two at once. */
function expectNoOverlap(all: Run[]): void {
  for (const [key, list] of byKey(all)) {
    for (let j = 1; j < list.length; j++) {
      expect(list[j]!.start, `${key}: run ${list[j]!.i} started before run ${list[j - 1]!.i} ended`).toBeGreaterThanOrEqual(
        list[j - 1]!.end,
      );
    }
  }
}

/**
 * Nothing lost, and no event of a key started before the one before it first succeeded
 * (re-runs of events after a failover are allowed: at-least-once).
 */
function expectKeyOrder(all: Run[], perKey: number): void {
  for (const [key, list] of byKey(all)) {
    for (let i = 0; i < perKey; i++) {
      const firstOk = list.find((run) => run.i === i && run.ok);
      expect(firstOk, `${key}: entry ${i} never succeeded`).toBeDefined();
      const nextStart = list.find((run) => run.i === i + 1)?.start;
      if (nextStart !== undefined)
        expect(nextStart, `${key}: entry ${i + 1} started before entry ${i} succeeded`).toBeGreaterThanOrEqual(firstOk!.end);
    }
  }
}

interface Functions {
  name: string;
  ordering: { owned: number[]; owners: Record<string, string>; host: string };
}

async function owned(base: string): Promise<number[]> {
  const list = (await (await fetch(`${base}/functions`)).json()) as Functions[];
  return list.find((f) => f.name === FUNCTION)!.ordering.owned;
}

async function startHosts(configFile: string, count: number): Promise<{ cli: CliProcess; base: string }[]> {
  const hosts: { cli: CliProcess; base: string }[] = [];
  for (let n = 0; n < count; n++) hosts.push(await startCliHost(configFile, nats.server.url, { LOG_LEVEL: "info" }));
  // The spread evens out before the first event: 8 partitions over the hosts.
  await waitFor(
    async () => {
      const counts = await Promise.all(hosts.map(({ base }) => owned(base).then((p) => p.length)));
      return counts.reduce((a, b) => a + b, 0) === 8 && Math.max(...counts) - Math.min(...counts) <= 1;
    },
    { timeout: 20_000, message: "partitions spread over the hosts" },
  );
  return hosts;
}

describe("three replicas", () => {
  it("runs 40 keys x 50 entries one at a time per key, in order, in parallel across keys and hosts", async () => {
    const dir = project("LA");
    await startHosts(path.join(dir, "functions.yaml"), 3);
    await publishEntries("LA", 40, 50);
    await waitFor(async () => (await okCount("LA")) >= 2000, { timeout: 60_000, interval: 250, message: "2,000 runs" });
    const all = await runs("LA");
    expect(all).toHaveLength(2000);
    expect(all.every((run) => run.ok)).toBe(true);
    for (const [key, list] of byKey(all))
      expect(
        list.map((run) => run.i),
        key,
      ).toEqual([...Array(50).keys()]);
    expectNoOverlap(all);
    expect(new Set(all.map((run) => run.host)).size).toBe(3);
    // At least 3 times a sequential consumer: the runs' total time over the wall time.
    const busy = all.reduce((sum, run) => sum + (run.end - run.start), 0);
    const wall = Math.max(...all.map((r) => r.end)) - Math.min(...all.map((r) => r.start));
    expect(busy / wall).toBeGreaterThanOrEqual(3);
  });

  it("keeps every key's order and loses nothing when a host is SIGKILLed midway; its partitions move within leaseTtl + 5 s", async () => {
    const dir = project("LB");
    const hosts = await startHosts(path.join(dir, "functions.yaml"), 3);
    const publishing = publishEntries("LB", 40, 50, () => ({ ms: 10 }));
    await waitFor(async () => (await okCount("LB")) >= 500, { timeout: 30_000, interval: 100 });
    const [victim, ...survivors] = hosts;
    victim!.cli.child.kill("SIGKILL");
    const killedAt = Date.now();
    await waitFor(async () => (await Promise.all(survivors.map(({ base }) => owned(base)))).flat().length === 8, {
      timeout: 20_000,
      interval: 100,
      message: "survivors own every partition",
    });
    expect(Date.now() - killedAt).toBeLessThan(2000 + 5000);
    await publishing;
    await waitFor(
      async () => {
        const done = new Set((await runs("LB")).filter((r) => r.ok).map((r) => `${r.key}:${r.i}`));
        return done.size === 2000;
      },
      { timeout: 60_000, interval: 500, message: "every entry succeeded once" },
    );
    const all = await runs("LB");
    expectKeyOrder(all, 50);
    expectNoOverlap(all);
  });
});

describe("failures hold their key", () => {
  let host: Host;
  let baseUrl: string;

  beforeAll(async () => {
    ({ host, baseUrl } = await startHost(project("LC"), nats.server.url));
  });

  afterAll(async () => {
    await host?.shutdown();
  });

  it("retries a failing entry with backoff while its key waits and other keys finish; a poison entry is dead-lettered and its key goes on", async () => {
    const publish = (account: string, i: number, extra: object = {}) =>
      nats.js.publish("lc.entries", JSON.stringify({ account, i, ...extra }));
    for (let i = 0; i < 4; i++) {
      await publish("flaky", i, i === 1 ? { failTimes: 2 } : {});
      await publish("poison", i, i === 1 ? { poison: true } : {});
      await publish("steady", i, { ms: 1 });
    }
    await waitFor(async () => (await runs("LC")).filter((r) => r.ok).length >= 11, { timeout: 20_000, interval: 100 });
    const keys = byKey(await runs("LC"));
    const flaky = keys.get("flaky")!;
    expect(flaky.map((r) => [r.i, r.delivery, r.ok])).toEqual([
      [0, 1, true],
      [1, 1, false],
      [1, 2, false],
      [1, 3, true],
      [2, 1, true],
      [3, 1, true],
    ]);
    // The other keys did not wait for it.
    const flakyDone = flaky.find((r) => r.i === 1 && r.ok)!.end;
    expect(Math.max(...keys.get("steady")!.map((r) => r.end))).toBeLessThan(flakyDone);

    const poison = keys.get("poison")!;
    expect(poison.map((r) => [r.i, r.ok])).toEqual([
      [0, true],
      [1, false],
      [2, true],
      [3, true],
    ]);
    const letter = await waitFor(() => nats.jsm.streams.getMessage("JETFN_DLQ", { last_by_subj: `jetfn.dlq.${FUNCTION}` }));
    expect(letter.json<{ account: string; i: number }>()).toMatchObject({ account: "poison", i: 1 });
    expect(letter.header.get("Jetfn-Reason")).toBe("non-retryable");
    expectNoOverlap(await runs("LC"));
    expect(await scrape(baseUrl, `jetfn_key_wait_seconds_count{function="${FUNCTION}"}`)).toBeGreaterThanOrEqual(14);
    expect(await scrape(baseUrl, `jetfn_partitions_owned{function="${FUNCTION}"}`)).toBe(8);
  });

  it("treats every event without a key as one key: one at a time, in stream order, none dropped", async () => {
    for (let i = 0; i < 6; i++) await nats.js.publish("lc.entries", JSON.stringify({ i, ms: 20 }));
    await waitFor(async () => (await runs("LC")).filter((r) => r.key === undefined).length >= 6, { timeout: 20_000, interval: 100 });
    const keyless = (await runs("LC")).filter((r) => r.key === undefined).sort((a, b) => a.start - b.start);
    expect(keyless.map((r) => r.i)).toEqual([0, 1, 2, 3, 4, 5]);
    for (let j = 1; j < keyless.length; j++) expect(keyless[j]!.start).toBeGreaterThanOrEqual(keyless[j - 1]!.end);
  });
});

describe("a stalled replica", () => {
  it("stops starting events before its lease ends when it cannot renew (SIGSTOP), and another host takes over", async () => {
    const dir = project("LD");
    const [stalled, other] = await startHosts(path.join(dir, "functions.yaml"), 2);
    const before = await owned(stalled!.base);
    stalled!.cli.child.kill("SIGSTOP");
    const stoppedAt = Date.now();
    try {
      const publishing = publishEntries("LD", 20, 10);
      await waitFor(async () => (await owned(other!.base)).length === 8, {
        timeout: 15_000,
        interval: 100,
        message: "the other host owns every partition",
      });
      expect(Date.now() - stoppedAt).toBeLessThan(2000 + 5000);
      await publishing;
      await waitFor(async () => (await okCount("LD")) >= 200, { timeout: 30_000, interval: 200 });
    } finally {
      stalled!.cli.child.kill("SIGCONT");
    }
    const resumedAt = Date.now();
    // Woken up, it finds its leases gone before it starts anything of theirs: every run it
    // makes from now on comes after it has taken a partition anew.
    // Give it time to wake, see, and take its share back.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const pid = stalled!.cli.child.pid;
    const lines = stalled!.cli
      .output()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { time: string; msg: string; partition?: number; reason?: string })
      .map((line) => ({ ...line, at: Date.parse(line.time) }));
    const lost = lines.filter((l) => l.at >= stoppedAt && /lost/.test(l.msg));
    expect(lost.map((l) => l.partition).sort()).toEqual([...before].sort());
    const firstRetaken = lines.find((l) => l.at >= resumedAt && /acquired/.test(l.msg))?.at ?? Number.POSITIVE_INFINITY;
    const startedByStalled = (await runs("LD")).filter((run) => run.host === pid && run.start >= stoppedAt);
    for (const run of startedByStalled) expect(run.start).toBeGreaterThanOrEqual(firstRetaken);
  });
});

describe("a replica shutting down", () => {
  it("hands its partitions over at once on SIGTERM, not after the lease TTL", async () => {
    const dir = project("LE", "{ key: account, partitions: 8, leaseTtl: 10s }");
    const [leaving, staying] = await startHosts(path.join(dir, "functions.yaml"), 2);
    const publishing = publishEntries("LE", 20, 10);
    leaving!.cli.child.kill("SIGTERM");
    const stoppedAt = Date.now();
    await waitFor(async () => (await owned(staying!.base)).length === 8, {
      timeout: 15_000,
      interval: 100,
      message: "the other host owns every partition",
    });
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);
    expect(await leaving!.cli.exited).toBe(0);
    await publishing;
    await waitFor(async () => new Set((await runs("LE")).filter((r) => r.ok).map((r) => `${r.key}:${r.i}`)).size === 200, {
      timeout: 30_000,
      interval: 200,
    });
    expectKeyOrder(await runs("LE"), 10);
  });
});

/**
 * Partition leases (issue 9, guarantee 4) against a real nats-server: every "host" is a
 * PartitionLeases with its own connection, all in this process so that their events share
 * one clock and can be checked against each other.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { type KV, openLeaseBucket, PartitionLeases } from "../../runtime/nats/leases.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait-for.ts";

const TTL = 1200;
const ROUND = TTL / 3;
const PARTITIONS = 8;
/** How long a host's events of a partition take to drain when it is released. */
const DRAIN_MS = 100;

interface Change {
  readonly host: string;
  readonly partition: number;
  readonly kind: "acquired" | "lost" | "release" | "released";
  readonly reason?: string;
  readonly at: number;
}

interface TestHost {
  readonly id: string;
  readonly nc: NatsConnection;
  readonly leases: PartitionLeases;
  /** Partitions whose events.release() has not resolved yet. */
  readonly draining: Set<number>;
}

/** The hosts of one test, all leasing the partitions of one function. */
class Hosts {
  readonly changes: Change[] = [];
  /** Moments where two hosts could start (or still run) events of one partition. */
  readonly violations: string[] = [];
  readonly logs: Record<string, unknown>[] = [];
  readonly all: TestHost[] = [];
  readonly #log = pino({ level: "debug" }, { write: (line: string) => void this.logs.push(JSON.parse(line) as Record<string, unknown>) });

  constructor(readonly fn: string) {}

  async add(id: string, opts: { start?: boolean } = {}): Promise<TestHost> {
    const nc = await connect({ servers: server.url });
    const kv: KV = await openLeaseBucket(nc);
    const draining = new Set<number>();
    const record = (partition: number, kind: Change["kind"], reason?: string): void => {
      this.changes.push({ host: id, partition, kind, at: performance.now(), ...(reason ? { reason } : {}) });
    };
    const leases = new PartitionLeases({
      kv,
      function: this.fn,
      partitions: PARTITIONS,
      hostId: id,
      ttlMs: TTL,
      log: this.#log,
      events: {
        acquired: (p, reason) => {
          record(p, "acquired", reason);
          for (const other of this.all) {
            if (other.id === id) continue;
            if (other.leases.owns(p)) this.violations.push(`${id} acquired ${p} (${reason}) while ${other.id} owns it`);
            if (other.draining.has(p)) this.violations.push(`${id} acquired ${p} (${reason}) while ${other.id} still drains it`);
          }
        },
        lost: (p, reason) => record(p, "lost", reason),
        release: async (p) => {
          record(p, "release");
          if (leases.owns(p)) this.violations.push(`${id} is asked to release ${p} while it still owns it`);
          draining.add(p);
          await sleep(DRAIN_MS); // its events finishing
          draining.delete(p);
          record(p, "released");
        },
      },
    });
    const host = { id, nc, leases, draining };
    this.all.push(host);
    if (opts.start !== false) await leases.start();
    return host;
  }

  counts(hosts = this.all): number[] {
    return hosts.map((h) => h.leases.owned().length).sort((a, b) => a - b);
  }

  /** Every partition owned by exactly one of `hosts`. */
  coverAll(hosts = this.all): boolean {
    const owned = hosts.flatMap((h) => h.leases.owned()).sort((a, b) => a - b);
    return owned.length === PARTITIONS && owned.every((p, i) => p === i);
  }

  /**
   * Per partition, the spans during which a host may run events (acquired until lost, or
   * until its release resolved) never overlap between hosts.
   */
  expectExclusive(): void {
    expect(this.violations).toEqual([]);
    for (let p = 0; p < PARTITIONS; p++) {
      const spans: { host: string; from: number; to: number }[] = [];
      const open = new Map<string, number>();
      for (const c of this.changes.filter((c) => c.partition === p)) {
        if (c.kind === "acquired") open.set(c.host, c.at);
        else if (c.kind === "lost" || c.kind === "released") {
          const from = open.get(c.host);
          if (from !== undefined) spans.push({ host: c.host, from, to: c.at });
          open.delete(c.host);
        }
      }
      for (const [host, from] of open) spans.push({ host, from, to: Infinity });
      spans.sort((a, b) => a.from - b.from);
      for (let i = 1; i < spans.length; i++) {
        const [before, after] = [spans[i - 1]!, spans[i]!];
        expect(after.from, `partition ${p}: ${after.host} from ${after.from} while ${before.host} until ${before.to}`).toBeGreaterThan(
          before.to,
        );
      }
    }
  }

  get(id: string): TestHost {
    const host = this.all.find((h) => h.id === id);
    if (host === undefined) throw new Error(`no host ${id}`);
    return host;
  }

  of(host: TestHost, kind: Change["kind"]): Change[] {
    return this.changes.filter((c) => c.host === host.id && c.kind === kind);
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((h) => h.leases.stop()));
    await Promise.all(this.all.map((h) => (h.nc.isClosed() ? undefined : h.nc.close())));
  }
}

let server: NatsServer;
let hosts: Hosts | undefined;
let admin: NatsConnection;
let bucket: KV;

beforeAll(async () => {
  server = await startNatsServer();
  admin = await connect({ servers: server.url });
  bucket = await openLeaseBucket(admin);
});

afterEach(async () => {
  await hosts?.close();
  hosts = undefined;
});

afterAll(async () => {
  await admin?.close();
  await server?.stop();
});

const settled = { timeout: 15_000, interval: 20 };
const all = Array.from({ length: PARTITIONS }, (_, p) => p);

it("gives a lone host every partition, and deletes the leases when it stops", async () => {
  hosts = new Hosts("lone");
  const a = await hosts.add("a");
  expect(a.leases.owned()).toEqual(all);
  expect(a.leases.members()).toBe(1);
  expect(hosts.of(a, "acquired").map((c) => c.reason)).toEqual(all.map(() => "free"));
  expect([...a.leases.owners()]).toEqual(all.map((p) => [p, "a"]));
  const entry = await bucket.get("lone.p.3");
  expect(entry?.json()).toEqual({ owner: "a" });

  await a.leases.stop();
  expect(a.leases.owned()).toEqual([]);
  expect(
    hosts
      .of(a, "released")
      .map((c) => c.partition)
      .sort((x, y) => x - y),
  ).toEqual(all);
  for (const p of all) expect((await bucket.get(`lone.p.${p}`))?.operation).toBe("DEL");
  expect((await bucket.get("lone.m.a"))?.operation).toBe("DEL");

  const lines = hosts.logs.filter((l) => l.function === "lone");
  expect(lines.filter((l) => l.msg === "partition lease acquired" && l.level === 30)).toHaveLength(PARTITIONS);
  expect(lines.filter((l) => l.msg === "partition lease released" && l.level === 30)).toHaveLength(PARTITIONS);
  expect(lines.find((l) => l.msg === "partition lease acquired")).toMatchObject({ partition: 0, reason: "free", owner: "a" });
});

it("spreads 8 partitions over three hosts as 3/3/2, one owner per partition at any moment", async () => {
  hosts = new Hosts("three");
  const h = hosts;
  await Promise.all(["a", "b", "c"].map((id) => h.add(id)));
  await waitFor(() => h.coverAll() && h.counts().join() === "2,3,3", { ...settled, message: "3/3/2" });
  const owned = h.all.map((x) => x.leases.owned().join());
  await sleep(TTL); // three more rounds: the spread holds still
  expect(h.all.map((x) => x.leases.owned().join())).toEqual(owned);
  for (const x of h.all) {
    expect(x.leases.members()).toBe(3);
    expect(new Map(x.leases.owners())).toEqual(new Map(h.all.flatMap((y) => y.leases.owned().map((p) => [p, y.id]))));
  }
  h.expectExclusive();
});

it("hands a stopping host's partitions to the others within a round or two", async () => {
  hosts = new Hosts("handoff");
  const h = hosts;
  await Promise.all(["a", "b", "c"].map((id) => h.add(id)));
  await waitFor(() => h.coverAll() && h.counts().join() === "2,3,3", { ...settled, message: "3/3/2" });
  const [a, b, c] = [h.get("a"), h.get("b"), h.get("c")];
  const handed = b.leases.owned();

  const stopping = performance.now();
  await b.leases.stop();
  const stoppedAt = performance.now();
  expect(b.leases.owned()).toEqual([]);
  const released = h.of(b, "released").filter((x) => x.at > stopping);
  expect(released.map((x) => x.partition).sort((x, y) => x - y)).toEqual(handed);
  await waitFor(() => h.coverAll([a, c]) && h.counts([a, c]).join() === "4,4", { ...settled, message: "4/4 after b stopped" });
  const taken = h.changes.filter((x) => x.kind === "acquired" && handed.includes(x.partition) && x.at > stopping);
  expect(taken.map((x) => x.reason)).toEqual(handed.map(() => "free"));
  const slowest = Math.max(...taken.map((x) => x.at - stoppedAt));
  expect(slowest).toBeLessThan(3 * ROUND);
  expect(a.leases.members()).toBe(2);
  h.expectExclusive();
});

it("stops a host that cannot renew before anyone else takes its partitions over", async () => {
  hosts = new Hosts("cutoff");
  const h = hosts;
  await Promise.all(["a", "b", "c"].map((id) => h.add(id)));
  await waitFor(() => h.coverAll() && h.counts().join() === "2,3,3", { ...settled, message: "3/3/2" });
  const [a, b, c] = [h.get("a"), h.get("b"), h.get("c")];
  const orphaned = b.leases.owned();

  const closedAt = performance.now();
  await b.nc.close(); // no stop(): the leases stay in the bucket, unrenewed
  await waitFor(() => h.coverAll([a, c]) && h.counts([a, c]).join() === "4,4", { ...settled, message: "4/4 after b was cut off" });
  expect(b.leases.owned()).toEqual([]);
  for (const p of orphaned) {
    const lost = h.changes.find((x) => x.host === "b" && x.partition === p && x.kind === "lost");
    const taken = h.changes.find((x) => x.host !== "b" && x.partition === p && x.kind === "acquired" && x.at > closedAt);
    expect(lost?.reason).toBe("unrenewed");
    expect(taken?.reason).toBe("expired");
    expect(lost!.at, `partition ${p}: b stops before the takeover`).toBeLessThan(taken!.at);
    expect(taken!.at - closedAt).toBeLessThan(TTL + 5 * ROUND);
  }
  await waitFor(() => a.leases.members() === 2 && c.leases.members() === 2, { ...settled, message: "b no longer a member" });
  const warnings = h.logs.filter((l) => l.msg === "partition lease lost" && l.host === "b");
  const byPartition = (x: unknown[], y: unknown[]): number => Number(x[1]) - Number(y[1]);
  expect(warnings.map((l) => [l.level, l.partition, l.reason]).sort(byPartition)).toEqual(orphaned.map((p) => [40, p, "unrenewed"]));
  h.expectExclusive();
});

it("gives a host that joins later its share: 3/3/2 becomes 2/2/2/2", async () => {
  hosts = new Hosts("joiner");
  const h = hosts;
  await Promise.all(["a", "b", "c"].map((id) => h.add(id)));
  await waitFor(() => h.coverAll() && h.counts().join() === "2,3,3", { ...settled, message: "3/3/2" });
  const d = await h.add("d");
  await waitFor(() => h.coverAll() && h.counts().join() === "2,2,2,2", { ...settled, message: "2/2/2/2" });
  expect(h.of(d, "acquired").map((x) => x.reason)).toEqual(["free", "free"]);
  // Nothing is taken from anyone: partitions move only by release (a lease lost unrenewed on an overloaded machine is not a fault).
  expect(h.changes.filter((x) => x.kind === "lost" && x.reason === "taken")).toEqual([]);
  h.expectExclusive();
});

it("owns nothing on waking from a stall longer than the ttl, before any timer has run", async () => {
  hosts = new Hosts("stall");
  const h = hosts;
  await Promise.all(["a", "b", "c"].map((id) => h.add(id)));
  await waitFor(() => h.coverAll() && h.counts().join() === "2,3,3", { ...settled, message: "3/3/2" });
  const stalledAt = performance.now();
  while (performance.now() - stalledAt < TTL) {
    // the whole process stalls, as under SIGSTOP: no timer, no socket read
  }
  expect(h.all.map((x) => x.leases.owned())).toEqual([[], [], []]);
  await waitFor(() => h.coverAll(), { ...settled, message: "all partitions owned again" });
  const lost = h.changes.filter((x) => x.kind === "lost" && x.at > stalledAt);
  expect(lost.map((x) => x.reason)).toEqual(all.map(() => "unrenewed"));
  h.expectExclusive();
});

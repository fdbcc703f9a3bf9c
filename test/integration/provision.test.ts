/**
 * Provisioning against a real nats-server 2.9: streams and consumers created and updated
 * from functions.yaml, the dead-letter stream, and the errors that stop a start.
 */
import path from "node:path";
import type { JetStreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import pino from "pino";
import { beforeAll, describe, expect, it } from "vitest";
import { compileConfig } from "../../runtime/config/load.ts";
import type { CompiledFunction } from "../../runtime/config/types.ts";
import { ensureConsumer, ProvisionError, partitionConsumer, rewindConsumer } from "../../runtime/nats/provision.ts";
import { createHost, makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

/** A project of `yaml` whose functions all run test/fixtures/provision/fn.ts. */
function project(yaml: string): string {
  return makeProject({ "functions.yaml": yaml }, { fixtures: "provision" });
}

const nats = useNats();

beforeAll(async () => {
  await nats.jsm.streams.add({ name: "SEEN", subjects: ["seen.>"], storage: "memory" });
});

async function startError(yaml: string): Promise<string> {
  try {
    const { host } = await startHost(project(yaml), nats.server.url);
    await host.shutdown();
  } catch (error) {
    expect(error).toBeInstanceOf(ProvisionError);
    return (error as Error).message;
  }
  throw new Error("expected the start to fail");
}

describe("provisioning", () => {
  it("creates streams, the dead-letter stream and a durable consumer as functions.yaml says", async () => {
    const { host } = await startHost(
      project(`
streams:
  - { name: P1, subjects: ["p1.>"], storage: memory, duplicateWindow: 1m }
functions:
  - { name: a, handler: fn.ts, stream: P1, subjects: [p1.a], durable: A_DURABLE, timeout: 4s, concurrency: 3, maxAckPending: 50 }
`),
      nats.server.url,
    );
    try {
      const stream = await nats.jsm.streams.info("P1");
      expect(stream.config).toMatchObject({ subjects: ["p1.>"], storage: "memory", duplicate_window: nanos(60_000) });
      expect((await nats.jsm.streams.info("JETFN_DLQ")).config.subjects).toEqual(["jetfn.dlq.>"]);
      const consumer = await nats.jsm.consumers.info("P1", "A_DURABLE");
      expect(consumer.config).toMatchObject({
        durable_name: "A_DURABLE",
        ack_policy: "explicit",
        ack_wait: nanos(9000), // timeout + 5 s
        max_ack_pending: 50,
        max_deliver: -1,
        filter_subject: "p1.a",
        deliver_policy: "all",
      });
    } finally {
      await host.shutdown();
    }
  });

  it("updates a stream and a consumer that drifted from functions.yaml", async () => {
    await nats.jsm.streams.add({ name: "P2", subjects: ["p2.b"], storage: "memory" });
    await nats.jsm.consumers.add("P2", {
      durable_name: "jetfn_b",
      ack_policy: "explicit",
      filter_subject: "p2.b",
      ack_wait: nanos(1000),
      max_deliver: 5,
    });
    const { host, logs } = await startHost(
      project(`
streams:
  - { name: P2, subjects: ["p2.>"], storage: memory }
functions:
  - { name: b, handler: fn.ts, stream: P2, subjects: [p2.b], timeout: 10s }
`),
      nats.server.url,
    );
    try {
      expect((await nats.jsm.streams.info("P2")).config.subjects).toEqual(["p2.>"]);
      expect((await nats.jsm.consumers.info("P2", "jetfn_b")).config).toMatchObject({ ack_wait: nanos(15_000), max_deliver: -1 });
      expect(logs.find((l) => l.msg === "updated consumer to match functions.yaml")?.changed).toEqual(
        expect.arrayContaining(["ack_wait", "max_deliver"]),
      );
    } finally {
      await host.shutdown();
    }
  });

  it("starts a deliverPolicy: new consumer after what is already in the stream", async () => {
    await nats.jsm.streams.add({ name: "P3", subjects: ["p3.>"], storage: "memory" });
    await nats.js.publish("p3.c", JSON.stringify({ n: "old" }));
    const seen = nats.nc.subscribe("seen.c");
    const { host } = await startHost(
      project(`
functions:
  - { name: c, handler: fn.ts, stream: P3, subjects: [p3.c], deliverPolicy: new }
`),
      nats.server.url,
    );
    try {
      await nats.js.publish("p3.c", JSON.stringify({ n: "new" }));
      const first = await (async () => {
        for await (const m of seen) return m.json<{ n: string }>();
      })();
      expect(first).toEqual({ n: "new" });
    } finally {
      seen.unsubscribe();
      await host.shutdown();
    }
  });

  it("refuses a function with several subjects on a server older than 2.10", async () => {
    expect(
      await startError(`
streams:
  - { name: P4, subjects: ["p4.>"], storage: memory }
functions:
  - { name: d, handler: fn.ts, stream: P4, subjects: [p4.x, p4.y] }
`),
    ).toMatch(/^function d binds 2 subjects, which needs multi-filter consumers \(nats-server 2\.10\+\); this server is 2\.9\.10/);
  });

  it("refuses a stream that is neither declared nor on the server", async () => {
    expect(await startError("functions:\n  - { name: e, handler: fn.ts, stream: NOPE, subjects: [nope.e] }\n")).toBe(
      "function e: stream NOPE does not exist and is not declared under streams: in functions.yaml",
    );
  });

  it("refuses an output subject that no stream captures", async () => {
    expect(
      await startError(`
streams:
  - { name: P5, subjects: ["p5.>"], storage: memory }
functions:
  - { name: f, handler: fn.ts, stream: P5, subjects: [p5.f], output: nowhere.f }
`),
    ).toBe("function f: output subject nowhere.f is not captured by any stream; declare one under streams:");
  });

  it("is ready only once every consumer is bound", async () => {
    const { host, baseUrl } = await startHost(
      project(`
streams:
  - { name: P6, subjects: ["p6.>"], storage: memory }
functions:
  - { name: g, handler: fn.ts, stream: P6, subjects: [p6.g] }
`),
      nats.server.url,
    );
    try {
      await waitFor(async () => (await fetch(`${baseUrl}/readyz`)).status === 200);
      expect(host.state).toBe("running");
    } finally {
      const stopping = host.shutdown();
      expect(host.ready()).toBe(false);
      expect(host.shutdown()).toBe(stopping);
      await stopping;
      expect(host.state).toBe("stopped");
    }
  });
});

describe("shutdown during start-up", () => {
  it("ends the start, leaves nothing listening, and resolves", async () => {
    const dir = project(`
streams:
  - { name: P7, subjects: ["p7.>"], storage: memory }
functions:
  - { name: h, handler: fn.ts, stream: P7, subjects: [p7.h] }
`);
    const { host } = await createHost(dir, nats.server.url);
    const starting = host.start();
    const stopping = host.shutdown();
    await expect(starting).rejects.toThrow("start-up interrupted by shutdown");
    await stopping;
    expect(host.ready()).toBe(false);
    expect(host.httpAddress).toBeUndefined();
  });
});

/**
 * A takeover rewinds a partition's durable (with one partition, it reads the stream itself;
 * a forwarder's durable is rewound the same way) by deleting it and adding it again at its
 * ack floor; a host starting meanwhile provisions the same durable. Each side's step is made to
 * land in the other's window by a JetStreamManager whose `consumers` call does the other
 * side's step first, once (the server is real).
 */
describe("a partition's durable provisioned while a takeover rewinds it", () => {
  const quiet = pino({ level: "silent" });
  async function orderedPartition(stream: string, retention: "limits" | "workqueue" = "limits"): Promise<CompiledFunction> {
    const subject = `${stream.toLowerCase()}.e`;
    await nats.jsm.streams.add({ name: stream, subjects: [subject], storage: "memory", retention });
    for (let i = 0; i < 10; i++) await nats.js.publish(subject, JSON.stringify({ i }));
    const yaml = `functions:\n  - { name: o, handler: fn.ts, stream: ${stream}, subjects: [${subject}], ordering: { key: "$.i", partitions: 1 } }\n`;
    const config = compileConfig(yaml, path.join(project(yaml), "functions.yaml"));
    return partitionConsumer(config.functions[0]!, 0);
  }

  /**
   * `jsm` whose next `consumers[method]` call lets `other` land in its window: an add runs
   * after `other`, a delete before it.
   */
  function interleaved(method: "add" | "delete", other: () => Promise<unknown>): JetStreamManager {
    let done = false;
    const consumers = new Proxy(nats.jsm.consumers, {
      get(target, name) {
        const value = Reflect.get(target, name);
        if (typeof value !== "function") return value;
        const call = (...args: unknown[]) => value.apply(target, args) as Promise<unknown>;
        if (name !== method || done) return call;
        return async (...args: unknown[]) => {
          done = true;
          if (method === "add") await other();
          const result = await call(...args);
          if (method === "delete") await other();
          return result;
        };
      },
    });
    return new Proxy(nats.jsm, { get: (target, name) => (name === "consumers" ? consumers : Reflect.get(target, name)) });
  }

  /** Pulls 5 messages from the durable and acks the first 2: ack floor 2, 3 pending. */
  async function holdSome(fn: CompiledFunction): Promise<void> {
    const consumer = await nats.js.consumers.get(fn.stream, fn.durable);
    const batch = await consumer.fetch({ max_messages: 5, expires: 2000 });
    let n = 0;
    for await (const m of batch) if (++n <= 2) await m.ackAck();
  }

  it("start-up keeps the durable a takeover re-created at its ack floor between its read and its add", async () => {
    const fn = await orderedPartition("RW1");
    const rewound = { ...partitionConfig(fn), deliver_policy: "by_start_sequence" as const, opt_start_seq: 3 };
    await ensureConsumer(
      interleaved("add", () => nats.jsm.consumers.add(fn.stream, rewound)),
      fn,
      quiet,
    );
    const info = await nats.jsm.consumers.info(fn.stream, fn.durable);
    expect(info.config).toMatchObject({ deliver_policy: "by_start_sequence", opt_start_seq: 3 });
  });

  it("a rewind deletes again a durable that a host's start-up created as functions.yaml says in its window", async () => {
    const fn = await orderedPartition("RW2");
    await ensureConsumer(nats.jsm, fn, quiet);
    await holdSome(fn);
    const starting = interleaved("delete", () => ensureConsumer(nats.jsm, fn, quiet));
    expect(await rewindConsumer(starting, fn, quiet, new AbortController().signal)).toBe(true);
    const info = await nats.jsm.consumers.info(fn.stream, fn.durable);
    expect(info.config).toMatchObject({ deliver_policy: "by_start_sequence", opt_start_seq: 3 });
    const first = await (await nats.js.consumers.get(fn.stream, fn.durable)).next({ expires: 2000 });
    expect(first?.seq).toBe(3);
    first?.ack();
  });

  it("rewinds a durable on a work-queue stream with deliver all (the server refuses a start sequence there)", async () => {
    const fn = await orderedPartition("RW3", "workqueue");
    await ensureConsumer(nats.jsm, fn, quiet);
    await holdSome(fn);
    expect(await rewindConsumer(nats.jsm, fn, quiet, new AbortController().signal)).toBe(true);
    const info = await nats.jsm.consumers.info(fn.stream, fn.durable);
    expect(info.config.deliver_policy).toBe("all");
    // The 2 acked are gone from the work queue: the first unfinished comes first.
    const first = await (await nats.js.consumers.get(fn.stream, fn.durable)).next({ expires: 2000 });
    expect(first?.seq).toBe(3);
    first?.ack();
  });
});

function partitionConfig(fn: CompiledFunction) {
  return {
    durable_name: fn.durable,
    ack_policy: "explicit" as const,
    ack_wait: nanos(fn.ackWaitMs),
    max_ack_pending: fn.maxAckPending,
    max_deliver: -1,
    filter_subject: fn.subjects[0]!,
  };
}

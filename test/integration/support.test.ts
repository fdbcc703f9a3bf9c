import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { connect } from "@nats-io/transport-node";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { freePort, freePorts } from "../support/free-port.ts";
import type { NatsCluster, NatsServer } from "../support/nats-server.ts";
import { startNatsCluster, startNatsServer } from "../support/nats-server.ts";
import { waitFor } from "../support/wait-for.ts";

const unique = (prefix: string): string => `${prefix}_${randomUUID().replaceAll("-", "").slice(0, 12)}`;

const connections: NatsConnection[] = [];
async function open(servers: string | string[]): Promise<NatsConnection> {
  const nc = await connect({ servers, reconnect: false, timeout: 5000 });
  connections.push(nc);
  return nc;
}

afterEach(async () => {
  await Promise.allSettled(connections.splice(0).map((nc) => nc.close()));
});

describe("waitFor", () => {
  it("returns the first truthy value, treating throws as not-yet", async () => {
    let calls = 0;
    const value = await waitFor(() => {
      calls++;
      if (calls < 3) throw new Error("not yet");
      return calls < 5 ? 0 : { calls };
    });
    expect(value).toEqual({ calls: 5 });
  });

  it("fails with the message and the last probe error", async () => {
    const failing = waitFor(
      () => {
        throw new Error("probe exploded");
      },
      { timeout: 100, interval: 10, message: "never ready" },
    );
    await expect(failing).rejects.toThrow(/never ready[\s\S]*probe exploded/);
  });
});

describe("freePort", () => {
  it("returns usable, distinct ports", async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const ports = await freePorts(4);
    expect(new Set(ports).size).toBe(4);
  });
});

describe("startNatsServer", () => {
  let server: NatsServer | undefined;
  afterAll(async () => {
    await server?.stop();
  });

  it("starts a JetStream server that accepts publishes", async () => {
    server = await startNatsServer();
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(server.running).toBe(true);
    const nc = await open(server.url);
    const jsm = await jetstreamManager(nc);
    const stream = unique("S");
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], storage: StorageType.File });
    const ack = await jetstream(nc).publish(`${stream}.a`, "hello");
    expect(ack.stream).toBe(stream);
    expect(ack.seq).toBe(1);

    // core pub/sub works too
    const sub = nc.subscribe(unique("core"), { max: 1 });
    nc.publish(sub.getSubject(), "ping");
    for await (const m of sub) expect(m.string()).toBe("ping");
  });

  it("restart() keeps the port and the file-stored stream", async () => {
    const s = server ?? (await startNatsServer());
    server = s;
    const nc = await open(s.url);
    const jsm = await jetstreamManager(nc);
    const stream = unique("R");
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], storage: StorageType.File });
    await jetstream(nc).publish(`${stream}.x`, "one");
    await nc.close();

    const { port, pid, storeDir } = s;
    await s.restart();
    expect(s.port).toBe(port);
    expect(s.storeDir).toBe(storeDir);
    expect(s.pid).not.toBe(pid);

    const nc2 = await open(s.url);
    const jsm2 = await jetstreamManager(nc2);
    const info = await waitFor(() => jsm2.streams.info(stream), { message: `stream ${stream} after restart` });
    expect(info.state.messages).toBe(1);
  });

  it("kill() then restart() recovers the stream", async () => {
    const s = server ?? (await startNatsServer());
    server = s;
    const nc = await open(s.url);
    const jsm = await jetstreamManager(nc);
    const stream = unique("K");
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], storage: StorageType.File });
    const js = jetstream(nc);
    for (let i = 0; i < 3; i++) await js.publish(`${stream}.x`, `m${i}`);
    await nc.close();

    const { port } = s;
    await s.kill();
    expect(s.running).toBe(false);
    await expect(open(s.url)).rejects.toThrow();

    await s.restart();
    expect(s.port).toBe(port);
    const nc2 = await open(s.url);
    const jsm2 = await jetstreamManager(nc2);
    const info = await waitFor(() => jsm2.streams.info(stream), { message: `stream ${stream} after kill` });
    expect(info.state.messages).toBe(3);
  });

  it("stop() is idempotent and restart() works from stopped", async () => {
    const s = await startNatsServer();
    try {
      const { port } = s;
      await s.stop();
      await s.stop();
      expect(s.running).toBe(false);
      await s.restart();
      expect(s.port).toBe(port);
      await open(s.url);
    } finally {
      await s.stop();
    }
  });

  it("writes configText to server.conf and passes extra args", async () => {
    const s = await startNatsServer({ configText: "max_payload: 2048\n", args: ["--server_name", "cfg-test"] });
    try {
      const nc = await open(s.url);
      expect(nc.info?.max_payload).toBe(2048);
      expect(nc.info?.server_name).toBe("cfg-test");
    } finally {
      await s.stop();
    }
  });

  it("reports a failed startup with the log tail", async () => {
    await expect(startNatsServer({ configText: "this is { not valid" })).rejects.toThrow(/exited during startup[\s\S]*log/);
  });
});

describe("startNatsCluster", () => {
  let cluster: NatsCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it("comes up with a meta leader and accepts an R3 stream", async () => {
    cluster = await startNatsCluster(3);
    expect(cluster.servers).toHaveLength(3);
    expect(new Set(cluster.urls).size).toBe(3);

    const nc = await open(cluster.urls);
    const jsm = await jetstreamManager(nc);
    const stream = unique("C");
    const info = await jsm.streams.add({
      name: stream,
      subjects: [`${stream}.>`],
      storage: StorageType.File,
      num_replicas: 3,
    });
    expect(info.config.num_replicas).toBe(3);
    const ack = await jetstream(nc).publish(`${stream}.a`, "replicated");
    expect(ack.seq).toBe(1);
    const full = await waitFor(
      async () => {
        const i = await jsm.streams.info(stream);
        return i.cluster?.leader && i.cluster.replicas?.length === 2 ? i : undefined;
      },
      { message: "R3 stream leader and two replicas" },
    );
    expect(full.cluster?.name).toBe("jetfn-test");
  });

  it("restarts a single node on its own ports", async () => {
    const c = cluster ?? (await startNatsCluster(3));
    cluster = c;
    const node = c.servers[2];
    if (!node) throw new Error("no node 2");
    const { port, url } = node;
    await node.restart();
    expect(node.port).toBe(port);
    expect(node.url).toBe(url);
    await c.waitForJetStream();
  });

  it("stop() stops every node", async () => {
    const c = cluster ?? (await startNatsCluster(3));
    cluster = undefined;
    await c.stop();
    for (const s of c.servers) expect(s.running).toBe(false);
  });
});

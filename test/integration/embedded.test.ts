/**
 * The embedded default: with no NATS_URL and nothing answering, jetfn starts its own
 * nats-server (tested on a free port instead of 4222, which this machine's own server holds).
 */
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { resolveNats } from "../../runtime/nats/embedded.ts";
import { freePort } from "../support/free-port.ts";
import { startNatsServer } from "../support/nats-server.ts";

const silent = pino({ level: "silent" });

describe("resolveNats", () => {
  it("uses NATS_URL when it is set, starting nothing", async () => {
    const endpoint = await resolveNats(["nats://10.0.0.1:4222"], tmpdir(), silent);
    expect(endpoint).toEqual({ servers: ["nats://10.0.0.1:4222"] });
  });

  it("uses the server that answers on the default port", async () => {
    const server = await startNatsServer();
    try {
      const endpoint = await resolveNats(undefined, tmpdir(), silent, { port: server.port });
      expect(endpoint.servers).toEqual([server.url]);
      expect(endpoint.stop).toBeUndefined();
    } finally {
      await server.stop();
    }
  });

  it("starts nats-server -js with its store under .jetfn/nats when nothing answers, and stops it", async () => {
    const root = mkdtempSync(path.join(tmpdir(), "jetfn-embedded-"));
    const port = await freePort();
    const endpoint = await resolveNats(undefined, root, silent, { port });
    expect(endpoint.servers).toEqual([`nats://127.0.0.1:${port}`]);
    const nc = await connect({ servers: endpoint.servers[0] });
    const jsm = await jetstreamManager(nc); // JetStream is on
    await jsm.streams.add({ name: "EMBEDDED", subjects: ["embedded.>"] });
    await nc.close();
    expect(existsSync(path.join(root, ".jetfn", "nats", "jetstream"))).toBe(true);
    await endpoint.stop!();
    await expect(connect({ servers: endpoint.servers[0], reconnect: false, timeout: 500 })).rejects.toThrow();
  });

  it("fails clearly when nothing answers and nats-server is not installed", async () => {
    const port = await freePort();
    await expect(resolveNats(undefined, tmpdir(), silent, { port, binary: "nats-server-not-installed" })).rejects.toThrow(
      `nothing answers on 127.0.0.1:${port} and nats-server-not-installed is not on PATH: install nats-server or set NATS_URL`,
    );
  });
});

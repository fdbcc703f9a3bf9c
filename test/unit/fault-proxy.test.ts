/** The bad-day suite's TCP proxy shaping a link (test/support/fault-proxy.ts), against a local echo server. */
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FaultProxy } from "../support/fault-proxy.ts";

let echo: Server;
let proxy: FaultProxy;

beforeAll(async () => {
  // A connection the proxy closes may reset the echo's end: not this test's concern.
  echo = createServer((socket) => socket.on("error", () => {}).pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
  proxy = await FaultProxy.start({ port: (echo.address() as AddressInfo).port });
});

afterAll(async () => {
  await proxy.close();
  await new Promise((resolve) => echo.close(resolve));
});

/** Sends `bytes` through the proxy and waits for all of them back; the time it took, ms. */
async function roundTrip(bytes: number): Promise<number> {
  const socket: Socket = connect(proxy.port, "127.0.0.1").on("error", () => {});
  await new Promise<void>((resolve) => socket.once("connect", resolve));
  const started = performance.now();
  let received = 0;
  const back = new Promise<void>((resolve) =>
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received >= bytes) resolve();
    }),
  );
  socket.write(Buffer.alloc(bytes, 7));
  await back;
  socket.destroy();
  return performance.now() - started;
}

describe("fault proxy: link shape", () => {
  it("adds its latency each way, and carries no more than its rate", async () => {
    proxy.shape({});
    expect(await roundTrip(10)).toBeLessThan(100);
    proxy.shape({ latencyMs: 150 });
    expect(await roundTrip(10)).toBeGreaterThanOrEqual(300);
    // 60 KB each way at 100 KB/s: at least 0.6 s for the last byte to come back.
    proxy.shape({ bytesPerSecond: 100_000 });
    expect(await roundTrip(60_000)).toBeGreaterThanOrEqual(550);
    proxy.shape({});
    expect(await roundTrip(60_000)).toBeLessThan(300);
  });
});

import type { Server } from "node:net";
import { createServer } from "node:net";

function listenOnEphemeralPort(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => resolve(server));
  });
}

function portOf(server: Server): number {
  const address = server.address();
  if (address === null || typeof address === "string") {
    throw new Error(`unexpected listen address: ${String(address)}`);
  }
  return address.port;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * Finds `count` distinct TCP ports on 127.0.0.1 that are free right now.
 *
 * All the listeners are held open together (so the ports are distinct), then closed and
 * their numbers returned. Another process could take a port before the caller binds it;
 * the window is small enough for tests.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await listenOnEphemeralPort());
    return servers.map(portOf);
  } finally {
    await Promise.all(servers.map(close));
  }
}

/** Finds one TCP port on 127.0.0.1 that is free right now (see {@link freePorts}). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error("freePorts(1) returned no port");
  return port;
}

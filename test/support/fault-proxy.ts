/**
 * A TCP proxy placed between a client (a jetfn host) and a server (nats-server), to fail
 * the network the way production does rather than by killing processes:
 *
 * - {@link FaultProxy.blackhole}: a partition. Every connection stays open and nothing is
 *   forwarded either way: no FIN, no RST, the socket just goes quiet. Connections made
 *   meanwhile are accepted and get nothing either.
 * - {@link FaultProxy.heal}: the partition ends. Connections from before it are closed, as a
 *   real partition's end shows up to both sides (a write that finally fails, a keepalive
 *   that times out), and new ones are forwarded.
 * - {@link FaultProxy.reset}: every connection is reset at once.
 */

import type { AddressInfo } from "node:net";
import { connect, createServer, type Server, type Socket } from "node:net";

interface Pair {
  readonly client: Socket;
  readonly server: Socket;
  /** Made during a blackhole: never forwarded. */
  readonly quiet: boolean;
}

export class FaultProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<Pair>();
  #blackholed = false;

  private constructor(server: Server, target: { host: string; port: number }) {
    this.#server = server;
    this.#target = target;
  }

  /** Listens on a free port of 127.0.0.1 and forwards to `target`. */
  static async start(target: { host?: string; port: number }): Promise<FaultProxy> {
    let proxy!: FaultProxy;
    const server = createServer((client) => proxy.#accept(client));
    proxy = new FaultProxy(server, { host: target.host ?? "127.0.0.1", port: target.port });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** `nats://127.0.0.1:<port>`: what the client behind the proxy connects to. */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#pairs.size;
  }

  get blackholed(): boolean {
    return this.#blackholed;
  }

  blackhole(): void {
    this.#blackholed = true;
    for (const { client, server } of this.#pairs) {
      client.pause();
      server.pause();
    }
  }

  heal(): void {
    this.#blackholed = false;
    for (const pair of [...this.#pairs]) this.#close(pair, false);
  }

  reset(): void {
    for (const pair of [...this.#pairs]) this.#close(pair, true);
  }

  async close(): Promise<void> {
    this.reset();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    const quiet = this.#blackholed;
    const server = connect(this.#target.port, this.#target.host);
    const pair: Pair = { client, server, quiet };
    this.#pairs.add(pair);
    const end = (): void => this.#close(pair, false);
    client.on("error", end).on("close", end);
    server.on("error", end).on("close", end);
    if (quiet) {
      // Accepted, and never answered: the client's handshake times out.
      client.pause();
      server.pause();
      return;
    }
    client.on("data", (chunk: Buffer) => {
      if (!server.write(chunk)) client.pause();
    });
    server.on("data", (chunk: Buffer) => {
      if (!client.write(chunk)) server.pause();
    });
    server.on("drain", () => {
      if (!this.#blackholed) client.resume();
    });
    client.on("drain", () => {
      if (!this.#blackholed) server.resume();
    });
  }

  #close(pair: Pair, reset: boolean): void {
    if (!this.#pairs.delete(pair)) return;
    for (const socket of [pair.client, pair.server]) {
      if (reset) socket.resetAndDestroy();
      else socket.destroy();
    }
  }
}

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
 * - {@link FaultProxy.shape}: a slow link. Each direction delays every byte by `latencyMs`
 *   and carries at most `bytesPerSecond`, in order; this kernel has no netem, so the link's
 *   shape lives here. `shape({})` makes it a plain link again.
 */

import type { AddressInfo } from "node:net";
import { connect, createServer, type Server, type Socket } from "node:net";

interface Pair {
  readonly client: Socket;
  readonly server: Socket;
  /** Made during a blackhole: never forwarded. */
  readonly quiet: boolean;
  /** Client to server, and back. */
  readonly up: Link;
  readonly down: Link;
}

/** How a link carries bytes: each direction the same. */
export interface LinkShape {
  /** Added to every byte's trip, each way. */
  readonly latencyMs?: number;
  /** At most this many bytes a second, each way. */
  readonly bytesPerSecond?: number;
}

/** Bytes held in a direction's queue before its sender is paused. */
const QUEUE_HIGH_BYTES = 256 * 1024;

/**
 * One direction of a connection: chunks leave in order, each once the link has carried all
 * of its bytes (at `bytesPerSecond`, after the chunks before it) and `latencyMs` more. The
 * sending socket is paused while the queue is long, as a full link would slow it.
 */
class Link {
  readonly #from: Socket;
  readonly #to: Socket;
  readonly #shape: () => LinkShape;
  /** A blackhole holds what is queued too (the pair is closed when it heals). */
  readonly #held: () => boolean;
  /** Each chunk with when it leaves (performance.now() ms). */
  readonly #queue: { chunk: Buffer; leaves: number }[] = [];
  #queued = 0;
  /** When the link has carried every byte queued so far, ms. */
  #freeAt = 0;
  #timer?: NodeJS.Timeout;

  constructor(from: Socket, to: Socket, shape: () => LinkShape, held: () => boolean) {
    this.#from = from;
    this.#to = to;
    this.#shape = shape;
    this.#held = held;
  }

  send(chunk: Buffer): void {
    const { latencyMs = 0, bytesPerSecond } = this.#shape();
    if (latencyMs === 0 && bytesPerSecond === undefined && this.#queue.length === 0) {
      if (!this.#to.write(chunk)) this.#from.pause();
      return;
    }
    const carried = Math.max(performance.now(), this.#freeAt) + (bytesPerSecond ? (chunk.length / bytesPerSecond) * 1000 : 0);
    this.#freeAt = carried;
    this.#queue.push({ chunk, leaves: carried + latencyMs });
    this.#queued += chunk.length;
    if (this.#queued > QUEUE_HIGH_BYTES) this.#from.pause();
    this.#pump();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#queue.length = 0;
  }

  #pump(): void {
    if (this.#timer || this.#held()) return;
    const now = performance.now();
    while (this.#queue.length > 0) {
      const { chunk, leaves } = this.#queue[0]!;
      if (leaves > now) {
        this.#timer = setTimeout(
          () => {
            this.#timer = undefined;
            this.#pump();
          },
          Math.ceil(leaves - now),
        );
        return;
      }
      this.#queue.shift();
      this.#queued -= chunk.length;
      this.#to.write(chunk);
    }
    if (this.#queued <= QUEUE_HIGH_BYTES / 2) this.#from.resume();
  }
}

export class FaultProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<Pair>();
  #blackholed = false;
  #shape: LinkShape = {};

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

  /** From now on, every byte each way is delayed by `latencyMs` and carried at most at `bytesPerSecond`. */
  shape(shape: LinkShape): void {
    this.#shape = shape;
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
    const shape = () => this.#shape;
    const held = () => this.#blackholed;
    const pair: Pair = { client, server, quiet, up: new Link(client, server, shape, held), down: new Link(server, client, shape, held) };
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
    client.on("data", (chunk: Buffer) => pair.up.send(chunk));
    server.on("data", (chunk: Buffer) => pair.down.send(chunk));
    server.on("drain", () => {
      if (!this.#blackholed) client.resume();
    });
    client.on("drain", () => {
      if (!this.#blackholed) server.resume();
    });
  }

  #close(pair: Pair, reset: boolean): void {
    if (!this.#pairs.delete(pair)) return;
    pair.up.stop();
    pair.down.stop();
    for (const socket of [pair.client, pair.server]) {
      if (reset) socket.resetAndDestroy();
      else socket.destroy();
    }
  }
}

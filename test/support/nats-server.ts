/**
 * Test launcher for a real `nats-server` (JetStream enabled), modelled on nats.js's
 * `test_helpers/launcher.ts`. Each server gets its own temporary folder holding the store,
 * the ports file and `nats.log`. Tests never skip: a missing `nats-server` is an error.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { type SpawnedChild, spawnChild } from "../../runtime/child-process.ts";
import { FaultProxy } from "./fault-proxy.ts";
import { freePorts } from "./free-port.ts";
import { waitFor } from "./wait-for.ts";

/** How long a server may take to write its ports file and accept TCP connections. */
const STARTUP_TIMEOUT_MS = 10_000;
/** How long `stop()` waits after SIGTERM before it falls back to SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;
/** How long a cluster may take to elect a JetStream meta leader. */
const CLUSTER_READY_TIMEOUT_MS = 20_000;
const NATS_SERVER_BIN = "nats-server";

/** Options for {@link startNatsServer}. */
export interface StartNatsServerOptions {
  /** Extra command-line arguments, appended after the launcher's own. */
  args?: string[];
  /** Server configuration text; written to `<tmpdir>/server.conf` and passed with `-c`. */
  configText?: string;
  /** JetStream store folder to use instead of `<tmpdir>/store` (it is never deleted). */
  storeDir?: string;
}

/** A running (or stopped) `nats-server` child process. */
export interface NatsServer {
  /** Client URL, `nats://127.0.0.1:PORT`. Stable across {@link NatsServer.restart}. */
  readonly url: string;
  /** Client port. Stable across {@link NatsServer.restart}. */
  readonly port: number;
  /** JetStream store folder (`-sd`). Stable across {@link NatsServer.restart}. */
  readonly storeDir: string;
  /** The server's temporary folder (ports file, `server.conf`, `nats.log`). */
  readonly dir: string;
  /** File receiving the server's stdout and stderr, across restarts. */
  readonly logFile: string;
  /** Process id of the current (or most recent) server process. */
  readonly pid: number;
  /** Whether the server process is currently running. */
  readonly running: boolean;
  /** Sends SIGTERM and waits for the process to exit (SIGKILL after 10 s). No-op if not running. */
  stop(): Promise<void>;
  /** Sends SIGKILL and waits for the process to exit. No-op if not running. */
  kill(): Promise<void>;
  /** Stops the server if running, then starts it again on the same port and store and waits until it is ready. */
  restart(): Promise<void>;
}

/** A JetStream cluster of `nats-server` processes, see {@link startNatsCluster}. */
export interface NatsCluster {
  /** The nodes, `node0` first. Each can be stopped, killed and restarted on its own ports. */
  readonly servers: NatsServer[];
  /** Client URLs of all nodes, in the same order as {@link NatsCluster.servers}. */
  readonly urls: string[];
  /**
   * Waits until every running node answers a JetStream account info request (so a meta
   * leader is elected and known). Useful after restarting nodes.
   */
  waitForJetStream(timeoutMs?: number): Promise<void>;
  /**
   * With `partitionable`: cuts node `i` off from the other nodes (its routes blackholed;
   * clients still reach it), or ends every such cut. Absent otherwise.
   */
  cutOff?(i: number): void;
  mend?(): void;
  /** Stops every node. */
  stop(): Promise<void>;
}

export interface StartNatsClusterOptions {
  /**
   * Every route between two nodes goes through a fault proxy of its own (and nodes
   * advertise a cluster address nobody listens on, so gossip cannot route around them):
   * {@link NatsCluster.cutOff} can then isolate a node from the others.
   */
  readonly partitionable?: boolean;
}

// ---------------------------------------------------------------------------------------
// Process-exit cleanup: no server outlives the test worker.

const liveChildren = new Set<SpawnedChild>();
const tempDirs = new Set<string>();
let cleanupInstalled = false;

function killAllNow(): void {
  for (const child of liveChildren) {
    try {
      child.process.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
}

function removeTempDirsNow(): void {
  if (process.env.JETFN_KEEP_NATS_TMP) return;
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
  tempDirs.clear();
}

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on("exit", () => {
    killAllNow();
    removeTempDirsNow();
  });
  // A signal's default action skips 'exit' hooks: kill the servers, then let the signal
  // take its normal course unless someone else handles it.
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    const onSignal = (): void => {
      killAllNow();
      removeTempDirsNow();
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

// ---------------------------------------------------------------------------------------

function logTail(logFile: string, maxBytes = 4096): string {
  try {
    const text = readFileSync(logFile, "utf8");
    const tail = text.length > maxBytes ? text.slice(-maxBytes) : text;
    return tail.trimEnd() || "(log is empty)";
  } catch (err) {
    return `(no log: ${err instanceof Error ? err.message : String(err)})`;
  }
}

function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port });
    const done = (ok: boolean): void => {
      socket.removeAllListeners();
      socket.on("error", () => {});
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** Reads the client port from `<dir>/<exe>_<pid>.ports`, or undefined if not written yet. */
function readPortsFile(dir: string, pid: number): number | undefined {
  const name = readdirSync(dir).find((f) => f.endsWith(`_${pid}.ports`));
  if (name === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(join(dir, name), "utf8"));
  } catch {
    return undefined; // partially written
  }
  const urls = (parsed as { nats?: unknown }).nats;
  if (!Array.isArray(urls) || typeof urls[0] !== "string") return undefined;
  const port = Number(new URL(urls[0]).port);
  return Number.isInteger(port) && port > 0 ? port : undefined;
}

interface ServerSpec {
  dir: string;
  storeDir: string;
  /** Client port; -1 lets the server pick one (first start only). */
  port: number;
  configFile?: string;
  extraArgs: string[];
}

class NatsServerProcess implements NatsServer {
  readonly dir: string;
  readonly storeDir: string;
  readonly logFile: string;
  #spec: ServerSpec;
  #port = -1;
  #pid = -1;
  #child: SpawnedChild | undefined;
  #exited: Promise<void> = Promise.resolve();

  constructor(spec: ServerSpec) {
    this.#spec = spec;
    this.dir = spec.dir;
    this.storeDir = spec.storeDir;
    this.logFile = join(spec.dir, "nats.log");
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get port(): number {
    return this.#port;
  }

  get pid(): number {
    return this.#pid;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Spawns the process and waits until it accepts TCP connections. */
  async start(): Promise<void> {
    if (this.#child) throw new Error(`nats-server ${this.url} is already running`);
    const port = this.#port > 0 ? this.#port : this.#spec.port;
    const args = [
      "-a",
      "127.0.0.1",
      "-p",
      String(port),
      "-js",
      "-sd",
      this.storeDir,
      "--ports_file_dir",
      this.dir,
      ...(this.#spec.configFile ? ["-c", this.#spec.configFile] : []),
      ...this.#spec.extraArgs,
    ];
    const child = await this.#spawn(args);
    try {
      await this.#waitReady(child, args);
    } catch (err) {
      await this.kill();
      throw err;
    }
  }

  async #spawn(args: string[]): Promise<SpawnedChild> {
    installCleanup();
    // Its own folder as the working directory: nats-server 2.9 can drop files (a
    // consumer's meta.inf) into its cwd around leader changes.
    const child = spawnChild(NATS_SERVER_BIN, args, { cwd: this.dir, logFile: this.logFile });
    try {
      await child.spawned;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new Error("nats-server not found on PATH: install it (apt-get install -y nats-server) — tests never skip", { cause: err });
      }
      throw err;
    }
    const pid = child.pid;
    if (pid === undefined) throw new Error("nats-server spawned without a pid");
    this.#child = child;
    this.#pid = pid;
    liveChildren.add(child);
    this.#exited = child.exited.then(() => {
      liveChildren.delete(child);
      if (this.#child === child) this.#child = undefined;
    });
    return child;
  }

  async #waitReady(child: SpawnedChild, args: string[]): Promise<void> {
    const pid = child.pid as number;
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    const fail = (why: string): Error =>
      new Error(
        `nats-server (pid ${pid}) ${why}\ncommand: ${NATS_SERVER_BIN} ${args.join(" ")}\n` +
          `log ${this.logFile}:\n${logTail(this.logFile)}`,
      );
    let port: number | undefined;
    for (;;) {
      if (this.#child !== child) {
        throw fail(`exited during startup (code ${child.process.exitCode}, signal ${child.process.signalCode})`);
      }
      if (port === undefined) {
        port = readPortsFile(this.dir, pid);
        if (port !== undefined) {
          if (this.#port > 0 && port !== this.#port) {
            throw fail(`came up on port ${port} instead of ${this.#port}`);
          }
          this.#port = port;
        }
      }
      if (port !== undefined && (await tcpAccepts(port))) return;
      if (Date.now() >= deadline) {
        throw fail(
          `not ready after ${STARTUP_TIMEOUT_MS} ms (${port === undefined ? "no ports file" : `port ${port} refuses connections`})`,
        );
      }
      await sleep(25);
    }
  }

  async stop(): Promise<void> {
    await this.#child?.stop(STOP_TIMEOUT_MS);
    await this.#exited;
  }

  async kill(): Promise<void> {
    await this.#child?.kill();
    await this.#exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

function makeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "jetfn-nats-"));
  tempDirs.add(dir);
  return dir;
}

/**
 * Starts `nats-server -a 127.0.0.1 -p -1 -js -sd <tmpdir>/store --ports_file_dir <tmpdir>`
 * (plus `-c <tmpdir>/server.conf` when `configText` is given, plus `args`) and waits until
 * it accepts connections. Its output goes to `<tmpdir>/nats.log`.
 *
 * @throws if `nats-server` is not on PATH, or it is not ready within 10 s (the error
 * carries the log's tail).
 */
export async function startNatsServer(opts: StartNatsServerOptions = {}): Promise<NatsServer> {
  return launch(-1, opts);
}

async function launch(port: number, opts: StartNatsServerOptions): Promise<NatsServerProcess> {
  const dir = makeTempDir();
  const storeDir = opts.storeDir ?? join(dir, "store");
  let configFile: string | undefined;
  if (opts.configText !== undefined) {
    configFile = join(dir, "server.conf");
    writeFileSync(configFile, opts.configText);
  }
  const server = new NatsServerProcess({
    dir,
    storeDir,
    port,
    extraArgs: opts.args ?? [],
    ...(configFile ? { configFile } : {}),
  });
  await server.start();
  return server;
}

async function jetStreamAnswers(url: string): Promise<boolean> {
  const nc = await connect({ servers: url, reconnect: false, timeout: 2000 });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 2000, checkAPI: false });
    await jsm.getAccountInfo();
    return true;
  } finally {
    await nc.close();
  }
}

/**
 * Whether the cluster places a stream on `replicas` peers: the meta leader answering is not
 * enough, it may not know every peer yet ("no suitable peers for placement").
 */
async function placesReplicatedStream(url: string, replicas: number): Promise<boolean> {
  const nc = await connect({ servers: url, reconnect: false, timeout: 2000 });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 2000, checkAPI: false });
    const name = `JETFN_PROBE_${Math.random().toString(36).slice(2, 10)}`;
    await jsm.streams.add({ name, subjects: [`_jetfn_probe.${name}`], num_replicas: replicas, storage: StorageType.Memory });
    await jsm.streams.delete(name);
    return true;
  } finally {
    await nc.close();
  }
}

/**
 * Starts a `size`-node JetStream cluster on 127.0.0.1 (`node0`… with cluster name
 * `jetfn-test`), each node with its own store and fixed client and cluster ports, so a
 * node restarted alone comes back on the same ports. Resolves once every node accepts
 * connections and answers a JetStream request (a meta leader is elected), within 20 s.
 */
export async function startNatsCluster(size = 3, options: StartNatsClusterOptions = {}): Promise<NatsCluster> {
  if (!Number.isInteger(size) || size < 1) throw new Error(`invalid cluster size ${size}`);
  // A port found free can be taken before its node binds it (by a fault proxy's own
  // listener, or another test file): the whole cluster starts again on fresh ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startClusterOnce(size, options);
    } catch (error) {
      if (attempt >= 3 || !String((error as Error).message).includes("address already in use")) throw error;
    }
  }
}

async function startClusterOnce(size: number, options: StartNatsClusterOptions): Promise<NatsCluster> {
  const ports = await freePorts(size * 2 + 1);
  const clientPorts = ports.slice(0, size);
  const clusterPorts = ports.slice(size, size * 2);
  const nowhere = ports[size * 2]!;
  const routeUrl = (p: number | undefined): string => `nats://127.0.0.1:${p}`;
  /** `from->to`: the proxy node `from` reaches node `to`'s cluster port through. */
  const proxies = new Map<string, FaultProxy>();
  if (options.partitionable) {
    for (let from = 0; from < size; from++) {
      for (let to = 0; to < size; to++) if (from !== to) proxies.set(`${from}->${to}`, await FaultProxy.start({ port: clusterPorts[to]! }));
    }
  }
  const started = await Promise.allSettled(
    clientPorts.map((clientPort, i) => {
      const routes = clusterPorts.flatMap((port, j) => (j === i ? [] : [routeUrl(proxies.get(`${i}->${j}`)?.port ?? port)]));
      const args = [
        "-n",
        `node${i}`,
        "--cluster_name",
        "jetfn-test",
        "--cluster",
        routeUrl(clusterPorts[i]),
        ...(routes.length > 0 ? ["--routes", routes.join(",")] : []),
        ...(options.partitionable ? ["--cluster_advertise", `127.0.0.1:${nowhere}`] : []),
      ];
      return launch(clientPort, { args });
    }),
  );
  const servers = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all([...proxies.values()].map((proxy) => proxy.close()));
  };
  const failure = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failure) {
    await stop();
    throw failure.reason;
  }
  const cluster: NatsCluster = {
    servers,
    urls: servers.map((s) => s.url),
    stop,
    ...(options.partitionable
      ? {
          cutOff(i: number): void {
            for (const [pair, proxy] of proxies) if (pair.startsWith(`${i}->`) || pair.endsWith(`->${i}`)) proxy.blackhole();
          },
          mend(): void {
            for (const proxy of proxies.values()) proxy.heal();
          },
        }
      : {}),
    async waitForJetStream(timeoutMs = CLUSTER_READY_TIMEOUT_MS): Promise<void> {
      const running = servers.filter((s) => s.running);
      await Promise.all(
        running.map((s) =>
          waitFor(() => jetStreamAnswers(s.url), {
            timeout: timeoutMs,
            interval: 100,
            message: `cluster node ${s.url} did not answer JetStream requests (no meta leader?)`,
          }).catch((err: unknown) => {
            const text = err instanceof Error ? err.message : String(err);
            throw new Error(`${text}\nlog ${s.logFile}:\n${logTail(s.logFile, 2048)}`, { cause: err });
          }),
        ),
      );
      if (running.length > 1) {
        await waitFor(() => placesReplicatedStream(running[0]!.url, running.length), {
          timeout: timeoutMs,
          interval: 100,
          message: `the cluster did not place an R${running.length} stream (peers not known to the meta leader?)`,
        });
      }
    },
  };
  try {
    await cluster.waitForJetStream();
  } catch (err) {
    await stop();
    throw err;
  }
  return cluster;
}

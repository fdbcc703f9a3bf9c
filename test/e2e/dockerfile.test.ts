/**
 * What the Dockerfile does, without a Docker engine: each stage replayed in a clean folder of
 * its own (the build stage installs dev dependencies and bundles; the final stage installs
 * production dependencies and takes the bundles with `COPY --from=build`), then the final
 * stage's CMD started against a nats-server, as PID 1 of a new PID namespace where one can
 * be made (as in a container: the kernel delivers a signal to PID 1 only if it handles it).
 * Its HEALTHCHECK runs against it, and SIGTERM drains while a second SIGTERM ends at once.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config/load.ts";
import { type ReplayedStage, replayDockerfile } from "../support/dockerfile.ts";
import { freePorts } from "../support/free-port.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
import { client, REPO_ROOT } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

let server: NatsServer;
let root: string | undefined;
let build: ReplayedStage;
let image: ReplayedStage;
const running: Container[] = [];

/** `unshare` arguments that make the command PID 1 of a new PID namespace, if this machine allows one. */
const pidNamespace: string[] | undefined = [
  ["--pid", "--fork", "--kill-child"],
  ["--user", "--map-root-user", "--pid", "--fork", "--kill-child"], // without root, where user namespaces are allowed
]
  .map((flags) => ["unshare", ...flags, "--"])
  .find((prefix) => spawnSync(prefix[0]!, [...prefix.slice(1), "true"], { stdio: "ignore" }).status === 0);

beforeAll(async () => {
  server = await startNatsServer();
  const replayed = replayDockerfile(path.join(REPO_ROOT, "Dockerfile"), REPO_ROOT);
  root = replayed.root;
  const stages = replayed.stages;
  expect(stages.map((s) => s.name)).toEqual(["build", undefined]);
  [build, image] = stages as [ReplayedStage, ReplayedStage];
}, 180_000);

afterAll(async () => {
  for (const container of running) container.kill();
  await server?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** The final stage's CMD as a running process: `pid` is the node process to signal. */
interface Container {
  readonly pid: number;
  readonly httpPort: number;
  readonly ingressPort: number;
  output(): string;
  readonly exited: Promise<number | string>;
  kill(): void;
}

async function run(env: Record<string, string> = {}): Promise<Container> {
  const [httpPort, ingressPort] = await freePorts(2);
  const argv = [...(pidNamespace ?? []), ...image.cmd!];
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), {
    cwd: image.dir,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      ...image.env,
      NATS_URL: server.url,
      JETFN_HTTP_HOST: "127.0.0.1",
      JETFN_HTTP_PORT: String(httpPort),
      // Once functions.yaml has routes, the ingress listens too: not on a port shared with other tests.
      JETFN_INGRESS_HOST: "127.0.0.1",
      JETFN_INGRESS_PORT: String(ingressPort),
      LOG_LEVEL: "debug",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  // Under unshare, node is unshare's child: PID 1 inside, an ordinary pid out here.
  const pid = pidNamespace
    ? Number(
        await waitFor(() => readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim().split(/\s+/)[0], {
          message: "node started under unshare",
        }),
      )
    : child.pid!;
  const container: Container = {
    pid,
    httpPort: httpPort!,
    ingressPort: ingressPort!,
    output: () => out,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL"); // --kill-child takes node along
    },
  };
  running.push(container);
  if (pidNamespace) expect(readFileSync(`/proc/${pid}/status`, "utf8")).toMatch(/^NSpid:\s+\d+\s+1$/m);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status === 200, { timeout: 30_000 }).catch(
    (error: Error) => {
      throw new Error(`${error.message}\n${out}`);
    },
  );
  return container;
}

/** The image's HEALTHCHECK command, run as Docker would beside the running CMD; resolves with its exit status. */
function healthcheck(httpPort: number): number {
  const [file, ...args] = image.healthcheck!;
  try {
    execFileSync(file!, args, {
      cwd: image.dir,
      env: { PATH: process.env.PATH ?? "", ...image.env, JETFN_HTTP_PORT: String(httpPort) },
      stdio: "pipe",
      timeout: 10_000,
    });
    return 0;
  } catch (error) {
    return (error as { status: number | null }).status ?? -1;
  }
}

/** Every file under `dir` but node_modules, with its size and modification time. */
function listing(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === "node_modules" && dir === base ? [] : listing(file, base);
    const stat = statSync(file);
    return [`${path.relative(base, file)} ${stat.size} ${stat.mtimeMs}`];
  });
}

async function publishOrder(orderId: string): Promise<void> {
  const { nc, js } = await client(server.url);
  try {
    await js.publish("orders.created", JSON.stringify({ orderId, customerId: "c-1", amount: 5 }));
  } finally {
    await nc.close();
  }
}

describe("the build stage", () => {
  it("bundles the runtime and every handler with the dev dependencies installed", () => {
    const config = loadConfig(path.join(build.dir, "functions.yaml"));
    for (const file of ["cli.mjs", "worker.mjs"]) expect(statSync(path.join(build.dir, ".jetfn", "runtime", file)).isFile()).toBe(true);
    for (const fn of config.functions) expect(statSync(path.join(build.dir, ".jetfn", "build", `${fn.name}.json`)).isFile()).toBe(true);
    execFileSync("npm", ["ls", "vitest", "typescript"], { cwd: build.dir, stdio: "pipe" });
  });
});

describe("the final stage", () => {
  it("has production dependencies only, runs as node, and starts with node itself as the process", () => {
    expect(() => execFileSync("npm", ["ls", "vitest", "typescript"], { cwd: image.dir, stdio: "pipe" })).toThrow();
    expect(image.env.NODE_ENV).toBe("production");
    expect(image.user).toBe("node");
    // Exec form with node first: no shell or npm in between to swallow SIGTERM.
    expect(image.cmd).toEqual(["node", "bin/jetfn.js", "start"]);
    expect(image.healthcheck?.[0]).toBe("node");
  });

  it("reuses the build stage's bundles, runs the shipped functions, is healthy, and drains on SIGTERM", async () => {
    const before = listing(image.dir);
    const container = await run();
    try {
      // Each function's bundle comes from the build stage: nothing is bundled at run time.
      const functions = loadConfig(path.join(image.dir, "functions.yaml")).functions;
      const loaded = container
        .output()
        .split("\n")
        .filter((line) => line.includes('"msg":"handler loaded"'))
        .map((line) => JSON.parse(line) as { function: string; reused: boolean });
      expect(
        loaded
          .filter((l) => l.reused)
          .map((l) => l.function)
          .sort(),
      ).toEqual(functions.map((f) => f.name).sort());
      expect(container.output()).not.toMatch(/"reused":false/);
      expect(healthcheck(container.httpPort)).toBe(0);

      // The quick start's first event: POST /orders on the ingress port.
      const placed = await fetch(`http://127.0.0.1:${container.ingressPort}/orders`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ orderId: "o-1", customerId: "c-1", amount: 5 }),
      });
      expect(placed.status).toBe(202);
      await waitFor(() => container.output().includes("notified customer"), { timeout: 20_000 });
      expect(listing(image.dir)).toEqual(before); // nothing written into the image's folder

      process.kill(container.pid, "SIGTERM");
      expect(await container.exited).toBe(0);
      expect(container.output()).toContain('"msg":"stopped"');
      expect(healthcheck(container.httpPort)).not.toBe(0);
    } finally {
      container.kill();
    }
  });

  it("ends at once, exit 1, on a second SIGTERM while the drain is stuck on a trace collector that never answers", async () => {
    // The drain's last step flushes traces, waiting up to 3 s: long enough to be caught in it.
    const requests: number[] = [];
    const collector: Server = createServer((req) => {
      requests.push(Date.now());
      req.resume(); // and never answers
    });
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    const { port } = collector.address() as { port: number };
    const container = await run({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` });
    try {
      await publishOrder("o-2");
      await waitFor(() => container.output().includes("notified customer"), { timeout: 20_000 });

      process.kill(container.pid, "SIGTERM");
      await waitFor(() => container.output().includes("signal received") && requests.length > 0, {
        message: "the drain reached the trace export",
      });
      const second = Date.now();
      process.kill(container.pid, "SIGTERM");
      expect(await container.exited).toBe(1);
      expect(Date.now() - second).toBeLessThan(1500);
      expect(container.output()).toContain("second signal: exiting now");
      expect(container.output()).not.toContain('"msg":"stopped"');
    } finally {
      container.kill();
      collector.closeAllConnections();
      await new Promise((resolve) => collector.close(resolve));
    }
  });
});

/**
 * NATS authentication from the environment, each method against a nats-server configured to
 * require it: user/password, token, nkey seed, a `.creds` file (operator/JWT mode) and TLS
 * with a client certificate. Wrong credentials fail start-up quickly with one clear line;
 * a planted canary secret never shows in logs, /metrics, dead letters or CLI output.
 */

import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  nkeyAuthenticator,
  nkeys,
} from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { HANDSHAKE_TIMEOUT_MS } from "../../runtime/nats/connect.ts";
import { makeOperatorCreds, makeTlsFiles, type OperatorCreds, type TlsFiles, tempDir } from "../support/auth-fixtures.ts";
import { runCli } from "../support/cli.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
import { createHost, type LogCapture, makeProject, startHost } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const CANARY = "canary-SECRET-1234";
/** How long a start with wrong credentials may take before it counts as hanging. */
const FAIL_FAST_MS = 5_000;

/** The handlers are in test/fixtures/auth/methods/fns/. */
const files: Record<string, string> = {
  "functions.yaml": `
streams:
  - { name: EVT, subjects: ["evt.>"], storage: memory }
  - { name: OUT, subjects: ["out.>"], storage: memory }
functions:
  - { name: echo, handler: fns/echo.ts, stream: EVT, subjects: [evt.echo], output: out.echo }
  - { name: fatal, handler: fns/fatal.ts, stream: EVT, subjects: [evt.fatal], retry: { maxAttempts: 1 } }
`,
};

let project: string;
let scratch: { dir: string; remove: () => void };
let tls: TlsFiles;
let operator: OperatorCreds;
const servers: NatsServer[] = [];

beforeAll(async () => {
  project = makeProject(files, { fixtures: "auth/methods" });
  scratch = tempDir("jetfn-auth-");
  tls = makeTlsFiles(scratch.dir);
  operator = await makeOperatorCreds(scratch.dir);
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  scratch?.remove();
});

async function server(configText: string): Promise<NatsServer> {
  const started = await startNatsServer({ configText });
  servers.push(started);
  return started;
}

/** A client that does not authenticate at all is turned away: the server really requires auth. */
async function expectAnonymousRejected(url: string, extra: Partial<NodeConnectionOptions> = {}): Promise<void> {
  await expect(connect({ servers: url, reconnect: false, timeout: 3000, ...extra })).rejects.toThrow();
}

/**
 * Starts a host with `env` against `url`, and has the test's own client (authenticated with
 * `auth`) publish an event that the host's function turns into an output.
 */
async function roundTrip(url: string, env: Record<string, string>, auth: Partial<NodeConnectionOptions>): Promise<LogCapture> {
  const { host, logs, baseUrl } = await startHost(project, url, env);
  let nc: NatsConnection | undefined;
  try {
    await waitFor(async () => (await fetch(`${baseUrl}/readyz`)).status === 200, { message: "/readyz 200" });
    nc = await connect({ servers: url, reconnect: false, timeout: 5000, ...auth });
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const n = Math.floor(Math.random() * 1e9);
    const { seq } = await js.publish("evt.echo", JSON.stringify({ n }));
    const out = await waitFor(
      async () => {
        const msg = await jsm.streams.getMessage("OUT", { last_by_subj: "out.echo" });
        return msg?.json<{ n: number }>().n === n ? msg : null;
      },
      { message: "the host's output for the published event" },
    );
    expect(out.json()).toEqual({ n, echoed: true });
    expect(out.header.get("Nats-Msg-Id")).toBe(`echo:EVT:${seq}`);
    return logs;
  } finally {
    await nc?.close();
    await host.shutdown();
  }
}

/** Creates and starts a host that is expected to fail; returns the error, its logs and how long it took. */
async function failedStart(
  url: string,
  env: Record<string, string>,
  limitMs = FAIL_FAST_MS,
): Promise<{ error: Error; logs: LogCapture; ms: number; host: Host }> {
  const { host, logs } = await createHost(project, url, env);
  const started = Date.now();
  const error = await Promise.race([
    host.start().then(
      () => new Error("start() succeeded with wrong credentials"),
      (err: unknown) => err as Error,
    ),
    new Promise<Error>((resolve) => setTimeout(() => resolve(new Error(`start() still pending after ${limitMs} ms`)), limitMs).unref()),
  ]);
  const ms = Date.now() - started;
  await host.shutdown();
  return { error, logs, ms, host };
}

function everything(logs: LogCapture): string {
  return logs.lines.map((line) => JSON.stringify(line)).join("\n");
}

describe("each auth method against a server that requires it", () => {
  it("user and password", async () => {
    const s = await server(`authorization { user: jetfn, password: "pw-${CANARY}" }\n`);
    await expectAnonymousRejected(s.url);
    await expectAnonymousRejected(s.url, { user: "jetfn", pass: "wrong" });
    const logs = await roundTrip(s.url, { NATS_USER: "jetfn", NATS_PASSWORD: `pw-${CANARY}` }, { user: "jetfn", pass: `pw-${CANARY}` });
    expect(everything(logs)).not.toContain(CANARY);
  });

  it("token", async () => {
    const s = await server(`authorization { token: "tok-${CANARY}" }\n`);
    await expectAnonymousRejected(s.url);
    const logs = await roundTrip(s.url, { NATS_TOKEN: `tok-${CANARY}` }, { token: `tok-${CANARY}` });
    expect(everything(logs)).not.toContain(CANARY);
  });

  it("nkey seed", async () => {
    const user = nkeys.createUser();
    const seed = new TextDecoder().decode(user.getSeed());
    expect(seed).toMatch(/^SU/);
    const s = await server(`authorization { users: [ { nkey: ${user.getPublicKey()} } ] }\n`);
    await expectAnonymousRejected(s.url);
    await expectAnonymousRejected(s.url, { authenticator: nkeyAuthenticator(nkeys.createUser().getSeed()) });
    const logs = await roundTrip(s.url, { NATS_NKEY_SEED: seed }, { authenticator: nkeyAuthenticator(user.getSeed()) });
    expect(everything(logs)).not.toContain(seed);
  });

  it("creds file (operator/JWT mode, JetStream-enabled account)", async () => {
    const s = await server(operator.serverConfig);
    await expectAnonymousRejected(s.url);
    const creds = readFileSync(operator.credsFile);
    const seed = /SU[A-Z2-7]+/.exec(creds.toString())![0];
    const logs = await roundTrip(s.url, { NATS_CREDS: operator.credsFile }, { authenticator: credsAuthenticator(creds) });
    expect(everything(logs)).not.toContain(seed);
  });

  it("TLS with a CA and a client certificate (server verifies it)", async () => {
    const s = await server(tls.serverConfig);
    const url = `tls://127.0.0.1:${s.port}`;
    // No client certificate: the server's verify: true turns the client away.
    await expectAnonymousRejected(url, { tls: { caFile: tls.ca } });
    await roundTrip(
      url,
      { NATS_TLS_CA: tls.ca, NATS_TLS_CERT: tls.clientCert, NATS_TLS_KEY: tls.clientKey },
      { tls: { caFile: tls.ca, certFile: tls.clientCert, keyFile: tls.clientKey } },
    );
    // A plain nats:// URL works too: the client upgrades when the server requires TLS.
    await roundTrip(
      s.url,
      { NATS_TLS_CA: tls.ca, NATS_TLS_CERT: tls.clientCert, NATS_TLS_KEY: tls.clientKey },
      { tls: { caFile: tls.ca, certFile: tls.clientCert, keyFile: tls.clientKey } },
    );
  });
});

describe("wrong credentials fail start-up", () => {
  let userServer: NatsServer;
  let tokenServer: NatsServer;

  beforeAll(async () => {
    userServer = await server(`authorization { user: jetfn, password: "right-password" }\n`);
    tokenServer = await server(`authorization { token: "right-token" }\n`);
  });

  it("wrong password: start() rejects fast, naming the server and the auth failure, without the secret", async () => {
    const { error, logs, ms, host } = await failedStart(userServer.url, { NATS_USER: "jetfn", NATS_PASSWORD: CANARY });
    expect(error.message).toBe(
      `cannot connect to NATS at ${userServer.url}: authorization failed (server said: Authorization Violation); check NATS_USER/NATS_PASSWORD`,
    );
    expect(error.message).not.toContain(CANARY);
    expect(ms).toBeLessThan(FAIL_FAST_MS);
    expect(host.state).toBe("failed");
    expect(everything(logs)).not.toContain(CANARY);
  });

  it("wrong token: start() rejects fast, naming the server and the auth failure, without the secret", async () => {
    const { error, logs, ms } = await failedStart(tokenServer.url, { NATS_TOKEN: CANARY });
    expect(error.message).toContain(`127.0.0.1:${tokenServer.port}`);
    expect(error.message).toMatch(/authorization failed .*; check NATS_TOKEN$/);
    expect(error.message).not.toContain(CANARY);
    expect(ms).toBeLessThan(FAIL_FAST_MS);
    expect(everything(logs)).not.toContain(CANARY);
  });

  it("a password inside NATS_URL is not echoed when the connection fails", async () => {
    const url = `nats://jetfn:${CANARY}@127.0.0.1:${userServer.port}`;
    const { error, logs } = await failedStart(url, {});
    expect(error.message).toContain(`nats://***@127.0.0.1:${userServer.port}`);
    expect(error.message).not.toContain(CANARY);
    expect(everything(logs)).not.toContain(CANARY);
  });

  it("TLS without a client certificate: start() rejects fast against a server that verifies one", async () => {
    const s = await server(tls.serverConfig);
    // TLS 1.3: the client's handshake completes before the server refuses the missing
    // certificate and hangs up, so nats.js only notices at its handshake timeout.
    const limit = HANDSHAKE_TIMEOUT_MS + 3_000;
    const { error, ms } = await failedStart(`tls://127.0.0.1:${s.port}`, { NATS_TLS_CA: tls.ca }, limit);
    expect(error.message).toBe(
      `cannot connect to NATS at tls://127.0.0.1:${s.port}: no NATS handshake within ${HANDSHAKE_TIMEOUT_MS / 1000}s ` +
        "(the server accepted the connection but closed it or did not answer; if it requires a client certificate, " +
        "check NATS_TLS_CERT/NATS_TLS_KEY and NATS_TLS_CA)",
    );
    expect(ms).toBeLessThan(limit);
  });

  it("jetfn start exits 1 with one clear line, and never prints the secret", async () => {
    const cli = runCli(["start"], {
      NATS_URL: userServer.url,
      NATS_USER: "jetfn",
      NATS_PASSWORD: CANARY,
      JETFN_CONFIG: path.join(project, "functions.yaml"),
      JETFN_HTTP_HOST: "127.0.0.1",
      JETFN_HTTP_PORT: "0",
    });
    const code = await Promise.race([
      cli.exited,
      new Promise<string>((resolve) => setTimeout(() => resolve("still running"), 15_000).unref()),
    ]);
    if (code === "still running") cli.child.kill("SIGKILL");
    const output = cli.output();
    expect(code, output).toBe(1);
    const lines = output.split("\n").filter((l) => l.startsWith("jetfn:"));
    expect(lines, output).toHaveLength(1);
    expect(lines[0]).toBe(
      `jetfn: cannot connect to NATS at ${userServer.url}: authorization failed (server said: Authorization Violation); check NATS_USER/NATS_PASSWORD`,
    );
    expect(output).not.toContain(CANARY);
  });
});

describe("after the first connect", () => {
  it("keeps retrying through authorization errors on reconnect, and recovers once the credentials work again", async () => {
    const config = (password: string): string => `authorization { user: jetfn, password: "${password}" }\n`;
    const s = await server(config(CANARY));
    const dir = makeProject(
      {
        "functions.yaml": `
streams:
  - { name: R, subjects: ["r.>"] }
functions:
  - { name: echo, handler: echo.ts, stream: R, subjects: [r.in], output: r.out }
`,
      },
      { fixtures: "auth/reconnect" },
    );
    const { host, logs, baseUrl } = await startHost(dir, s.url, { NATS_USER: "jetfn", NATS_PASSWORD: CANARY });
    const readyz = async (): Promise<number> => (await fetch(`${baseUrl}/readyz`)).status;
    try {
      await waitFor(async () => (await readyz()) === 200, { message: "ready" });
      // The server comes back with other credentials: every reconnect is refused.
      writeFileSync(path.join(s.dir, "server.conf"), config("rotated-password"));
      await s.restart();
      const authErrors = () => logs.lines.filter((l) => l.msg === "NATS error" && /authorization/i.test(JSON.stringify(l.err)));
      // nats.js gives up after two authorization errors in a row unless told not to.
      await waitFor(() => authErrors().length >= 3, { message: "three refused reconnects", timeout: 15_000 });
      expect(await readyz()).toBe(503);
      // The credentials work again: the host reconnects by itself and processes events.
      writeFileSync(path.join(s.dir, "server.conf"), config(CANARY));
      await s.restart();
      await waitFor(async () => (await readyz()) === 200, { message: "ready again", timeout: 15_000 });
      expect(logs.find((l) => l.msg === "reconnected to NATS")).toBeDefined();
      const nc = await connect({ servers: s.url, user: "jetfn", pass: CANARY, reconnect: false });
      try {
        const js = jetstream(nc);
        const jsm = await jetstreamManager(nc);
        const { seq } = await js.publish("r.in", JSON.stringify({ n: 7 }));
        const out = await waitFor(
          async () => {
            const msg = await jsm.streams.getMessage("R", { last_by_subj: "r.out" });
            return msg?.header.get("Nats-Msg-Id") === `echo:R:${seq}` ? msg : null;
          },
          { message: "output after recovery", timeout: 15_000 },
        );
        expect(out.json()).toEqual({ n: 7 });
      } finally {
        await nc.close();
      }
    } finally {
      await host.shutdown();
    }
    expect(everything(logs)).not.toContain(CANARY);
  });
});

describe("a planted canary secret appears nowhere", () => {
  it("not in logs, /metrics, /functions, or the dead letter's headers and body", async () => {
    const s = await server(`authorization { user: jetfn, password: "${CANARY}" }\n`);
    const { host, logs, baseUrl } = await startHost(project, s.url, { NATS_USER: "jetfn", NATS_PASSWORD: CANARY });
    const nc = await connect({ servers: s.url, user: "jetfn", pass: CANARY, reconnect: false });
    try {
      const js = jetstream(nc);
      const jsm = await jetstreamManager(nc);
      const { seq } = await js.publish("evt.fatal", JSON.stringify({ orderId: "o-7" }));
      const dead = await waitFor(
        async () => {
          const msg = await jsm.streams.getMessage("JETFN_DLQ", { last_by_subj: "jetfn.dlq.fatal" });
          return msg?.header.get("Jetfn-Stream-Seq") === String(seq) ? msg : null;
        },
        { message: "the dead letter" },
      );
      expect(dead.header.get("Jetfn-Error")).toBe("NonRetryableError: card declined for o-7");
      await waitFor(() => logs.find((l) => l.function === "fatal" && l.msg === "delivery failed"), { message: "the failure's log line" });

      const headerText = dead.header
        .keys()
        .map((k) => `${k}: ${dead.header.values(k).join(",")}`)
        .join("\n");
      const body = new TextDecoder().decode(dead.data);
      const metrics = await (await fetch(`${baseUrl}/metrics`)).text();
      const functions = await (await fetch(`${baseUrl}/functions`)).text();
      expect(metrics).toContain("jetfn_dead_letters_total");
      for (const [what, text] of [
        ["dead-letter headers", headerText],
        ["dead-letter body", body],
        ["/metrics", metrics],
        ["/functions", functions],
      ] as const) {
        expect(text, what).not.toContain(CANARY);
      }
    } finally {
      await nc.close();
      await host.shutdown();
    }
    expect(logs.lines.length).toBeGreaterThan(5);
    expect(
      logs.lines.some((l) => l.level === 20),
      "debug lines are captured",
    ).toBe(true);
    expect(everything(logs)).not.toContain(CANARY);
  });

  it("not in jetfn validate's output when another variable is bad", async () => {
    const cli = runCli(["validate"], {
      NATS_USER: "jetfn",
      NATS_PASSWORD: CANARY,
      NATS_TOKEN: CANARY,
      NATS_NKEY_SEED: `SU-${CANARY}`,
      NATS_URL: `nats://jetfn:${CANARY}@127.0.0.1:4222 nope`,
      JETFN_HTTP_PORT: "not-a-port",
      JETFN_CONFIG: path.join(project, "functions.yaml"),
    });
    const code = await cli.exited;
    const output = cli.output();
    expect(code, output).toBe(2);
    expect(output).toContain("JETFN_HTTP_PORT");
    expect(output).toContain("NATS_NKEY_SEED");
    expect(output).toContain("NATS_URL");
    expect(output).not.toContain(CANARY);
  });
});

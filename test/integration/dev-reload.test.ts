/**
 * `jetfn dev`'s reloads are bounded in time: a save whose handler does not finish loading (its
 * module's top level waits) is given up, the running version keeps serving, and the next save
 * is loaded. In-process, to set a short bound (the CLI's is 45 s).
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { pino } from "pino";
import { expect, it } from "vitest";
import { loadEnv } from "../../runtime/config/env.ts";
import { runDev } from "../../runtime/dev.ts";
import { LogCapture, makeProject, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();

const YAML = `
streams:
  - { name: DEV_IN, subjects: ["devr.in"], storage: memory }
  - { name: DEV_OUT, subjects: ["devr.out"], storage: memory }
functions:
  - { name: versioned, handler: functions/versioned.ts, stream: DEV_IN, subjects: ["devr.in"] }
`;

/** A top level that waits until `release` exists (a timer keeps a worker thread from ending it early). */
const stuck = (release: string): string =>
  `import { existsSync } from "node:fs";\nawait new Promise<void>((resolve) => { const poll = setInterval(() => { if (existsSync(${JSON.stringify(release)})) { clearInterval(poll); resolve(); } }, 50); });\n`;

const handler = (version: number): string =>
  `export default async (e: { n: number }, ctx: import("jetfn").FunctionContext) => { await ctx.publish("devr.out", { n: e.n, version: ${version} }); };\n`;

it("gives up a load that does not finish in time, keeps serving, and loads the next save", async () => {
  const dir = makeProject({ "functions.yaml": YAML, "functions/versioned.ts": handler(1) });
  const file = path.join(dir, "functions/versioned.ts");
  const logs = new LogCapture();
  const env = loadEnv({
    NATS_URL: nats.server.url,
    JETFN_CONFIG: path.join(dir, "functions.yaml"),
    JETFN_HTTP_HOST: "127.0.0.1",
    JETFN_HTTP_PORT: "0",
    JETFN_SHUTDOWN_TIMEOUT: "5s",
  });
  const stop = new AbortController();
  const dev = runDev(env, pino({ level: "info" }, logs.stream), stop.signal, { loadTimeoutMs: 1500 });
  const logged = (msg: string, after = 0) => logs.lines.slice(after).find((line) => line.msg === msg);
  let n = 0;
  const versionOf = async (): Promise<number> => {
    const id = ++n;
    await nats.js.publish("devr.in", JSON.stringify({ n: id }));
    const out = await waitFor(async () => {
      const msg = await nats.jsm.streams.getMessage("DEV_OUT", { last_by_subj: "devr.out" });
      return msg?.json<{ n: number }>().n === id ? msg : null;
    });
    return out.json<{ version: number }>().version;
  };
  try {
    await waitFor(() => logged("dev mode: reloading on changes"), { timeout: 20_000 });
    expect(await versionOf()).toBe(1);

    let from = logs.lines.length;
    const release = path.join(dir, "release");
    writeFileSync(file, `${stuck(release)}${handler(2)}`);
    const givenUp = await waitFor(() => logged("change not loaded, still running the previous version", from), { timeout: 20_000 });
    expect(givenUp.error).toBe("loading the change did not finish within 1.5s");
    expect(await versionOf()).toBe(1);
    // The given-up load may finish now: nothing waits for it, and the host it makes is dropped.
    writeFileSync(release, "");

    from = logs.lines.length;
    writeFileSync(file, handler(3));
    await waitFor(() => logged("reloaded", from), { timeout: 20_000 });
    expect(await versionOf()).toBe(3);
  } finally {
    stop.abort();
    await dev;
  }
});

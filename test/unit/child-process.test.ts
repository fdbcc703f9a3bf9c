import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type SpawnedChild, spawnChild } from "../../runtime/child-process.ts";

const dir = mkdtempSync(path.join(tmpdir(), "jetfn-child-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `node -e script`, once it has printed "ready" (its signal handlers are in place by then). */
async function nodeChild(script: string): Promise<SpawnedChild> {
  const child = spawnChild(process.execPath, ["-e", `${script}; console.log("ready")`], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.process.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("ready")) resolve();
    });
    void child.exited.then((exit) => reject(new Error(`the child exited before it was ready: ${JSON.stringify(exit)}`)));
  });
  return child;
}

const STAY = "setInterval(() => {}, 1000)";

describe("spawnChild", () => {
  it("stops a child that exits on SIGTERM without killing it", async () => {
    const child = await nodeChild(`process.on("SIGTERM", () => process.exit(7)); ${STAY}`);
    expect(child.running).toBe(true);
    const started = performance.now();
    expect(await child.stop(5000)).toEqual({ code: 7, signal: null });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(child.running).toBe(false);
    expect(await child.exited).toEqual({ code: 7, signal: null });
  });

  it("SIGKILLs a child that ignores SIGTERM once the grace period is over", async () => {
    const child = await nodeChild(`process.on("SIGTERM", () => {}); ${STAY}`);
    const started = performance.now();
    expect(await child.stop(200)).toEqual({ code: null, signal: "SIGKILL" });
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    expect(child.running).toBe(false);
  });

  it("resolves at once, sending nothing, for a child that already exited", async () => {
    const child = spawnChild(process.execPath, ["-e", "process.exit(3)"]);
    await child.spawned;
    expect(await child.exited).toEqual({ code: 3, signal: null });
    const sent: unknown[] = [];
    child.process.kill = (signal?: NodeJS.Signals | number) => (sent.push(signal), true);
    expect(await child.stop(5000)).toEqual({ code: 3, signal: null });
    expect(await child.kill()).toEqual({ code: 3, signal: null });
    expect(sent).toEqual([]);
  });

  it("kills a running child with SIGKILL", async () => {
    const child = await nodeChild(`process.on("SIGTERM", () => {}); ${STAY}`);
    expect(await child.kill()).toEqual({ code: null, signal: "SIGKILL" });
  });

  it("rejects spawned with ENOENT for a missing binary, and counts it as exited", async () => {
    const child = spawnChild("jetfn-no-such-binary", []);
    await expect(child.spawned).rejects.toMatchObject({ code: "ENOENT" });
    expect(await child.exited).toEqual({ code: null, signal: null });
    expect(child.pid).toBeUndefined();
    expect(child.running).toBe(false);
    expect(await child.stop(5000)).toEqual({ code: null, signal: null });
  });

  it("appends stdout and stderr to logFile", async () => {
    const logFile = path.join(dir, "child.log");
    for (const n of [1, 2]) {
      const child = spawnChild(process.execPath, ["-e", `console.log("out ${n}"); console.error("err ${n}")`], { logFile });
      expect(await child.exited).toEqual({ code: 0, signal: null });
    }
    expect(readFileSync(logFile, "utf8")).toBe("out 1\nerr 1\nout 2\nerr 2\n");
  });
});

/**
 * Bundling and loading handlers: errors name file and line, `jetfn build` output is reused
 * while its inputs are unchanged, and stack traces point at the handler's .ts lines.
 */
import { readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BundleError, buildDir, buildHandlers } from "../../runtime/bundle/build.ts";
import { loadHandler } from "../../runtime/bundle/module.ts";
import { loadConfig } from "../../runtime/config/load.ts";
import { type NatsServer, startNatsServer } from "../support/nats-server.ts";
import { client, makeProject, startHost } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const yaml = (handler: string) => `
streams:
  - { name: B, subjects: ["b.>"], storage: memory }
functions:
  - { name: fn, handler: ${handler}, stream: B, subjects: [b.in], retry: { maxAttempts: 1 } }
`;

/** A project whose handler is `handlerSource`, for the handlers that must not bundle or load. */
function project(handlerSource: string, handler = "functions/fn.ts"): string {
  return makeProject({ "functions.yaml": yaml(handler), [handler.split("#")[0]!]: handlerSource });
}

async function bundleError(dir: string): Promise<string> {
  const config = loadConfig(path.join(dir, "functions.yaml"));
  try {
    const [built] = await buildHandlers(config);
    await loadHandler(config.functions[0]!, built!.file, config.rootDir);
  } catch (error) {
    expect(error).toBeInstanceOf(BundleError);
    return (error as Error).message;
  }
  throw new Error("expected a BundleError");
}

describe("bundling", () => {
  it("names file, line and column of a syntax error", async () => {
    const message = await bundleError(project("export default async () => {\n  const x = ;\n};\n"));
    expect(message).toMatch(/^functions\/fn\.ts:2:\d+: Unexpected ";" \(function fn\)/);
  });

  it("names the missing import", async () => {
    const message = await bundleError(project('import { nope } from "./lib/missing.ts";\nexport default async () => nope;\n'));
    expect(message).toMatch(/^functions\/fn\.ts:1:\d+: Could not resolve "\.\/lib\/missing\.ts"/);
  });

  it("rejects a module whose export is not a handler", async () => {
    expect(await bundleError(project("export default 42;\n"))).toMatch(/export "default" is number \(function fn\)/);
    expect(await bundleError(project("export const other = async () => 1;\n", "functions/fn.ts#handle"))).toMatch(/no export "handle"/);
  });

  it("reports a module that throws while loading", async () => {
    expect(await bundleError(project('throw new Error("no DATABASE_URL");\nexport default async () => 1;\n'))).toMatch(
      /loading the handler module threw.*\n.*no DATABASE_URL/,
    );
  });

  it("loads a named export and a plain async function", async () => {
    const dir = makeProject({ "functions.yaml": yaml("functions/fn.ts#handle") }, { fixtures: "bundle/named-export" });
    const config = loadConfig(path.join(dir, "functions.yaml"));
    const [built] = await buildHandlers(config);
    const loaded = await loadHandler(config.functions[0]!, built!.file, config.rootDir);
    expect(await loaded.handler(21, {} as never)).toBe(42);
  });

  it("reuses a bundle while its inputs are unchanged and rebuilds when one changes", async () => {
    const dir = makeProject({ "functions.yaml": yaml("functions/fn.ts") }, { fixtures: "bundle/reuse" });
    const config = loadConfig(path.join(dir, "functions.yaml"));
    const [first] = await buildHandlers(config);
    expect(first!.reused).toBe(false);
    const [second] = await buildHandlers(config);
    expect(second).toEqual({ ...first, reused: true });
    writeFileSync(path.join(dir, "functions/lib/answer.ts"), "export const answer = 2;\n");
    const [third] = await buildHandlers(config);
    expect(third!.reused).toBe(false);
    expect(third!.file).not.toBe(first!.file);
    const loaded = await loadHandler(config.functions[0]!, third!.file, config.rootDir);
    expect(await loaded.handler(undefined, {} as never)).toBe(2);
    expect(readdirSync(buildDir(config)).filter((f) => f.endsWith(".mjs"))).toHaveLength(2);
  });
});

describe("a bundled handler at run time", () => {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("throws errors whose stack names the handler's .ts line", async () => {
    const dir = makeProject({ "functions.yaml": yaml("functions/fn.ts") }, { fixtures: "bundle/stack" });
    const { host, logs } = await startHost(dir, server.url);
    const { nc, js } = await client(server.url);
    try {
      await js.publish("b.in", "{}");
      const line = await waitFor(() => logs.find((l) => l.msg === "delivery failed"));
      expect(line.reason).toBe("non-retryable"); // the SDK's class, recognised across bundles
      expect(String(line.stack)).toContain("functions/fn.ts:4:");
    } finally {
      await host.shutdown();
      await nc.close();
    }
  });
});

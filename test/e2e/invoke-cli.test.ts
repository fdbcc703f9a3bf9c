/**
 * `jetfn invoke` as a user runs it, against a host serving functions with `invoke: true`
 * (the handlers of test/fixtures/invoke-service/) on a real nats-server.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { runCli } from "../support/cli.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";

const nats = useNats();
let host: Host;
let dir: string;

beforeAll(async () => {
  dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: CLIINV, subjects: ["cliinv.>"], storage: memory }
functions:
  - { name: quote, handler: quote.ts, stream: CLIINV, subjects: [cliinv.quote], invoke: true, config: { replica: cli } }
  - { name: decline, handler: decline.ts, stream: CLIINV, subjects: [cliinv.decline], invoke: true }
  - { name: hidden, handler: quote.ts, stream: CLIINV, subjects: [cliinv.hidden] }
`,
    },
    { fixtures: "invoke-service" },
  );
  ({ host } = await startHost(dir, nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

const invoke = (...args: string[]) => runCli(["invoke", ...args], { NATS_URL: nats.server.url });

describe("jetfn invoke", () => {
  it("prints the function's answer and exits 0 (event from a file, with a header)", async () => {
    const file = path.join(dir, "event.json");
    writeFileSync(file, JSON.stringify({ qty: 5 }));
    const cli = invoke("quote", `@${file}`, "--header", "x-customer=c-9", "--timeout", "10s");
    expect(await cli.exited).toBe(0);
    expect(JSON.parse(cli.output())).toMatchObject({ price: 10, customer: "c-9", subject: "jetfn.invoke.quote", seq: 0 });
  });

  it("exits 1 with the error line when the function answers with an error", async () => {
    const cli = invoke("decline", "{}");
    expect(await cli.exited).toBe(1);
    expect(cli.output().trim()).toBe("error 422: card declined");
  });

  it("prints the schema's field errors of a 400", async () => {
    const cli = invoke("quote", '{"qty":0}');
    expect(await cli.exited).toBe(1);
    const [line, body] = cli.output().trim().split("\n");
    expect(line).toBe("error 400: the event does not match the function's schema");
    expect(JSON.parse(body!).errors[0].path).toBe("qty");
  });

  it("exits 1 naming the function when no host serves it", async () => {
    const cli = invoke("hidden", "{}");
    expect(await cli.exited).toBe(1);
    expect(cli.output()).toContain("no running host serves function hidden (is it `invoke: true` in functions.yaml?)");
  });

  it("exits 2 on a body that is not JSON or a bad timeout", async () => {
    const bad = invoke("quote", "{qty:1}");
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain("not valid JSON");
    const timeout = invoke("quote", "{}", "--timeout", "soon");
    expect(await timeout.exited).toBe(2);
    expect(timeout.output()).toContain("--timeout expects a duration like 30s, got soon");
  });
});

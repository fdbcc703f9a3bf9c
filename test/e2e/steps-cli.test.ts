/**
 * `jetfn steps show|forget` as an operator runs them, against a host that recorded a run's
 * steps: the records listed, then forgotten, after which the same run (its message id
 * stored again) runs its steps again rather than being acked as a duplicate.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { runCli } from "../support/cli.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let host: Host;
let dir: string;
let effects: string;

beforeAll(async () => {
  effects = path.join(mkdtempSync(path.join(tmpdir(), "jetfn-steps-cli-")), "effects.log");
  const yaml = `
defaults:
  retry: { maxAttempts: 3, initialDelay: 100ms, jitter: false }
  config: { effects: ${JSON.stringify(effects)} }
streams:
  - { name: SHOP, subjects: ["shop.>"], storage: memory, duplicateWindow: 100ms }
functions:
  - { name: charge, handler: fns/charge.ts, stream: SHOP, subjects: [shop.charge], output: shop.charged }
`;
  dir = makeProject({ "functions.yaml": yaml }, { fixtures: "steps" });
  ({ host } = await startHost(dir, nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

async function jetfn(...args: string[]): Promise<{ code: number | string; output: string }> {
  const cli = runCli(args, { NATS_URL: nats.server.url, JETFN_CONFIG: path.join(dir, "functions.yaml") });
  const code = await cli.exited;
  return { code, output: cli.output() };
}

const charges = () =>
  existsSync(effects)
    ? readFileSync(effects, "utf8")
        .split("\n")
        .filter((line) => line.includes("o-cli"))
    : [];

describe("jetfn steps", () => {
  it("shows a run's steps and completion record, forgets them, and the run's steps run again", async () => {
    await nats.js.publish("shop.charge", JSON.stringify({ order: "o-cli" }), { msgID: "order-cli" });
    // The first attempt fails after its step; the retry replays it and completes.
    await waitFor(() => nats.jsm.streams.getMessage("SHOP", { last_by_subj: "shop.charged" }));
    await waitFor(async () => (await nats.jsm.consumers.info("SHOP", "jetfn_charge")).num_ack_pending === 0);

    const shown = await jetfn("steps", "show", "charge", "order-cli");
    expect(shown.code).toBe(0);
    const lines = shown.output.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      /^charge {2}done {2}\d{4}-\d\d-\d\dT[\d:.]+Z {2}\d+ bytes {2}expires .* result=\{"receipt":"r-o-cli","attempt":1\}$/,
    );
    expect(lines[1]).toMatch(/^\(completed\) {2}completed {2}/);

    const json = await jetfn("steps", "show", "charge", "order-cli", "--json");
    expect(
      json.output
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line)),
    ).toMatchObject([
      { step: "charge", state: "done", result: { receipt: "r-o-cli", attempt: 1 } },
      { completion: true, state: "completed" },
    ]);

    const refused = await jetfn("steps", "forget", "charge", "order-cli");
    expect(refused.code).toBe(2);
    expect(refused.output).toContain("removing step records needs --yes when there is no terminal to confirm on");

    const forgot = await jetfn("steps", "forget", "charge", "order-cli", "--yes");
    expect(forgot.code).toBe(0);
    expect(forgot.output).toContain("forgot 2 record(s) of run order-cli of charge");
    expect((await jetfn("steps", "show", "charge", "order-cli")).output).toContain("no step records of run order-cli of charge");

    // The same run again (its message id stored again past the 100 ms duplicate window): forgotten, it charges again.
    expect(charges()).toHaveLength(1);
    const again = await nats.js.publish("shop.charge", JSON.stringify({ order: "o-cli" }), { msgID: "order-cli" });
    expect(again.duplicate).toBe(false);
    await waitFor(() => charges().length === 2);
  });

  it("jetfn validate warns when a function's steps.ttl is shorter than its retry span", async () => {
    const short = path.join(dir, "functions.short.yaml");
    writeFileSync(
      short,
      readFileSync(path.join(dir, "functions.yaml"), "utf8").replace(
        "output: shop.charged }",
        "output: shop.charged, steps: { ttl: 1s } }",
      ),
    );
    const cli = runCli(["validate"], { JETFN_CONFIG: short });
    expect(await cli.exited).toBe(0);
    expect(cli.output()).toContain(`warning: ${short}: function charge: steps.ttl 1s is shorter than its retry span`);
  });

  it("refuses an unknown function", async () => {
    const unknown = await jetfn("steps", "show", "nope", "r-1");
    expect(unknown.code).toBe(2);
    expect(unknown.output).toContain("no function named nope");
  });
});

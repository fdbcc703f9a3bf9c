/**
 * `jetfn console` in a real browser (Debian's chromium, driven by playwright-core), against
 * a real nats-server, two `jetfn start` hosts and the console as a user starts them. The
 * operator's story: watch the fleet live, pause and resume a function (checked on every
 * host's /functions), read a dead letter, fix the cause and redrive it (it runs again),
 * purge with a count, count a replay as the CLI does and run it, see the hosts. Every page is
 * saved at 1280 and 390 px wide (.jetfn/screenshots/console/).
 */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { headers } from "@nats-io/transport-node";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, screenshots, startConsole } from "../support/browser.ts";
import { type CliProcess, killCliHosts, runCli, startCliHost } from "../support/cli.ts";
import { makeProject, scrape, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
let configFile: string;
let fixedFile: string;
let hosts: { base: string }[] = [];
let consoleCli: CliProcess | undefined;
let url: string;
let browser: Browser | undefined;
let page: Page;

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";

beforeAll(async () => {
  const dir = makeProject(
    {
      "functions.yaml": `
streams:
  - { name: CON, subjects: ["con.>"], storage: memory }
  - { name: CONDONE, subjects: ["condone.>"], storage: memory }
functions:
  - name: orders
    handler: order.ts
    stream: CON
    subjects: [con.orders]
    output: condone.orders
    config: { fixedFile: FIXED }
  - { name: audit, handler: order.ts, stream: CON, subjects: [con.audit], output: condone.audit, concurrency: 4 }
`,
    },
    { fixtures: "console" },
  );
  configFile = path.join(dir, "functions.yaml");
  fixedFile = path.join(dir, "fixed");
  writeFileSync(configFile, (await import("node:fs")).readFileSync(configFile, "utf8").replace("FIXED", fixedFile));
  hosts = await Promise.all([startCliHost(configFile, nats.server.url), startCliHost(configFile, nats.server.url)]);
  const started = await startConsole([], {
    NATS_URL: nats.server.url,
    JETFN_CONFIG: configFile,
    JETFN_CONSOLE_TRACE_URL: "http://traces.example/trace/{traceId}",
  });
  consoleCli = started.cli;
  url = started.url;
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
});

afterAll(async () => {
  await browser?.close();
  consoleCli?.child.kill("SIGTERM");
  await consoleCli?.exited;
  await killCliHosts();
});

interface Shown {
  name: string;
  paused: boolean;
  pausedReason?: string;
}

async function onHost(base: string, name: string): Promise<Shown> {
  const fns = (await (await fetch(`${base}/functions`)).json()) as Shown[];
  return fns.find((f) => f.name === name)!;
}

async function count(stream: string, subject: string): Promise<number> {
  const info = await nats.jsm.streams.info(stream, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

const deadLetters = (fn: string) => count("JETFN_DLQ", `jetfn.dlq.${fn}`);
const outputs = (fn: string) => count("CONDONE", `condone.${fn}`);
const row = (name: string) => page.locator(`tr[data-function="${name}"]`);
/** Polls until the expectation holds, up to 10 s (a replay's count reads the stream first). */
const poll = <T>(probe: () => Promise<T>) => expect.poll(probe, { timeout: 10_000 });
/** What the page's status line in its main part says (the header has the live indicator). */
const said = () => page.getByRole("main").getByRole("status").first().textContent();

describe("jetfn console", () => {
  it("lists every function of the fleet, and follows it live without a reload", async () => {
    await page.goto(url);
    await poll(() => page.getByRole("table", { name: "Functions of the fleet" }).isVisible()).toBe(true);
    for (const name of ["orders", "audit"]) await poll(() => row(name).isVisible()).toBe(true);
    await poll(() => row("orders").locator('[data-label="Hosts"] .count').textContent()).toBe("2");
    expect((await row("orders").locator('[data-label="Hosts"] .names').textContent())!.split(", ")).toHaveLength(2);
    await poll(() => row("orders").locator('[data-label="State"]').textContent()).toBe("running");

    await Promise.all(Array.from({ length: 6 }, (_, n) => nats.js.publish("con.orders", JSON.stringify({ id: `o${n}`, amount: 10 + n }))));
    // The page was not reloaded: the server's events carry the new counts.
    await poll(() => row("orders").locator('[data-label="Last minute ok / failed"]').textContent()).toBe("6 / 0");
    await poll(() => row("orders").locator('[data-label="p99"]').textContent()).toMatch(/ms$/);
    await screenshots(page, "fleet");
  });

  it("pauses a function on every host from the page (by keyboard), with its reason, and resumes it", async () => {
    await page.goto(url);
    // Keyboard only: Escape cancels the dialog and gives focus back; Enter in the reason pauses.
    await row("audit").getByRole("button", { name: "Pause" }).focus();
    await page.keyboard.press("Enter");
    const dialog = page.getByRole("dialog", { name: "Pause audit" });
    await poll(() => dialog.isVisible()).toBe(true);
    await page.keyboard.press("Escape");
    await poll(() => dialog.isVisible()).toBe(false);
    expect(await page.evaluate("document.activeElement?.textContent")).toBe("Pause");
    await page.keyboard.press("Enter");
    await poll(() => dialog.getByLabel("Reason (shown to everyone)").evaluate((input) => input === input.ownerDocument.activeElement)).toBe(
      true,
    );
    await page.keyboard.type("db repair");
    await page.keyboard.press("Enter");
    for (const { base } of hosts) {
      await waitFor(async () => (await onHost(base, "audit")).paused, { timeout: 5000, message: `${base} shows audit paused` });
      expect(await onHost(base, "audit")).toMatchObject({ paused: true, pausedReason: "db repair" });
      expect((await onHost(base, "orders")).paused).toBe(false);
    }
    await poll(() => row("audit").locator('[data-label="State"]').textContent()).toBe("paused: db repair");
    await row("audit").getByRole("button", { name: "Resume" }).click();
    for (const { base } of hosts) {
      await waitFor(async () => !(await onHost(base, "audit")).paused, { timeout: 5000, message: `${base} shows audit running` });
    }
    await poll(() => row("audit").locator('[data-label="State"]').textContent()).toBe("running");
  });

  it("shows a dead letter's body and error, and its redrive runs it again once fixed", async () => {
    const h = headers();
    h.set("traceparent", `00-${TRACE_ID}-00f067aa0ba902b7-01`);
    await nats.js.publish("con.orders", JSON.stringify({ id: "bad-1", amount: -5 }), { headers: h });
    await waitFor(async () => (await deadLetters("orders")) === 1, { message: "the order is a dead letter" });

    await page.goto(`${url}#/functions/orders/dead-letters`);
    const list = page.getByRole("table", { name: "Dead letters of orders" });
    await poll(() => list.getByRole("row").count()).toBe(2);
    expect(await list.textContent()).toContain("order bad-1: amount must be positive");
    await screenshots(page, "dead-letters");

    await list.getByRole("link", { name: /^#\d+$/ }).click();
    await poll(() => page.getByRole("heading", { level: 1 }).textContent()).toMatch(/^Dead letter #\d+ of orders$/);
    const body = await page.locator("pre.body").textContent();
    expect(JSON.parse(body!)).toEqual({ id: "bad-1", amount: -5 });
    expect(body).toContain('\n  "amount": -5'); // pretty-printed
    expect(await page.locator("dl.facts").textContent()).toContain("order bad-1: amount must be positive");
    expect(await page.getByRole("link", { name: "Open its trace" }).getAttribute("href")).toBe(`http://traces.example/trace/${TRACE_ID}`);
    const headerTable = page.getByRole("table", { name: "Headers" });
    expect(await headerTable.getByRole("row", { name: /Jetfn-Reason/ }).textContent()).toContain("non-retryable");
    await screenshots(page, "dead-letter");

    // The operator fixes the cause, then sends the dead letter back to its subject.
    writeFileSync(fixedFile, "fixed");
    const before = await outputs("orders");
    await page.getByRole("button", { name: "Redrive" }).click();
    const confirm = page.getByRole("dialog", { name: "Redrive 1 dead letter?" });
    await confirm.getByRole("button", { name: "Redrive 1" }).click();
    await waitFor(async () => (await outputs("orders")) === before + 1, { message: "the redriven order ran and was charged" });
    expect(await deadLetters("orders")).toBe(0);
    await poll(() => said()).toContain("Redriven 1 dead letter of orders");
  });

  it("redrives one to this function alone, and purges the selected after a confirmation that says how many", async () => {
    await Promise.all([1, 2, 3].map((n) => nats.js.publish("con.audit", JSON.stringify({ id: `a${n}`, amount: 1, fail: true }))));
    await waitFor(async () => (await deadLetters("audit")) === 3, { message: "3 dead letters of audit" });
    await page.goto(`${url}#/functions/audit/dead-letters`);
    const table = page.getByRole("table", { name: "Dead letters of audit" });
    await poll(() => table.getByRole("row").count()).toBe(4);

    // One sent to audit alone, as a replay of its event: it fails again and comes back marked so.
    await table.getByRole("checkbox").first().check();
    await page.getByLabel("only audit").check();
    await page.getByRole("button", { name: "Redrive" }).click();
    const redrive = page.getByRole("dialog", { name: "Redrive 1 dead letter?" });
    expect(await redrive.textContent()).toContain("to audit alone");
    await redrive.getByRole("button", { name: "Redrive 1" }).click();
    await poll(() => said()).toContain("Redriven 1 dead letter of audit to audit alone");
    const back = await waitFor(
      async () => {
        const rows = (await nats.jsm.streams.info("JETFN_DLQ", { subjects_filter: "jetfn.dlq.audit" })).state.subjects?.["jetfn.dlq.audit"];
        if (rows !== 3) return undefined;
        const last = await nats.jsm.streams.getMessage("JETFN_DLQ", { last_by_subj: "jetfn.dlq.audit" });
        return last?.header?.get("Jetfn-Replay-Of") ? last : undefined;
      },
      { message: "the redriven one failed again as a replay of its event" },
    );
    expect(back.header!.get("Jetfn-Function")).toBe("audit");

    await page.reload();
    await poll(() => table.getByRole("row").count()).toBe(4);
    await page.getByLabel("Select all").check();
    await page.getByRole("button", { name: "Purge" }).click();
    const dialog = page.getByRole("dialog", { name: "Purge 3 dead letters?" });
    expect(await dialog.textContent()).toContain("3 dead letters of audit will be removed for good");
    await dialog.getByRole("button", { name: "Purge 3" }).click();
    await waitFor(async () => (await deadLetters("audit")) === 0, { message: "audit's dead letters purged" });
    await poll(() => said()).toContain("Purged 3 dead letters of audit");
  });

  it("counts a replay as jetfn replay --dry-run does, then runs it with its progress", async () => {
    const cli = runCli(["replay", "orders", "--from-seq", "1", "--dry-run"], { NATS_URL: nats.server.url, JETFN_CONFIG: configFile });
    expect(await cli.exited).toBe(0);
    const counted = /dry run: (\d+) event\(s\)/.exec(cli.output())?.[1];
    expect(Number(counted)).toBeGreaterThan(0);

    await page.goto(`${url}#/replay/orders`);
    await page.getByLabel("From sequence").fill("1");
    expect(await page.getByRole("button", { name: "Replay" }).isDisabled()).toBe(true);
    await page.getByRole("button", { name: "Count" }).click();
    await poll(() => said()).toContain(`Dry run: ${counted} event(s) would be replayed to orders`);
    await screenshots(page, "replay");

    const successes = async () => {
      const each = await Promise.all(hosts.map(({ base }) => scrape(base, 'jetfn_invocations_total{function="orders",outcome="success"}')));
      return each.reduce((a, b) => a + b, 0);
    };
    const before = await successes();
    await page.getByRole("button", { name: "Replay" }).click();
    await poll(() => said()).toContain(`Replayed to orders: read ${counted}, published ${counted}`);
    expect(await page.locator("progress").getAttribute("value")).toBe(counted);
    // Each copy runs through orders once more (the cause of the dead letter is fixed: all succeed).
    await waitFor(async () => (await successes()) === before + Number(counted), { message: `orders ran the ${counted} copies` });
  });

  it("lists the hosts with their version, uptime, functions and worker-thread restarts with the reason", async () => {
    await page.goto(`${url}#/hosts`);
    const table = page.getByRole("table", { name: "Hosts" });
    await poll(() => table.getByRole("row").count()).toBe(3);
    const text = await table.textContent();
    expect(text).toContain("0.1.0");
    expect(text).toContain("orders (worker)");
    expect(text).not.toContain("audit: 1");
    // A handler that ends its thread: the page shows the restart and why, without a reload.
    await nats.js.publish("con.audit", JSON.stringify({ id: "crash", amount: 1, crash: true }));
    await poll(() => table.textContent()).toMatch(/audit: \d+, last exit/);
    await screenshots(page, "hosts");
  });

  it("refuses a change without the CSRF token, from another client or from the page itself", async () => {
    const forged = await fetch(`${url}api/functions/orders/pause`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reason: "forged" }),
    });
    expect(forged.status).toBe(403);
    const wrong = await page.evaluate(async () => {
      const response = await fetch("/api/functions/orders/pause", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": "not-the-token" },
        body: "{}",
      });
      return response.status;
    });
    expect(wrong).toBe(403);
    // A form post (what another site could send) carries no token and no JSON.
    const form = await fetch(`${url}api/functions/orders/pause`, { method: "POST", body: new URLSearchParams({ reason: "x" }) });
    expect(form.status).toBe(403);
    for (const { base } of hosts) expect((await onHost(base, "orders")).paused).toBe(false);
    expect(existsSync(fixedFile)).toBe(true);
    rmSync(fixedFile);
  });
});

describe("jetfn console beyond loopback", () => {
  it("will not bind beyond loopback without JETFN_CONSOLE_TOKEN", async () => {
    const cli = runCli(["console", "--host", "0.0.0.0", "--port", "0"], { NATS_URL: nats.server.url, JETFN_CONFIG: configFile });
    expect(await cli.exited).toBe(2);
    expect(cli.output()).toContain("needs JETFN_CONSOLE_TOKEN");
  });

  it("asks for the token: without it every page and API is refused; with it, an HttpOnly SameSite=Strict session", async () => {
    const token = "s3cret-console-token-for-tests";
    const guarded = await startConsole(["--host", "0.0.0.0"], {
      NATS_URL: nats.server.url,
      JETFN_CONFIG: configFile,
      JETFN_CONSOLE_TOKEN: token,
    });
    const at = guarded.url.replace("0.0.0.0", "127.0.0.1");
    try {
      expect((await fetch(`${at}api/fleet`)).status).toBe(401);
      expect((await fetch(`${at}api/functions/orders/dead-letters`)).status).toBe(401);
      const home = await fetch(at, { redirect: "manual" });
      expect([home.status, home.headers.get("location")]).toEqual([303, "/login"]);

      const context = await browser!.newContext({ viewport: { width: 1280, height: 800 } });
      const guest = await context.newPage();
      await guest.goto(at);
      expect(new URL(guest.url()).pathname).toBe("/login");
      await guest.getByLabel("Console token").fill("wrong-token-wrong-token");
      await guest.getByRole("button", { name: "Log in" }).click();
      await poll(() => guest.getByRole("alert").textContent()).toContain("not the console's");
      expect(await context.cookies()).toEqual([]);
      await screenshots(guest, "login");

      await guest.getByLabel("Console token").fill(token);
      await guest.getByRole("button", { name: "Log in" }).click();
      await poll(() => guest.getByRole("table", { name: "Functions of the fleet" }).isVisible()).toBe(true);
      const [cookie] = await context.cookies();
      expect(cookie).toMatchObject({ name: "jetfn_console", httpOnly: true, sameSite: "Strict" });
      // The session alone does not make a change: the CSRF token is still needed.
      const noCsrf = await fetch(`${at}api/functions/orders/pause`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Cookie: `${cookie!.name}=${cookie!.value}` },
        body: "{}",
      });
      expect(noCsrf.status).toBe(403);
      for (const { base } of hosts) expect((await onHost(base, "orders")).paused).toBe(false);
      // Logging out ends the session on the server, not only in the browser.
      await guest.getByRole("button", { name: "Log out" }).click();
      await poll(async () => new URL(guest.url()).pathname).toBe("/login");
      expect((await fetch(`${at}api/fleet`, { headers: { Cookie: `${cookie!.name}=${cookie!.value}` } })).status).toBe(401);
      await context.close();
    } finally {
      guarded.cli.child.kill("SIGTERM");
      await guarded.cli.exited;
    }
  });
});

import { mkdirSync } from "node:fs";
import path from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { type CliProcess, runCli } from "./cli.ts";
import { REPO_ROOT } from "./project.ts";
import { waitFor } from "./wait-for.ts";

/** Debian's chromium (`.ci/run` installs it with apt-get); never a downloaded browser. */
export const CHROMIUM = "/usr/bin/chromium";

/** Where the console tests save their screenshots (git-ignored, under .jetfn/). */
export const SCREENSHOTS_DIR = path.join(REPO_ROOT, ".jetfn", "screenshots", "console");

/** The widths every page is shot at. */
export const WIDTHS = [1280, 390] as const;

/**
 * Launches headless chromium with no network of its own beyond what a page asks for:
 * Playwright gives each launch a fresh temporary user-data dir.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Saves the page at each of {@link WIDTHS} as `<name>-<width>.png`, then restores the 1280 px viewport. */
export async function screenshots(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS_DIR, { recursive: true });
  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 800 });
    // Let the layout settle (the charts size themselves once).
    await page.evaluate("new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)))");
    await page.screenshot({ path: path.join(SCREENSHOTS_DIR, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

/** `jetfn console` started as a user starts it, on a free port; resolves once it printed its URL. */
export async function startConsole(args: string[], env: Record<string, string>): Promise<{ cli: CliProcess; url: string }> {
  const cli = runCli(["console", "--port", "0", ...args], env);
  const url = await waitFor(() => /jetfn console on (http:\/\/\S+\/)/.exec(cli.output())?.[1], {
    timeout: 20_000,
    message: "jetfn console printed its URL",
  }).catch((error: Error) => {
    cli.child.kill("SIGKILL");
    throw new Error(`${error.message}\n${cli.output()}`);
  });
  return { cli, url };
}

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "vitest";
import type { CompiledConfig } from "../../runtime/config/index.ts";
import { ConfigError, loadConfig } from "../../runtime/config/index.ts";

/** Helpers for the config tests: throwaway projects with a `functions.yaml` and handler files. */

const dirs: string[] = [];

/** Removes every project made so far; call from `afterAll`. */
export function cleanup(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Writes `functions.yaml` (lines joined by "\n") next to dummy handler files; returns its path. */
export function project(lines: readonly string[], handlers: readonly string[] = ["functions/a.ts", "functions/b.ts"]): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "jetfn-config-"));
  dirs.push(dir);
  for (const handler of handlers) {
    mkdirSync(path.dirname(path.join(dir, handler)), { recursive: true });
    writeFileSync(path.join(dir, handler), "export default async () => {};\n");
  }
  const file = path.join(dir, "functions.yaml");
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

/** Loads a project made from `lines`. */
export function load(lines: readonly string[]): CompiledConfig {
  return loadConfig(project(lines));
}

/** The error's lines, with the temp file's absolute path shown as `functions.yaml`. */
export function errorsOf(lines: readonly string[]): string[] {
  const file = project(lines);
  try {
    loadConfig(file);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message.split("\n").map((line) => line.replace(file, "functions.yaml"));
  }
  throw new Error("expected a ConfigError");
}

export const ORDERS_STREAM: readonly string[] = ["streams:", "  - name: ORDERS", '    subjects: ["orders.>"]'];
export const FUNCTION_A: readonly string[] = [
  "  - name: a",
  "    handler: functions/a.ts",
  "    stream: ORDERS",
  "    subjects: [orders.created]",
];

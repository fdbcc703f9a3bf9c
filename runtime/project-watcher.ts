import path from "node:path";
import { watch } from "chokidar";
import type { Logger } from "./telemetry/logger.ts";

/** Quiet time after the last change before it is reported: editors and `git` write in bursts. */
const QUIET_MS = 250;

/** Files that can change what runs: handlers, what they import (code, JSON), route schemas, YAML. */
const SOURCE_FILE = /\.(?:[cm]?[jt]s|[jt]sx|json|ya?ml)$/;

/** A handler's test (`functions/<name>.test.ts`) is no part of what runs. */
const TEST_FILE = /\.(?:test|spec)\.[cm]?[jt]sx?$/;

/** File events; a folder's own events say nothing its files' events do not. */
const FILE_EVENTS = new Set(["add", "change", "unlink"]);

/**
 * Whether a path (relative to the project's folder) is never watched: anything under
 * `node_modules/` or a dot-folder (`.jetfn/` holds the build and the embedded nats-server's
 * store; `.git/`, editors' folders), and dot-files (editors' swap and lock files).
 */
export function isIgnoredPath(relative: string): boolean {
  return relative.split(/[/\\]/).some((part) => part === "node_modules" || (part.startsWith(".") && part !== "." && part !== ".."));
}

/**
 * Whether a change to this file (relative to the project's folder, not ignored) calls for a
 * reload. Logs, editors' temporary files (`greet.ts.tmp`, `sedAb12Cd`, `greet.ts~`) and tests
 * do not; when an editor renames its temporary file over the real one, the real one changes.
 */
export function isSourceFile(relative: string): boolean {
  return SOURCE_FILE.test(relative) && !TEST_FILE.test(relative);
}

export interface ProjectWatcherOptions {
  /** The project's folder (the folder of `functions.yaml`), watched with its subfolders. */
  readonly root: string;
  /** `functions.yaml`, whatever it is called: always watched. */
  readonly configFile: string;
  /** Called once changes have been quiet for a moment, with the changed files (relative to `root`). */
  readonly onChange: (files: readonly string[]) => void;
  readonly log: Logger;
}

export interface ProjectWatcher {
  close(): Promise<void>;
}

/**
 * Watches a jetfn project for saves, however they are written: in place, by renaming a
 * temporary file over the old one (editors' atomic save, `sed -i`), or by delete and create.
 * chokidar watches each folder as well as each file, and re-watches a file that was
 * replaced; `fs.watch(root, { recursive: true })` on Linux keeps watching a replaced file's
 * old inode and misses every later save of it. Resolves once the first scan is done, so a
 * save made after that is seen.
 */
export async function watchProject(options: ProjectWatcherOptions): Promise<ProjectWatcher> {
  const root = path.resolve(options.root);
  const configFile = path.resolve(options.configFile);
  const watcher = watch(root, {
    ignoreInitial: true,
    ignored: (file: string) => file !== configFile && isIgnoredPath(path.relative(root, file)),
  });
  const changed = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  watcher.on("all", (event, file) => {
    if (!FILE_EVENTS.has(event)) return;
    const relative = path.relative(root, file);
    if (path.resolve(file) !== configFile && !isSourceFile(relative)) return;
    changed.add(relative);
    clearTimeout(timer);
    timer = setTimeout(() => {
      const files = [...changed].sort();
      changed.clear();
      options.onChange(files);
    }, QUIET_MS);
  });
  watcher.on("error", (error) => options.log.warn({ err: error }, "watching the project for changes failed"));
  await new Promise<void>((resolve) => watcher.once("ready", resolve));
  return {
    async close() {
      clearTimeout(timer);
      await watcher.close();
    },
  };
}

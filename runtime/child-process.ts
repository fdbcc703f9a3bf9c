/**
 * Starting a child process, waiting for it, and stopping it: SIGTERM first, SIGKILL when it
 * has not exited within a grace period. The embedded nats-server and the test support's
 * servers and CLI processes all go through it.
 */
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";

/** How a child process ended. */
export interface ChildExit {
  /** Its exit code; null when a signal ended it, or when it never started. */
  readonly code: number | null;
  /** The signal that ended it, if one did. */
  readonly signal: NodeJS.Signals | null;
}

/** Options for {@link spawnChild}: Node's spawn options, and where the output goes. */
export interface SpawnChildOptions extends SpawnOptions {
  /**
   * Appends the child's stdout and stderr to this file (its stdin is ignored); `stdio` is
   * not used then. The file is closed in this process as soon as the child has it.
   */
  readonly logFile?: string;
}

/** A child process started by {@link spawnChild}. */
export class SpawnedChild {
  /** Node's handle: the pid, the piped streams, and `kill()` for other signals. */
  readonly process: ChildProcess;
  /** Resolves once the process runs; rejects with the spawn error (`ENOENT`: no such binary). */
  readonly spawned: Promise<void>;
  /** Resolves once the process has exited, or has failed to start. Never rejects. */
  readonly exited: Promise<ChildExit>;
  #exit?: ChildExit;

  /** @internal use {@link spawnChild} */
  constructor(child: ChildProcess) {
    this.process = child;
    let started = false;
    let onSpawned!: () => void;
    let onSpawnFailed!: (error: Error) => void;
    let onExit!: (exit: ChildExit) => void;
    this.spawned = new Promise<void>((resolve, reject) => {
      onSpawned = resolve;
      onSpawnFailed = reject;
    });
    // Nobody need wait for the start: a failed one shows in `exited` as well.
    this.spawned.catch(() => {});
    this.exited = new Promise<ChildExit>((resolve) => {
      onExit = resolve;
    });
    const exit = (value: ChildExit): void => {
      this.#exit ??= value;
      onExit(this.#exit);
    };
    child.once("spawn", () => {
      started = true;
      onSpawned();
    });
    child.once("exit", (code, signal) => exit({ code, signal }));
    // Before the start, an error means it never started (and no 'exit' follows); after it,
    // only a failed kill() emits one, and the exit still comes or already came.
    child.on("error", (error) => {
      if (started) return;
      onSpawnFailed(error);
      exit({ code: null, signal: null });
    });
  }

  /** The process id; undefined when the process could not be started. */
  get pid(): number | undefined {
    return this.process.pid;
  }

  /** Whether the process was started and has not exited yet. */
  get running(): boolean {
    return this.#exit === undefined && this.process.pid !== undefined;
  }

  /**
   * Sends SIGTERM and waits for the exit; SIGKILL after `graceMs` if the process is still
   * there. Resolves at once when it is not running.
   */
  async stop(graceMs: number): Promise<ChildExit> {
    if (!this.running) return this.exited;
    this.process.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<"expired">((resolve) => {
      timer = setTimeout(() => resolve("expired"), graceMs);
    });
    const first = await Promise.race([this.exited, grace]);
    clearTimeout(timer);
    return first === "expired" ? this.kill() : first;
  }

  /** Sends SIGKILL and waits for the exit. Resolves at once when the process is not running. */
  kill(): Promise<ChildExit> {
    if (this.running) this.process.kill("SIGKILL");
    return this.exited;
  }
}

/**
 * Spawns `command` with `args`. Returns at once: await {@link SpawnedChild.spawned} to know
 * it started, {@link SpawnedChild.exited} for its end.
 */
export function spawnChild(command: string, args: readonly string[], options: SpawnChildOptions = {}): SpawnedChild {
  const { logFile, ...spawnOptions } = options;
  if (logFile === undefined) return new SpawnedChild(spawn(command, args, spawnOptions));
  const fd = openSync(logFile, "a");
  try {
    return new SpawnedChild(spawn(command, args, { ...spawnOptions, stdio: ["ignore", fd, fd] }));
  } finally {
    // The child holds its own copy from the moment spawn() returns.
    closeSync(fd);
  }
}

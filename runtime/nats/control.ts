/**
 * Operators' control of functions across the fleet, in the KV bucket `JETFN_CONTROL`:
 *
 * - `pause.<function>` holds a {@link PauseRecord}: `jetfn pause` writes `paused: true`,
 *   `jetfn resume` writes `paused: false` (so the last change and its author stay visible).
 *
 * Every host watches the bucket and applies what it reads; the state is the bucket's, not a
 * host's, so a host started later starts paused and a restart does not resume.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { StorageType } from "@nats-io/jetstream";
import { type KV, type KvEntry, Kvm, type KvWatchEntry } from "@nats-io/kv";
import type { NatsConnection, QueuedIterator } from "@nats-io/transport-node";
import type { Pause, PauseRecord } from "../contracts/control.ts";
import type { Logger } from "../telemetry/logger.ts";

/** The KV bucket holding operators' control state. */
export const CONTROL_BUCKET = "JETFN_CONTROL";

/** How long to wait before watching again after the watch ended unasked (a lost connection). */
const REWATCH_DELAY_MS = 1000;

/** The key of a function's pause. */
export function pauseKey(fn: string): string {
  return `pause.${fn}`;
}

/** Creates the control bucket (file storage; each key's last 5 values kept, for the record) or opens it. */
export async function openControlBucket(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).create(CONTROL_BUCKET, { history: 5, storage: StorageType.File });
}

/** Writes a function's pause or resume; resolves once the server stored it. */
export async function writePause(kv: KV, fn: string, record: PauseRecord): Promise<void> {
  await kv.put(pauseKey(fn), JSON.stringify(record));
}

/**
 * A stored pause value as the host applies it: a {@link Pause} while paused, `undefined`
 * when resumed; `"invalid"` for a value jetfn did not write (not JSON, no boolean `paused`).
 */
export function readPause(value: Uint8Array): Pause | undefined | "invalid" {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(value));
  } catch {
    return "invalid";
  }
  if (typeof parsed !== "object" || parsed === null) return "invalid";
  const { paused, reason, at, by } = parsed as Record<string, unknown>;
  if (typeof paused !== "boolean") return "invalid";
  if (!paused) return undefined;
  return {
    ...(typeof reason === "string" && reason !== "" ? { reason } : {}),
    at: typeof at === "string" ? at : "",
    by: typeof by === "string" ? by : "",
  };
}

export interface PauseWatchOptions {
  readonly kv: KV;
  /** The functions of this host: keys of others are ignored. */
  readonly functions: readonly string[];
  /** Applies one function's state: a pause, or `undefined` for running. */
  readonly apply: (fn: string, pause: Pause | undefined) => void;
  readonly log: Logger;
}

/**
 * Keeps this host's functions paused or running as `JETFN_CONTROL` says. {@link start}
 * resolves once every function's current state is applied (so pulling can start in the
 * right state); changes then arrive through a KV watch, within moments of their write.
 * Each key's revision is remembered, so an older value (the watch's replay after a
 * re-watch, a read that crossed a write) never undoes a newer one.
 */
export class PauseWatch {
  readonly #options: PauseWatchOptions;
  readonly #functions: ReadonlySet<string>;
  /** Per function, the revision of the value applied last. */
  readonly #revisions = new Map<string, number>();
  #watch?: QueuedIterator<KvWatchEntry>;
  readonly #stop = new AbortController();
  #running?: Promise<void>;

  constructor(options: PauseWatchOptions) {
    this.#options = options;
    this.#functions = new Set(options.functions);
  }

  /** Watches the bucket, and reads each function's key once: resolves when all are applied. */
  async start(): Promise<void> {
    const { kv, functions } = this.#options;
    this.#watch = await kv.watch({ key: pauseKey(">") });
    this.#running = this.#follow(this.#watch);
    const current = await Promise.all(functions.map((fn) => kv.get(pauseKey(fn))));
    for (const entry of current) if (entry) this.#entry(entry);
  }

  /** Stops watching. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#watch?.stop();
    await this.#running;
  }

  async #follow(watch: QueuedIterator<KvWatchEntry>): Promise<void> {
    const stopped = this.#stop.signal;
    try {
      for await (const entry of watch) this.#entry(entry);
    } catch (error) {
      if (!stopped.aborted) this.#options.log.warn({ err: error }, `watching ${CONTROL_BUCKET} failed`);
    }
    // The watch ends when asked to, or with the connection: watch again, the current values first.
    while (!stopped.aborted) {
      await sleep(REWATCH_DELAY_MS, undefined, { signal: stopped }).catch(() => {});
      if (stopped.aborted) return;
      try {
        this.#watch = await this.#options.kv.watch({ key: pauseKey(">") });
        this.#options.log.info(`watching ${CONTROL_BUCKET} again`);
        return this.#follow(this.#watch);
      } catch (error) {
        this.#options.log.debug({ err: error }, `watching ${CONTROL_BUCKET} again failed; retrying`);
      }
    }
  }

  #entry(entry: KvEntry): void {
    const fn = entry.key.slice(pauseKey("").length);
    if (!this.#functions.has(fn)) return;
    if (entry.revision <= (this.#revisions.get(fn) ?? 0)) return;
    this.#revisions.set(fn, entry.revision);
    if (entry.operation !== "PUT") return this.#options.apply(fn, undefined);
    const pause = readPause(entry.value);
    if (pause === "invalid") {
      this.#options.log.warn(
        { function: fn, key: entry.key, value: entry.string().slice(0, 200) },
        `ignoring a value in ${CONTROL_BUCKET} that jetfn did not write`,
      );
      return;
    }
    this.#options.apply(fn, pause);
  }
}

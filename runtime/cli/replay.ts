import { isDuration, parseDuration } from "../config/duration.ts";
import { loadEnv } from "../config/env.ts";
import { loadConfig } from "../config/load.ts";
import { subjectCovers } from "../config/subjects.ts";
import type { CompiledFunction } from "../config/types.ts";
import { replaySubject } from "../contracts/replay.ts";
import { type ReplayBound, type ReplayCounts, type ReplayOptions, replayConsumerExists, replayEvents } from "../nats/replay-copies.ts";
import type { ValuesOf } from "./commands.ts";
import { serverLabel, UsageError, withClients } from "./common.ts";

/** `jetfn replay`: parses, copies with progress on stderr, and prints the counts. */
export async function replay(values: ValuesOf<"replay">, positionals: readonly string[]): Promise<number> {
  const [name] = positionals;
  if (!name || positionals.length > 1) throw new UsageError("replay needs the <function> to replay events to");
  if ((values["from-seq"] === undefined) === (values.since === undefined)) {
    throw new UsageError("replay needs where to start: --from-seq <n> or --since <time|duration>, one of them");
  }
  const from: ReplayBound =
    values["from-seq"] !== undefined ? { seq: positive(values["from-seq"], "from-seq") } : { time: time(values.since!, "since") };
  const until =
    values.until === undefined
      ? undefined
      : /^\d+$/.test(values.until)
        ? { seq: positive(values.until, "until") }
        : { time: time(values.until, "until") };
  if (values.key !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(values.key))
    throw new UsageError(`--key expects letters, digits, "-" or "_", got ${values.key}`);

  const env = loadEnv();
  const config = loadConfig(env.configFile);
  const fn = config.functions.find((f) => f.name === name);
  if (!fn) throw new UsageError(`no function named ${name} in ${config.file}`);
  if (values.subject !== undefined && !fn.subjects.some((s) => subjectCovers(s, values.subject!))) {
    throw new UsageError(`--subject ${values.subject} is not within ${fn.name}'s subjects (${fn.subjects.join(", ")})`);
  }
  const options: ReplayOptions = {
    from,
    ...(until ? { until } : {}),
    ...(values.subject !== undefined ? { subject: values.subject } : {}),
    ...(values.limit !== undefined ? { limit: positive(values.limit, "limit") } : {}),
    ...(values.key !== undefined ? { key: values.key } : {}),
    dryRun: values["dry-run"] ?? false,
  };
  const where = serverLabel(env);
  try {
    return await withClients(env, (clients, _server, log) =>
      run(fn, options, async (progress) => {
        if (!options.dryRun && !(await replayConsumerExists(clients, fn))) {
          console.error(`note: no host has consumed ${fn.name}'s replays yet; the copies wait in JETFN_REPLAY until one starts`);
        }
        return replayEvents(clients, fn, { ...options, progress }, log);
      }),
    );
  } catch (error) {
    throw new Error(`replay of ${fn.name} at ${where}: ${(error as Error).message}`, { cause: error });
  }
}

async function run(
  fn: CompiledFunction,
  options: ReplayOptions,
  copy: (progress: (counts: ReplayCounts) => void) => Promise<ReplayCounts>,
): Promise<number> {
  const progress = new Progress(process.stderr, options.dryRun ? "counting" : "replaying");
  let counts: ReplayCounts;
  try {
    counts = await copy((c) => progress.update(c));
  } finally {
    progress.end();
  }
  const range = counts.read > 0 ? ` (${fn.stream} up to #${counts.seq})` : "";
  if (options.dryRun) {
    console.log(`dry run: ${counts.read} event(s) of ${fn.stream} would be replayed to ${fn.name}${range}; nothing published`);
  } else {
    console.log(
      `replayed to ${fn.name}${range}: read ${counts.read}, published ${counts.published}, duplicates skipped ${counts.duplicates} (to ${replaySubject(fn.name)})`,
    );
  }
  return 0;
}

/**
 * A long replay's progress on stderr: on a terminal, one line redrawn in place; otherwise
 * a line every few seconds (a log collector would keep every redraw).
 */
class Progress {
  readonly #out: NodeJS.WriteStream;
  readonly #label: string;
  readonly #tty: boolean;
  readonly #timer: NodeJS.Timeout;
  #counts?: ReplayCounts;
  #shown?: string;

  constructor(out: NodeJS.WriteStream, label: string) {
    this.#out = out;
    this.#label = label;
    this.#tty = out.isTTY === true;
    this.#timer = setInterval(() => this.#draw(), this.#tty ? 100 : 5000);
    this.#timer.unref();
  }

  update(counts: ReplayCounts): void {
    this.#counts = counts;
  }

  end(): void {
    clearInterval(this.#timer);
    if (!this.#tty) return;
    this.#draw();
    if (this.#shown !== undefined) this.#out.write("\n");
  }

  #draw(): void {
    const c = this.#counts;
    if (!c) return;
    const text = `${this.#label} ${c.read}/${c.total}: published ${c.published}, duplicates ${c.duplicates}${c.seq ? `, at #${c.seq}` : ""}`;
    if (!this.#tty) {
      if (text !== this.#shown) this.#out.write(`${text}\n`);
    } else {
      const width = 24;
      const done = c.total > 0 ? Math.min(width, Math.floor((c.read / c.total) * width)) : width;
      this.#out.write(`\r[${"#".repeat(done)}${"-".repeat(width - done)}] ${text}\x1b[K`);
    }
    this.#shown = text;
  }
}

function positive(text: string, option: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`--${option} expects a positive integer, got ${text}`);
  return n;
}

/** A time: ISO 8601 (`2024-05-01T12:00:00Z`), or a duration before now (`2h`). */
function time(text: string, option: string): Date {
  if (isDuration(text)) return new Date(Date.now() - parseDuration(text));
  const at = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(at))
    throw new UsageError(`--${option} expects a time like 2024-05-01T12:00:00Z or a duration before now like 2h, got ${text}`);
  return new Date(at);
}

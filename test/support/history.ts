/**
 * The bad-day suite's history and its checker (issue 22). Each test handler appends what it
 * did to a JSON-lines file (a file, not a NATS subject: a handler cut off from the broker
 * must still be able to say it ran): one line when a run starts, one when it ends. The
 * checker reads that file and what was published, and judges:
 *
 * - **lost**: an event published (its publish acknowledged) that never ran to success;
 * - **duplicates**: successful runs beyond one per event (bounded by what was in flight at
 *   the faults);
 * - **order** (for keyed events): a run of a key's event that started before the first
 *   success of the key's previous event;
 * - **overlaps** (for keyed events): two runs of one key at the same time.
 *
 * A run that started and never ended (its host killed, or cut off) counts for nothing but
 * `unfinished`; for overlaps it lasts as long as its replica went on writing the history (a
 * killed replica's run ends with it; a stalled one's goes on until it wrote its last line).
 */
import { appendFileSync, existsSync, readFileSync } from "node:fs";

/** One line of the history. */
export interface HistoryLine {
  readonly kind: "start" | "end";
  /** The event: what the test published it as. */
  readonly id: string;
  /** Its ordering key, when it has one. */
  readonly key?: string;
  /** Unique per run (a start and its end share it). */
  readonly run: string;
  /** Which replica ran it (its pid, say). */
  readonly replica: string;
  /** Epoch ms. */
  readonly at: number;
  /** On an end: whether the run succeeded. */
  readonly ok?: boolean;
}

/** What the test published: each event's id, in publish order per key. */
export interface Published {
  readonly id: string;
  readonly key?: string;
}

export interface Verdict {
  readonly published: number;
  readonly succeeded: number;
  readonly lost: readonly string[];
  readonly duplicates: number;
  readonly unfinished: number;
  readonly orderViolations: readonly string[];
  readonly overlaps: readonly string[];
}

/** Appends one line to the history file (from a handler). */
export function record(file: string, line: HistoryLine): void {
  appendFileSync(file, `${JSON.stringify(line)}\n`);
}

/** Every line of a history file; an empty history when there is none yet. */
export function readHistory(file: string): HistoryLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as HistoryLine);
}

interface Run {
  readonly id: string;
  readonly key?: string;
  readonly run: string;
  readonly replica: string;
  readonly start: number;
  end?: number;
  ok?: boolean;
}

/** Judges a history against what was published (see the module's comment). */
export function judge(history: readonly HistoryLine[], published: readonly Published[]): Verdict {
  const runs = new Map<string, Run>();
  for (const line of history) {
    if (line.kind === "start")
      runs.set(line.run, {
        id: line.id,
        ...(line.key !== undefined ? { key: line.key } : {}),
        run: line.run,
        replica: line.replica,
        start: line.at,
      });
  }
  for (const line of history) {
    const run = runs.get(line.run);
    if (line.kind === "end" && run) {
      run.end = line.at;
      run.ok = line.ok === true;
    }
  }
  const all = [...runs.values()];
  const successes = new Map<string, number[]>();
  for (const run of all) {
    if (!run.ok || run.end === undefined) continue;
    const ends = successes.get(run.id);
    if (ends) ends.push(run.end);
    else successes.set(run.id, [run.end]);
  }
  const lost = published.filter((event) => !successes.has(event.id)).map((event) => event.id);
  const succeeded = [...successes.values()].reduce((sum, ends) => sum + ends.length, 0);

  const orderViolations: string[] = [];
  const overlaps: string[] = [];
  const keys = new Map<string, string[]>();
  for (const event of published) {
    if (event.key === undefined) continue;
    const ids = keys.get(event.key);
    if (ids) ids.push(event.id);
    else keys.set(event.key, [event.id]);
  }
  const runsOf = new Map<string, Run[]>();
  const runsOfKey = new Map<string, Run[]>();
  for (const run of all) {
    const byId = runsOf.get(run.id);
    if (byId) byId.push(run);
    else runsOf.set(run.id, [run]);
    if (run.key === undefined) continue;
    const byKey = runsOfKey.get(run.key);
    if (byKey) byKey.push(run);
    else runsOfKey.set(run.key, [run]);
  }
  /** Each replica's last line: when an unfinished run of it ended at the latest. */
  const lastOf = new Map<string, number>();
  for (const line of history) lastOf.set(line.replica, Math.max(lastOf.get(line.replica) ?? 0, line.at));
  const endOf = (run: Run) => run.end ?? lastOf.get(run.replica) ?? run.start;
  for (const [key, ids] of keys) {
    for (let i = 1; i < ids.length; i++) {
      const before = successes.get(ids[i - 1]!);
      if (!before) continue; // lost: reported as such
      const firstSuccess = Math.min(...before);
      for (const run of runsOf.get(ids[i]!) ?? []) {
        if (run.start < firstSuccess)
          orderViolations.push(`${key}: ${ids[i]} started ${firstSuccess - run.start} ms before ${ids[i - 1]} first succeeded`);
      }
    }
    // Against the run of the key that ends last so far: any earlier one still running.
    let latest: Run | undefined;
    for (const run of (runsOfKey.get(key) ?? []).sort((a, b) => a.start - b.start)) {
      const latestEnd = latest ? endOf(latest) : 0;
      if (latest && run.start < latestEnd) {
        overlaps.push(`${key}: ${run.id} (${run.run}) started ${latestEnd - run.start} ms before ${latest.id} (${latest.run}) ended`);
      }
      if (!latest || endOf(run) > latestEnd) latest = run;
    }
  }
  return {
    published: published.length,
    succeeded,
    lost,
    duplicates: succeeded - successes.size,
    unfinished: all.filter((run) => run.end === undefined).length,
    orderViolations,
    overlaps,
  };
}

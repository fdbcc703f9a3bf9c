/**
 * Debounced functions (`debounce:` in functions.yaml, issue 18): the names, the wire format
 * of a fire, and what an event or a fire does to its key's entry. Names users and scripts
 * rely on.
 *
 * Each event of a debounced function is taken, not run: its key's entry in the KV bucket
 * `JETFN_DEBOUNCE_KEYS` records it as the newest of the key's open window, the event is
 * scheduled as a delayed event (contracts/delayed.ts) for `min(now + period, window's first +
 * maxWait)` to
 *
 *     jetfn.debounce.<function>.<event's stream sequence>.<event's subject>   (stream JETFN_DEBOUNCE)
 *
 * with its data and headers, and acked. When a fire arrives (through the durable
 * `jetfn_debounce_<function>`), it runs the handler if its event is still the newest of the
 * key (then the window closes: the fire claims the entry), or if it is the fire that claimed
 * it (a retry); any other fire is acked unrun. Its event was counted in
 * `jetfn_debounced_total` when a newer one took its place.
 */
import { Buffer } from "node:buffer";

/** The stream the fires are delivered to: a work queue, one subject per function. */
export const DEBOUNCE_STREAM = "JETFN_DEBOUNCE";
export const DEBOUNCE_PREFIX = "jetfn.debounce";
export const DEBOUNCE_SUBJECTS = `${DEBOUNCE_PREFIX}.>`;

/** The KV bucket of every debounced function's keys. */
export const DEBOUNCE_BUCKET = "JETFN_DEBOUNCE_KEYS";

/**
 * How long an entry outlives its last write (the bucket's max age). An open window is written
 * by each of its events and fires at most `period` (at most a day) after the last; a closed
 * one is kept this long so that a late redelivery of an event it ran is known.
 */
export const DEBOUNCE_ENTRY_TTL_MS = 7 * 24 * 60 * 60 * 1000;

/** The longest `period`: a day. */
export const MAX_DEBOUNCE_PERIOD_MS = 24 * 60 * 60 * 1000;

/** The durable that reads a function's fires. Named after the function, as its subject is. */
export function debounceDurable(fn: string): string {
  return `jetfn_debounce_${fn}`;
}

/** The filter of a function's fires: `jetfn.debounce.<function>.>`. */
export function debounceFilter(fn: string): string {
  return `${DEBOUNCE_PREFIX}.${fn}.>`;
}

/** Where the fire of event `seq` (on `subject`) of function `fn` is delivered. */
export function fireSubject(fn: string, seq: number, subject: string): string {
  return `${DEBOUNCE_PREFIX}.${fn}.${seq}.${subject}`;
}

/** A fire's subject -> its function, its event's sequence and subject; undefined if it is not one. */
export function parseFireSubject(subject: string): { fn: string; seq: number; subject: string } | undefined {
  const match = /^jetfn\.debounce\.([^.]+)\.([1-9][0-9]{0,15})\.(.+)$/.exec(subject);
  return match ? { fn: match[1]!, seq: Number(match[2]), subject: match[3]! } : undefined;
}

/** The entry's key in `JETFN_DEBOUNCE_KEYS`: `<function>.k<the event key, base64url>` (any key, even empty). */
export function entryKey(fn: string, key: string): string {
  return `${fn}.k${Buffer.from(key, "utf8").toString("base64url")}`;
}

/** One key's state, as JSON in `JETFN_DEBOUNCE_KEYS`. */
export interface DebounceEntry {
  /** The newest event of the open window (its stream sequence); 0 while no window is open. */
  readonly newest: number;
  /** When the open window's first event came, epoch ms (0 while none is open). */
  readonly since: number;
  /** The highest event sequence ever taken: a redelivery of an older event is not taken again. */
  readonly high: number;
  /** The fire running the closed window's event (its sequence in `JETFN_DEBOUNCE`), until it settles. */
  readonly running?: number;
}

/** Reads an entry's value; undefined when it is not one (it is then written anew). */
export function parseEntry(value: unknown): DebounceEntry | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { newest, since, high, running } = value as Record<string, unknown>;
  const count = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
  if (!count(newest) || !count(since) || !count(high) || (running !== undefined && !count(running))) return undefined;
  return { newest, since, high, ...(running !== undefined ? { running } : {}) };
}

/** What taking an event does. */
export type EventStep =
  /** Write `entry`, schedule the event's fire, ack it; `superseded`: the window's previous newest will not run. */
  | { readonly kind: "take"; readonly entry: DebounceEntry; readonly superseded: boolean }
  /** Already taken as the newest (a redelivery): schedule its fire again (deduplicated), ack it. */
  | { readonly kind: "again" }
  /** Older than what was taken (it arrived after a newer one, or was taken before): ack it. */
  | { readonly kind: "old" };

/** What event `seq`, arriving at `now`, does to its key's `entry`. */
export function takeEvent(entry: DebounceEntry | undefined, seq: number, now: number): EventStep {
  if (entry && seq <= entry.high) return entry.newest === seq ? { kind: "again" } : { kind: "old" };
  const open = entry !== undefined && entry.newest > 0;
  return {
    kind: "take",
    superseded: open,
    entry: {
      newest: seq,
      since: open ? entry.since : now,
      high: seq,
      ...(entry?.running !== undefined ? { running: entry.running } : {}),
    },
  };
}

/** When the open window of `entry` fires, if nothing newer comes: `period` after now, or `maxWait` after its first event. */
export function fireAt(entry: DebounceEntry, now: number, periodMs: number, maxWaitMs?: number): number {
  return maxWaitMs === undefined ? now + periodMs : Math.min(now + periodMs, entry.since + maxWaitMs);
}

/** What a fire does: run (first claiming the entry, when `claim` is given), or nothing. */
export type FireStep = { readonly kind: "run"; readonly claim?: DebounceEntry } | { readonly kind: "stale" };

/** What the fire `fire` (its own sequence) of event `seq` does to its key's `entry`. */
export function takeFire(entry: DebounceEntry | undefined, seq: number, fire: number): FireStep {
  if (entry?.running === fire) return { kind: "run" };
  if (entry && entry.newest === seq) return { kind: "run", claim: { newest: 0, since: 0, high: entry.high, running: fire } };
  return { kind: "stale" };
}

/** The entry once the run of `fire` settled (its claim dropped); undefined when the claim is no longer its. */
export function releaseFire(entry: DebounceEntry | undefined, fire: number): DebounceEntry | undefined {
  if (entry?.running !== fire) return undefined;
  const { running: _, ...rest } = entry;
  return rest;
}

import { parseDuration } from "../sdk/duration.ts";
import { isOwnHeader } from "./dead-letter.ts";

/**
 * Delayed events (issue 18): the wire format, so that a producer in any language schedules
 * an event with a plain JetStream publish. Names users and scripts rely on.
 *
 * An event that is due at `T` (epoch milliseconds) for the subject `orders.reminder` is
 * published to
 *
 *     jetfn.delayed.<floor(T / 1000)>.orders.reminder        (stream JETFN_DELAYED)
 *
 * with its own data and headers (a `traceparent` included) plus `Jetfn-Deliver-At: <T>`.
 * The JetStream sequence in the PubAck is the event's id (`jetfn delayed cancel <id>`).
 * When `T` has come, one host's mover publishes the data and headers, less `Jetfn-*` and
 * `Nats-*`, to `orders.reminder`, with `Nats-Msg-Id: delayed:<stream created ms>:<id>`,
 * then deletes the event from `JETFN_DELAYED`.
 *
 * - **The bucket** (the token after `jetfn.delayed.`) is the due time in whole epoch
 *   seconds: when the mover looks at the event. Per second, because due events must arrive
 *   within a second: the mover reads a bucket once, as its second begins, and each empty
 *   second costs one small request. An event due in the past (an `at` that has gone by) is
 *   put in the bucket of the producer's now, and is delivered at once.
 * - **The target** is the rest of the subject, so that `jetfn delayed list --subject` is a
 *   filter the server applies (`jetfn.delayed.*.orders.>`), and no header can disagree with
 *   it. It is a literal subject, not under `jetfn.delayed.`.
 * - **`Jetfn-Deliver-At`** says when, within its bucket, the event goes: epoch milliseconds
 *   (digits only, what jetfn writes); an ISO 8601 time with a zone (`2025-06-01T09:00:00Z`)
 *   is accepted too. Absent or unreadable: the start of the bucket. A time in a later bucket
 *   than the subject's is honoured: the mover moves the event to that bucket when it finds
 *   it (it then has a new id).
 */
export const DELAYED_STREAM = "JETFN_DELAYED";
export const DELAYED_PREFIX = "jetfn.delayed";
export const DELAYED_SUBJECTS = [`${DELAYED_PREFIX}.>`];

/** One bucket spans this much of the due time. */
export const DELAYED_BUCKET_MS = 1000;

/** The longest delay accepted: a year (365 days). */
export const MAX_DELAY_MS = 365 * 24 * 60 * 60 * 1000;

export const DelayedHeader = Object.freeze({
  /** When the event is due: epoch milliseconds (ISO 8601 with a zone accepted when read). */
  DeliverAt: "Jetfn-Deliver-At",
});

/** A delay or due time that cannot be scheduled: the message says why, for the CLI and handlers. */
export class DelayError extends RangeError {
  override readonly name = "DelayError";
}

/** The bucket of a due time (epoch ms): its whole epoch seconds. */
export function bucketOf(epochMs: number): number {
  return Math.floor(epochMs / DELAYED_BUCKET_MS);
}

/** When `bucket` begins, in epoch ms. */
export function bucketStart(bucket: number): number {
  return bucket * DELAYED_BUCKET_MS;
}

/** `jetfn.delayed.<bucket>.<target>`: where an event due in `bucket` for `target` is published. */
export function delayedSubject(bucket: number, target: string): string {
  return `${DELAYED_PREFIX}.${bucket}.${target}`;
}

/** The filter of every event in `bucket`: `jetfn.delayed.<bucket>.>`. */
export function bucketFilter(bucket: number): string {
  return `${DELAYED_PREFIX}.${bucket}.>`;
}

/** The filter of the delayed events whose target matches `subject` (wildcards allowed), in any bucket. */
export function targetFilter(subject?: string): string {
  return subject === undefined || subject === ">" ? DELAYED_SUBJECTS[0]! : `${DELAYED_PREFIX}.*.${subject}`;
}

/** `jetfn.delayed.1718000000.orders.reminder` -> its bucket and target; undefined if it is not one. */
export function parseDelayedSubject(subject: string): { bucket: number; target: string } | undefined {
  const prefix = `${DELAYED_PREFIX}.`;
  if (!subject.startsWith(prefix)) return undefined;
  const rest = subject.slice(prefix.length);
  const dot = rest.indexOf(".");
  if (dot <= 0) return undefined;
  const token = rest.slice(0, dot);
  const target = rest.slice(dot + 1);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(token) || targetProblem(target) !== undefined) return undefined;
  return { bucket: Number(token), target };
}

/** Why `target` cannot receive delayed events, or undefined when it can. */
export function targetProblem(target: string): string | undefined {
  if (typeof target !== "string" || target.length === 0) return "the target subject is empty";
  if (/[\s\0]/.test(target)) return `the target subject ${JSON.stringify(target)} contains whitespace`;
  const tokens = target.split(".");
  if (tokens.some((t) => t.length === 0)) return `the target subject ${JSON.stringify(target)} has an empty token`;
  if (tokens.some((t) => t.includes("*") || t.includes(">")))
    return `the target subject ${JSON.stringify(target)} has a wildcard; a delayed event goes to one literal subject`;
  if (target === DELAYED_PREFIX || target.startsWith(`${DELAYED_PREFIX}.`))
    return `the target subject ${JSON.stringify(target)} is under ${DELAYED_PREFIX}., which holds the delayed events themselves`;
  return undefined;
}

/** `Jetfn-Deliver-At`'s value for a due time: epoch milliseconds, digits only. */
export function formatDeliverAt(epochMs: number): string {
  return String(Math.round(epochMs));
}

const EPOCH_MS = /^[0-9]{1,16}$/;
/** ISO 8601 date and time with a zone: `2025-06-01T09:00:00Z`, `2025-06-01T11:00:00.250+02:00`. */
const ISO_WITH_ZONE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

/** Reads `Jetfn-Deliver-At`: epoch ms or ISO 8601 with a zone; undefined for anything else. */
export function parseDeliverAt(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = text.trim();
  if (EPOCH_MS.test(value)) return Number(value);
  if (!ISO_WITH_ZONE.test(value)) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}

/** When to deliver: after `delay` (a duration such as `10m`, or milliseconds), or `at` a time. */
export interface DelayedWhen {
  readonly delay?: string | number;
  /** A Date, an ISO 8601 time with a zone, or epoch ms. In the past: delivered at once. */
  readonly at?: Date | string | number;
}

/**
 * The due time (epoch ms) of `when`, seen at `now`. Throws a {@link DelayError} for a
 * negative delay, one over a year, an `at` over a year ahead, an unreadable time, or
 * both or neither of `delay` and `at`. An `at` in the past is not an error: it is due now.
 */
export function resolveDeliverAt(when: DelayedWhen, now: number): number {
  const hasDelay = when.delay !== undefined;
  const hasAt = when.at !== undefined;
  if (hasDelay === hasAt) throw new DelayError(hasDelay ? "give either delay or at, not both" : "give a delay or an at time");
  if (hasDelay) return now + delayMs(when.delay!);
  const at = atMs(when.at!);
  if (at - now > MAX_DELAY_MS) {
    throw new DelayError(`at must be at most a year (365 days) ahead, got ${new Date(at).toISOString()}`);
  }
  return at;
}

function delayMs(delay: string | number): number {
  let value: number;
  if (typeof delay === "number") value = delay;
  else {
    if (/^\s*-/.test(delay)) throw new DelayError(`delay must not be negative, got ${JSON.stringify(delay)}`);
    try {
      value = parseDuration(delay);
    } catch {
      throw new DelayError(`delay must be a duration like 10m (units ms, s, m, h), got ${JSON.stringify(delay)}`);
    }
  }
  if (!Number.isFinite(value)) throw new DelayError(`delay must be a finite number of milliseconds, got ${delay}`);
  if (value < 0) throw new DelayError(`delay must not be negative, got ${value} ms`);
  if (value > MAX_DELAY_MS) throw new DelayError(`delay must be at most a year (8760h), got ${JSON.stringify(delay)}`);
  return value;
}

function atMs(at: Date | string | number): number {
  const ms = at instanceof Date ? at.getTime() : typeof at === "number" ? at : ISO_WITH_ZONE.test(at) ? Date.parse(at) : Number.NaN;
  if (!Number.isFinite(ms)) {
    throw new DelayError(`at must be a time in ISO 8601 with a zone, such as 2025-06-01T09:00:00Z, got ${JSON.stringify(at)}`);
  }
  return ms;
}

/** What a plain publish sends to schedule an event: see the top of this file. */
export interface DelayedPublication {
  readonly subject: string;
  readonly headers: Record<string, string>;
}

/**
 * The subject and headers that schedule an event for `target` at `deliverAt` (epoch ms,
 * from {@link resolveDeliverAt}): the event's own `headers` plus `Jetfn-Deliver-At`. Throws
 * a {@link DelayError} for a bad target or a time over a year after `now`.
 */
export function delayedPublication(
  target: string,
  deliverAt: number,
  headers: Readonly<Record<string, string>> = {},
  now: number = Date.now(),
): DelayedPublication {
  const problem = targetProblem(target);
  if (problem !== undefined) throw new DelayError(problem);
  if (!Number.isFinite(deliverAt)) throw new DelayError(`the due time must be a finite epoch ms, got ${deliverAt}`);
  if (deliverAt - now > MAX_DELAY_MS)
    throw new DelayError(`a delayed event may be due at most a year ahead, got ${new Date(deliverAt).toISOString()}`);
  const due = Math.round(deliverAt);
  const bucket = bucketOf(Math.max(due, now));
  return { subject: delayedSubject(bucket, target), headers: { ...headers, [DelayedHeader.DeliverAt]: formatDeliverAt(due) } };
}

/**
 * When the mover delivers an event found in `bucket` whose `Jetfn-Deliver-At` reads
 * `deliverAt`: that time, or the bucket's start when absent.
 */
export function dueOf(bucket: number, deliverAt: number | undefined): number {
  return deliverAt ?? bucketStart(bucket);
}

/** Whether the mover passes a header of the delayed event on to its target: all but `Jetfn-*` and `Nats-*`. */
export function isForwardedHeader(name: string): boolean {
  return !isOwnHeader(name);
}

/** An event's id: its sequence in `JETFN_DELAYED`, in decimal. */
export function formatDelayedId(seq: number): string {
  return String(seq);
}

/** `"42"` -> 42; undefined for anything but a positive integer. */
export function parseDelayedId(id: string): number | undefined {
  const text = typeof id === "string" ? id.trim() : "";
  return /^[1-9][0-9]{0,15}$/.test(text) ? Number(text) : undefined;
}

/**
 * The `Nats-Msg-Id` of the event's delivery: a mover that dies between delivering and
 * deleting it, and the next that delivers it again, make one message in a target stream
 * whose duplicate window (2 minutes by default) covers the time between. The stream's
 * creation time keeps ids of a re-created `JETFN_DELAYED` apart.
 */
export function deliveryMsgId(streamCreatedMs: number, seq: number): string {
  return `delayed:${streamCreatedMs}:${seq}`;
}

/** One waiting delayed event, as `jetfn delayed list` shows it. */
export interface DelayedEvent {
  readonly id: string;
  readonly target: string;
  /** When it is due (epoch ms). */
  readonly deliverAt: number;
  /** When it was scheduled: its time in `JETFN_DELAYED` (epoch ms). */
  readonly scheduledAt: number;
  /** Its headers as they will be delivered (less `Jetfn-*` and `Nats-*`). */
  readonly headers: Readonly<Record<string, string>>;
  readonly data: Uint8Array;
}

/** Why a delivery of a delayed event failed: a broker failure, or `too-large` for the target stream. */
export type DelayedFailureReason = "storage-full" | "timeout" | "no-responders" | "disconnected" | "refused" | "too-large";

/** What a host reports of its mover (the metrics `jetfn_delayed_*`). */
export interface DelayedMoverStats {
  /** This host's mover holds the lease and moves due events. */
  readonly moving: boolean;
  /** Events in `JETFN_DELAYED` (waiting, plus delivered ones not yet deleted), as last read; undefined before the first read. */
  readonly waiting: number | undefined;
  /** Deliveries made by this host (each event once; a duplicate of an earlier delivery is counted in `duplicates`). */
  readonly delivered: number;
  /** Deliveries the target stream already had (a mover died between delivering and deleting). */
  readonly duplicates: number;
  /** Failed deliveries (each is tried again later, never dropped). */
  readonly failures: number;
  /** Due events found gone when their time came (cancelled). */
  readonly cancelled: number;
  /** Due events whose target refused them and that wait to be tried again. */
  readonly parked: number;
}

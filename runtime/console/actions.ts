import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { hexDump, parseJsonBody } from "../cli/dead-letter-view.ts";
import { parseTimeArgument } from "../cli/time-argument.ts";
import { subjectCovers } from "../config/subjects.ts";
import type { CompiledFunction } from "../config/types.ts";
import type { NatsClients } from "../nats/clients.ts";
import { openControlBucket, pauseKey, readPause, writePause } from "../nats/control.ts";
import { getDeadLetter, listDeadLetters, planDeadLetterPurge, redriveDeadLetters } from "../nats/dead-letters.ts";
import { type ReplayBound, type ReplayOptions, replayConsumerExists, replayEvents } from "../nats/replay-copies.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { DeadLetterPage, DeadLetterRow, ReplayProgress, ReplayRequest } from "./view.ts";

/** A request the console refuses as given: answered 400 with the message. */
export class ActionError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

/** The dead letters a list shows at most. */
export const LIST_LIMIT = 500;

/** Replays kept for their progress page after they ended. */
const KEPT_REPLAYS = 50;

export interface ConsoleActionsOptions {
  readonly clients: NatsClients;
  readonly functions: readonly CompiledFunction[];
  /** JETFN_CONSOLE_TRACE_URL. */
  readonly traceUrl?: string;
  readonly log: Logger;
}

/**
 * What the console does on the fleet, through the same code as the CLI: pauses in
 * `JETFN_CONTROL` (as `jetfn pause`), dead letters (as `jetfn dlq`), replays (as `jetfn
 * replay`). Every function name is checked against functions.yaml.
 */
export class ConsoleActions {
  readonly #options: ConsoleActionsOptions;
  readonly #replays = new Map<string, ReplayProgress>();

  constructor(options: ConsoleActionsOptions) {
    this.#options = options;
  }

  /** The function of functions.yaml called `name`; a 404 otherwise. */
  fn(name: string): CompiledFunction {
    const fn = this.#options.functions.find((f) => f.name === name);
    if (!fn) throw new ActionError(`no function named ${name}`, 404);
    return fn;
  }

  /** Pauses (with a reason) or resumes the function on every host, as `jetfn pause|resume` does. */
  async setPaused(name: string, paused: boolean, reason: string | undefined): Promise<string> {
    const fn = this.fn(name);
    const kv = await openControlBucket(this.#options.clients.nc);
    const current = await kv.get(pauseKey(fn.name));
    const was = current?.operation === "PUT" ? readPause(current.value) : undefined;
    if (!paused && (was === undefined || was === "invalid")) return `${fn.name} is not paused`;
    const text = reason?.trim().slice(0, 500);
    await writePause(kv, fn.name, {
      paused,
      ...(paused && text ? { reason: text } : {}),
      at: new Date().toISOString(),
      by: `console@${hostname()}`,
    });
    this.#options.log.info({ function: fn.name, paused, reason: text }, paused ? "paused from the console" : "resumed from the console");
    return paused ? `paused ${fn.name}${text ? ` (reason: ${text})` : ""}` : `resumed ${fn.name}`;
  }

  async deadLetters(name: string): Promise<{ letters: DeadLetterRow[]; more: boolean }> {
    const fn = this.fn(name);
    const letters = await listDeadLetters(this.#options.clients, fn, { limit: LIST_LIMIT + 1 });
    return { letters: letters.slice(0, LIST_LIMIT).map(({ function: _fn, ...row }) => row), more: letters.length > LIST_LIMIT };
  }

  async deadLetter(name: string, seq: number): Promise<DeadLetterPage> {
    const fn = this.fn(name);
    const found = await getDeadLetter(this.#options.clients, fn, seq);
    if (found.kind !== "found") throw new ActionError(`no dead letter ${found.dlqStream}#${seq} of ${fn.name}`, 404);
    const { data, ...letter } = found.letter;
    const json = parseJsonBody(data);
    const body =
      data.length === 0
        ? ({ kind: "empty", text: "" } as const)
        : json
          ? ({ kind: "json", text: JSON.stringify(json.value, null, 2) } as const)
          : ({ kind: "hex", text: hexDump(data) } as const);
    const traceparent = letter.headers.find(([h]) => h.toLowerCase() === "traceparent")?.[1];
    const traceUrl = traceLink(this.#options.traceUrl, traceparent);
    return { ...letter, body, ...(traceUrl ? { traceUrl } : {}) };
  }

  /** Sends the chosen dead letters back (to their subject, or to this function alone); returns how many went. */
  async redrive(name: string, seqs: readonly number[], only: boolean): Promise<{ redriven: number; note?: string }> {
    const fn = this.fn(name);
    const chosen = new Set(seqs);
    const { clients, log } = this.#options;
    let note: string | undefined;
    if (only && !(await replayConsumerExists(clients, fn))) {
      note = `no host has consumed ${fn.name}'s replays yet; they wait in JETFN_REPLAY until one starts`;
    }
    const redriven = await redriveDeadLetters(clients, fn, chosen, only ? { log } : undefined);
    if (!only) {
      const sharing = new Set(
        redriven.flatMap((l) =>
          this.#options.functions.filter((f) => f.name !== fn.name && f.subjects.includes(l.subject)).map((f) => f.name),
        ),
      );
      if (sharing.size > 0) note = `${[...sharing].join(", ")} also receive these subjects and will see them again`;
    }
    log.info({ function: fn.name, redriven: redriven.length, only }, "dead letters redriven from the console");
    return { redriven: redriven.length, ...(note ? { note } : {}) };
  }

  /** Removes the chosen dead letters; returns how many went, and those asked for that were gone already. */
  async purge(name: string, seqs: readonly number[]): Promise<{ removed: number; missing: number[] }> {
    const fn = this.fn(name);
    const plan = await planDeadLetterPurge(this.#options.clients, fn, { seqs: new Set(seqs) });
    const removed = plan.letters.length > 0 ? await plan.remove() : 0;
    this.#options.log.info({ function: fn.name, removed }, "dead letters purged from the console");
    return { removed, missing: [...plan.missing] };
  }

  /**
   * A replay as `jetfn replay` runs it. A dry run answers with its count once counted; a real
   * one answers at once with its id, and {@link replayProgress} follows it.
   */
  async replay(name: string, request: ReplayRequest): Promise<ReplayProgress> {
    const fn = this.fn(name);
    const options = replayOptions(fn, request);
    const id = randomUUID();
    const progress = (counts: { total: number; read: number; published: number; duplicates: number; seq?: number }): void => {
      const { total, read, published, duplicates, seq } = counts;
      this.#replays.set(id, {
        id,
        function: fn.name,
        dryRun: options.dryRun === true,
        state: "running",
        total,
        read,
        published,
        duplicates,
        ...(seq !== undefined ? { seq } : {}),
      });
    };
    progress({ total: 0, read: 0, published: 0, duplicates: 0 });
    while (this.#replays.size > KEPT_REPLAYS) this.#replays.delete(this.#replays.keys().next().value!);
    const running = replayEvents(this.#options.clients, fn, { ...options, progress }, this.#options.log).then(
      (counts) => {
        progress(counts);
        this.#replays.set(id, { ...this.#replays.get(id)!, state: "done" });
        return this.#replays.get(id)!;
      },
      (error: unknown) => {
        this.#replays.set(id, { ...this.#replays.get(id)!, state: "failed", error: (error as Error).message });
        return this.#replays.get(id)!;
      },
    );
    if (options.dryRun) return running;
    this.#options.log.info({ function: fn.name, id }, "replay started from the console");
    return this.#replays.get(id)!;
  }

  replayProgress(id: string): ReplayProgress {
    const progress = this.#replays.get(id);
    if (!progress) throw new ActionError(`no replay ${id}`, 404);
    return progress;
  }
}

/** The replay form as `ReplayOptions`, with `jetfn replay`'s checks and messages. */
export function replayOptions(fn: CompiledFunction, request: ReplayRequest): ReplayOptions {
  const { fromSeq, since, until, subject, limit, key } = request;
  if ((fromSeq === undefined) === (since === undefined || since === "")) {
    throw new ActionError("say where to start: a sequence, or a time (since)");
  }
  const from: ReplayBound = fromSeq !== undefined ? { seq: positive(fromSeq, "from sequence") } : { time: time(since!, "since") };
  let to: ReplayBound | undefined;
  if (until !== undefined && until !== "")
    to = /^\d+$/.test(until) ? { seq: positive(Number(until), "until") } : { time: time(until, "until") };
  if (subject && !fn.subjects.some((s) => subjectCovers(s, subject))) {
    throw new ActionError(`subject ${subject} is not within ${fn.name}'s subjects (${fn.subjects.join(", ")})`);
  }
  if (key && !/^[A-Za-z0-9_-]{1,64}$/.test(key)) throw new ActionError(`key expects letters, digits, "-" or "_", got ${key}`);
  return {
    from,
    ...(to ? { until: to } : {}),
    ...(subject ? { subject } : {}),
    ...(limit !== undefined ? { limit: positive(limit, "limit") } : {}),
    ...(key ? { key } : {}),
    dryRun: request.dryRun === true,
  };
}

function positive(n: unknown, what: string): number {
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1)
    throw new ActionError(`${what} expects a positive integer, got ${String(n)}`);
  return n;
}

function time(text: string, what: string): Date {
  try {
    return parseTimeArgument(text);
  } catch (error) {
    throw new ActionError(`${what}: ${(error as Error).message}`);
  }
}

/**
 * The trace's page in a trace UI: `{traceId}` in the base URL is replaced by the trace id
 * of the `traceparent` header; without the placeholder, the id is appended as a path segment
 * (Jaeger's `/trace/<id>`).
 */
export function traceLink(base: string | undefined, traceparent: string | undefined): string | undefined {
  const traceId = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent?.trim() ?? "")?.[1];
  if (!base || !traceId || /^0+$/.test(traceId)) return undefined;
  return base.includes("{traceId}") ? base.replaceAll("{traceId}", traceId) : `${base.replace(/\/+$/, "")}/${traceId}`;
}

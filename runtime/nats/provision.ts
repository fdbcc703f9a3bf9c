import { setTimeout as sleep } from "node:timers/promises";
import {
  AckPolicy,
  type ConsumerConfig,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import { subjectCovers } from "../config/subjects.ts";
import type { CompiledConfig, CompiledFunction, CompiledStream } from "../config/types.ts";
import { DEBOUNCE_STREAM, DEBOUNCE_SUBJECTS, debounceDurable, debounceFilter } from "../contracts/debounce.ts";
import { forwardsOrdered, ORDERED_STREAM_PREFIX, orderedStream, orderedSubject, orderedSubjects } from "../contracts/ordered.ts";
import { REPLAY_DUPLICATE_WINDOW_MS, REPLAY_STREAM, REPLAY_SUBJECTS, replaySubject } from "../contracts/replay.ts";
import { SCHEDULE_STREAM, SCHEDULE_SUBJECTS, scheduleSubject } from "../contracts/schedule.ts";
import type { Logger } from "../telemetry/logger.ts";
import { StreamElecting } from "./broker-failures.ts";

/** Streams and consumers could not be made to match `functions.yaml`: fatal at start. */
export class ProvisionError extends Error {
  override readonly name = "ProvisionError";
}

/** The stream that captures `jetfn.dlq.>`, created when missing. */
export const DLQ_STREAM = "JETFN_DLQ";
export const DLQ_SUBJECTS = ["jetfn.dlq.>"];

const NOT_FOUND = new Set<number>([JetStreamApiCodes.ConsumerNotFound, JetStreamApiCodes.StreamNotFound]);

function isNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && NOT_FOUND.has(error.code);
}

/** `2.9.10` -> true for `atLeast(version, 2, 10)` only from 2.10.0 on. */
export function atLeast(version: string | undefined, major: number, minor: number): boolean {
  const [ma = 0, mi = 0] = (version ?? "0.0.0").split(".").map((p) => Number.parseInt(p, 10));
  return ma > major || (ma === major && mi >= minor);
}

/**
 * Makes the server's streams match `functions.yaml`: declared streams created or updated,
 * the dead-letter stream created when missing. Each function's consumers follow, in
 * {@link provisionConsumers}; drift that cannot be updated in place is logged.
 */
export async function provisionStreams(nc: NatsConnection, jsm: JetStreamManager, config: CompiledConfig, log: Logger): Promise<void> {
  const version = nc.info?.version;
  for (const fn of config.functions) {
    if (fn.subjects.length > 1 && !atLeast(version, 2, 10)) {
      throw new ProvisionError(
        `function ${fn.name} binds ${fn.subjects.length} subjects, which needs multi-filter consumers (nats-server 2.10+); ` +
          `this server is ${version}. Use one subject (a wildcard such as "orders.*" may cover them) or one function per subject.`,
      );
    }
  }
  for (const stream of config.streams) await ensureStream(jsm, stream, log);
  if (!config.streams.some((s) => s.name === DLQ_STREAM)) {
    await ensureStream(
      jsm,
      { name: DLQ_STREAM, subjects: DLQ_SUBJECTS, storage: "file", replicas: 1, maxAgeMs: 0, duplicateWindowMs: 120_000 },
      log,
      { createOnly: true },
    );
  }
  if (!config.streams.some((s) => s.name === REPLAY_STREAM)) await ensureReplayStream(jsm, log);
  if (config.functions.some((fn) => fn.schedule) && !config.streams.some((s) => s.name === SCHEDULE_STREAM)) {
    await ensureScheduleStream(jsm, log);
  }
  if (config.functions.some((fn) => fn.debounce) && !config.streams.some((s) => s.name === DEBOUNCE_STREAM)) {
    await ensureDebounceStream(jsm, log);
  }
}

/** How long ticks are kept: the last one tells a replica that starts which ticks it missed. */
const SCHEDULE_MAX_AGE_MS = 30 * 24 * 60 * 60 * 1000;
/** Ticks kept per function: more than any catch-up, few enough to stay small at one a second. */
const SCHEDULE_MAX_PER_SUBJECT = 1000;

/**
 * Creates `JETFN_SCHEDULES` when missing: every scheduled function's ticks, kept 30 days and
 * at most 1,000 per function, so the last tick tells a replica that starts what it missed.
 * An existing one is left as it is.
 */
export async function ensureScheduleStream(jsm: JetStreamManager, log: Logger): Promise<void> {
  try {
    await jsm.streams.info(SCHEDULE_STREAM);
    return;
  } catch (error) {
    if (!isNotFound(error)) throw provisionFailure(`stream ${SCHEDULE_STREAM}`, error);
  }
  try {
    await jsm.streams.add({
      name: SCHEDULE_STREAM,
      subjects: [SCHEDULE_SUBJECTS],
      storage: StorageType.File,
      num_replicas: 1,
      max_age: nanos(SCHEDULE_MAX_AGE_MS),
      max_msgs_per_subject: SCHEDULE_MAX_PER_SUBJECT,
      duplicate_window: nanos(120_000),
    });
  } catch (error) {
    throw provisionFailure(`creating stream ${SCHEDULE_STREAM}`, error);
  }
  log.info({ stream: SCHEDULE_STREAM, subjects: SCHEDULE_SUBJECTS }, "created stream");
}

/**
 * A function with a stream of its own and a `schedule:` reads its ticks through a second
 * durable, `<durable>_schedule`, on `JETFN_SCHEDULES`. A function with only a schedule reads
 * them through its own durable (its stream is `JETFN_SCHEDULES`): undefined then.
 */
export function scheduleConsumer(fn: CompiledFunction): CompiledFunction | undefined {
  if (!fn.schedule || fn.stream === SCHEDULE_STREAM) return undefined;
  return {
    ...fn,
    stream: SCHEDULE_STREAM,
    durable: `${fn.durable}_schedule`,
    subjects: [scheduleSubject(fn.name)],
    deliverPolicy: { kind: "new" },
    ordering: undefined,
  };
}

/**
 * Creates `JETFN_REPLAY` when missing (by a host at start, by `jetfn replay` before it
 * copies): a work queue, so a copy is gone once its function acked or dead-lettered it,
 * with a duplicate window long enough for a replay run again the same day to dedupe. An
 * existing one is left as it is (its window may have been changed on purpose).
 */
export async function ensureReplayStream(jsm: JetStreamManager, log: Logger): Promise<void> {
  await ensureWorkQueue(jsm, { name: REPLAY_STREAM, subjects: [...REPLAY_SUBJECTS], duplicateWindowMs: REPLAY_DUPLICATE_WINDOW_MS }, log);
}

/**
 * Creates `JETFN_DEBOUNCE` when missing (by a host with a debounced function): the fires,
 * a work queue (a fire is gone once its function acked it), one subject per function.
 */
export async function ensureDebounceStream(jsm: JetStreamManager, log: Logger): Promise<void> {
  await ensureWorkQueue(jsm, { name: DEBOUNCE_STREAM, subjects: [DEBOUNCE_SUBJECTS], duplicateWindowMs: 120_000 }, log);
}

/** Creates a work-queue stream of jetfn's when missing; an existing one is left as it is (warned of if it is not a work queue). */
async function ensureWorkQueue(
  jsm: JetStreamManager,
  stream: { readonly name: string; readonly subjects: string[]; readonly duplicateWindowMs: number },
  log: Logger,
): Promise<void> {
  const { name, subjects } = stream;
  let retention: RetentionPolicy;
  try {
    retention = (await jsm.streams.info(name)).config.retention;
  } catch (error) {
    if (!isNotFound(error)) throw provisionFailure(`stream ${name}`, error);
    try {
      await jsm.streams.add({
        name,
        subjects,
        retention: RetentionPolicy.Workqueue,
        storage: StorageType.File,
        num_replicas: 1,
        duplicate_window: nanos(stream.duplicateWindowMs),
      });
    } catch (addError) {
      // Another host creating it meanwhile is no error: the server accepts the same config twice.
      throw provisionFailure(`creating stream ${name}`, addError);
    }
    log.info({ stream: name, subjects }, "created stream");
    return;
  }
  if (retention !== RetentionPolicy.Workqueue) {
    log.warn({ stream: name, retention }, `${name} is not a work queue: what its functions ran stays in it`);
  }
}

/** Creates or updates a function's durable consumer, or an ordered function's partition durables. */
export async function provisionConsumers(jsm: JetStreamManager, fn: CompiledFunction, log: Logger): Promise<void> {
  const ordering = fn.ordering;
  const ticks = scheduleConsumer(fn);
  const fires = debounceConsumer(fn);
  const [events, replays, schedule, debounce] = await Promise.allSettled([
    ordering ? provisionOrdered(jsm, fn, ordering.partitions, log) : ensureConsumer(jsm, fn, log),
    ensureConsumer(jsm, replayConsumer(fn), log),
    ticks ? ensureConsumer(jsm, ticks, log) : undefined,
    fires ? ensureConsumer(jsm, fires, log) : undefined,
  ]);
  // The function's own consumer's error first: the others' checks are the same.
  if (events.status === "rejected") throw events.reason;
  if (replays.status === "rejected") throw replays.reason;
  if (schedule.status === "rejected") throw schedule.reason;
  if (debounce.status === "rejected") throw debounce.reason;
}

/**
 * A function reads its replays (`jetfn.replay.<function>` in `JETFN_REPLAY`) through the
 * durable `jetfn_replay_<function>`: the function as that consumer sees it. Named after the
 * function, as its subject is: a work-queue stream takes one consumer per subject, and a
 * durable named after a changed `durable:` would collide with the one before.
 */
export function replayConsumer(fn: CompiledFunction): CompiledFunction {
  return {
    ...fn,
    stream: REPLAY_STREAM,
    durable: replayDurable(fn.name),
    subjects: [replaySubject(fn.name)],
    // A work queue's consumers deliver all; an ordered function's replays run unordered.
    deliverPolicy: { kind: "all" },
    ordering: undefined,
  };
}

/**
 * A debounced function reads its fires (`jetfn.debounce.<function>.>` in `JETFN_DEBOUNCE`)
 * through the durable `jetfn_debounce_<function>`; undefined for a function without `debounce:`.
 */
export function debounceConsumer(fn: CompiledFunction): CompiledFunction | undefined {
  if (!fn.debounce) return undefined;
  return {
    ...fn,
    stream: DEBOUNCE_STREAM,
    durable: debounceDurable(fn.name),
    subjects: [debounceFilter(fn.name)],
    deliverPolicy: { kind: "all" },
    ordering: undefined,
  };
}

export function replayDurable(fn: string): string {
  return `jetfn_replay_${fn}`;
}

/**
 * An ordered function's consumers: with one partition, its durable `<durable>_p0` reads the
 * stream; with more, the function's own durable reads it (the forwarder's) and each
 * partition's durable reads its subject of `JETFN_ORDERED_<function>`, which is made here.
 */
async function provisionOrdered(jsm: JetStreamManager, fn: CompiledFunction, partitions: number, log: Logger): Promise<void> {
  if (forwardsOrdered(fn)) {
    await ensureOrderedStream(jsm, fn, log);
    await migrateToForwarding(jsm, fn, partitions, log);
    await ensureConsumer(jsm, forwarderConsumer(fn), log);
  }
  await Promise.all(Array.from({ length: partitions }, (_, p) => ensureConsumer(jsm, partitionConsumer(fn, p), log)));
}

/**
 * One partition's durable, `<durable>_p<partition>`: the function as that consumer sees it.
 * With one partition it reads the function's stream; with more, its own subject of the
 * function's `JETFN_ORDERED_<function>` (the forwarder puts each event there).
 */
export function partitionConsumer(fn: CompiledFunction, partition: number): CompiledFunction {
  const durable = `${fn.durable}_p${partition}`;
  if (!forwardsOrdered(fn)) return { ...fn, durable };
  return {
    ...fn,
    durable,
    stream: orderedStream(fn.name),
    subjects: [orderedSubject(fn.name, partition)],
    deliverPolicy: { kind: "all" },
  };
}

/**
 * The ack wait of a forwarder's durable: a copy lands in milliseconds, and an event whose ack
 * was lost comes again this soon, well within the duplicate window, which finds its copy.
 */
const FORWARDER_ACK_WAIT_MS = 10_000;

/** The function as its forwarder's durable (the function's own durable) sees it. */
export function forwarderConsumer(fn: CompiledFunction): CompiledFunction {
  return { ...fn, ackWaitMs: FORWARDER_ACK_WAIT_MS };
}

/**
 * How long `JETFN_ORDERED_<function>` remembers a copy's id: longer than the forwarder's ack
 * wait and a forwarder's takeover (its lease's ttl and a rewind), each of which forwards
 * again what was forwarded and not yet acked. The server keeps every id of the window in
 * memory. A copy forwarded again after it would run again, after the events forwarded
 * between: a re-run, never one out of order.
 */
function orderedDuplicateWindowMs(fn: CompiledFunction): number {
  return Math.max(3 * FORWARDER_ACK_WAIT_MS, 3 * (fn.ordering?.leaseTtlMs ?? 10_000));
}

/**
 * Creates the function's `JETFN_ORDERED_<function>` when missing: a work queue (a copy is gone
 * once its partition acked it), with the storage and replicas of the function's stream.
 */
async function ensureOrderedStream(jsm: JetStreamManager, fn: CompiledFunction, log: Logger): Promise<void> {
  const name = orderedStream(fn.name);
  try {
    await jsm.streams.info(name);
    return;
  } catch (error) {
    if (!isNotFound(error)) throw provisionFailure(`stream ${name}`, error);
  }
  let replicas = 1;
  let storage: StorageType = StorageType.File;
  try {
    ({ num_replicas: replicas, storage } = (await jsm.streams.info(fn.stream)).config);
  } catch (error) {
    if (!isNotFound(error)) throw provisionFailure(`stream ${fn.stream}`, error);
  }
  try {
    await jsm.streams.add({
      name,
      subjects: [orderedSubjects(fn.name)],
      retention: RetentionPolicy.Workqueue,
      storage,
      num_replicas: replicas,
      duplicate_window: nanos(orderedDuplicateWindowMs(fn)),
    });
  } catch (error) {
    // Another host creating it meanwhile is no error: the server accepts the same config twice.
    throw provisionFailure(`creating stream ${name}`, error);
  }
  log.info({ stream: name, function: fn.name, storage, replicas }, "created stream");
}

/**
 * Before forwarding, each partition's durable read the function's stream itself. The first
 * start of this version makes the forwarder's durable start at the oldest of their ack
 * floors (what no partition finished runs again: at least once, in order) and deletes them.
 */
async function migrateToForwarding(jsm: JetStreamManager, fn: CompiledFunction, partitions: number, log: Logger): Promise<void> {
  const info = (durable: string) =>
    jsm.consumers.info(fn.stream, durable).catch((error: unknown) => {
      if (isNotFound(error)) return undefined;
      throw provisionFailure(`consumer ${durable}`, error);
    });
  if (await info(fn.durable)) return;
  const old = (await Promise.all(Array.from({ length: partitions }, (_, p) => info(`${fn.durable}_p${p}`)))).filter((c) => c !== undefined);
  if (old.length === 0) return;
  const from = Math.min(...old.map((c) => c.ack_floor.stream_seq)) + 1;
  try {
    await jsm.consumers.add(fn.stream, {
      ...desiredConsumer(forwarderConsumer(fn)),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
    });
    for (const c of old) await jsm.consumers.delete(fn.stream, c.name);
  } catch (error) {
    throw provisionFailure(`moving ${fn.name}'s partitions to forwarding`, error);
  }
  log.warn(
    { function: fn.name, from_seq: from, deleted: old.map((c) => c.name) },
    "ordered function moved to forwarding: its partitions' durables on its stream are replaced by one, from their oldest ack floor",
  );
}

/** The pause before a rewind's re-creation is tried again (see {@link rewindConsumer}). */
const REWIND_RETRY_MS = 1000;

/**
 * Taking over a partition: if the durable holds messages delivered and not acked (its last
 * owner died or stalled with events in hand), it is re-created to start right after its ack
 * floor, so its unfinished events come first and in stream order, at once rather than after
 * their ack wait. Events acked beyond the floor run again: at-least-once, never out of order.
 *
 * `done`, when the caller knows it (a forwarder: the last original whose copy landed), is
 * where the caller's own record of what settled ends: the durable is rewound to start after
 * it too whenever it delivered beyond it. The server's record of what is unacked is not
 * enough on its own: nats-server 2.9 can lose it when the consumer's leader changes (a
 * message delivered and never acked is then never delivered again).
 *
 * Once the durable is deleted, it is re-created at that floor however many tries it takes,
 * until `signal` aborts (a host starting meanwhile may have created it as functions.yaml
 * says, which is deleted again): re-created any other way, it would start elsewhere.
 * @returns whether it was rewound.
 */
export async function rewindConsumer(
  jsm: JetStreamManager,
  fn: CompiledFunction,
  log: Logger,
  signal: AbortSignal,
  done?: number,
): Promise<boolean> {
  const info = await jsm.consumers.info(fn.stream, fn.durable);
  const floor = Math.min(info.ack_floor.stream_seq, done ?? Number.POSITIVE_INFINITY);
  if (info.num_ack_pending === 0 && info.delivered.stream_seq <= floor) return false;
  // A work queue's consumers must deliver all; what is acked there is gone, so all is what is unfinished.
  const workQueue = (await jsm.streams.info(fn.stream)).config.retention === RetentionPolicy.Workqueue;
  const rewound: ConsumerConfig = {
    ...info.config,
    ...(workQueue
      ? { deliver_policy: DeliverPolicy.All, opt_start_seq: undefined }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 }),
    opt_start_time: undefined,
  };
  for (let attempt = 1; ; attempt++) {
    try {
      await jsm.consumers.delete(fn.stream, fn.durable).catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
      await jsm.consumers.add(fn.stream, rewound);
      break;
    } catch (error) {
      if (signal.aborted) throw provisionFailure(`rewinding consumer ${fn.durable}`, error);
      log.warn({ err: error, durable: fn.durable, attempt }, "rewinding the partition's consumer failed; trying again");
      await sleep(REWIND_RETRY_MS, undefined, { signal }).catch(() => {});
    }
  }
  log.info(
    {
      function: fn.name,
      durable: fn.durable,
      from_seq: floor + 1,
      unacked: info.num_ack_pending,
      delivered_seq: info.delivered.stream_seq,
    },
    "rewound the consumer to its ack floor, or to where its caller's record of what settled ends",
  );
  return true;
}

async function ensureStream(
  jsm: JetStreamManager,
  stream: CompiledStream,
  log: Logger,
  opts: { createOnly?: boolean } = {},
): Promise<void> {
  const wanted: Partial<StreamConfig> = {
    subjects: [...stream.subjects],
    max_age: nanos(stream.maxAgeMs),
    duplicate_window: nanos(stream.duplicateWindowMs),
  };
  let current: StreamConfig;
  try {
    current = (await jsm.streams.info(stream.name)).config;
  } catch (error) {
    if (!isNotFound(error)) throw provisionFailure(`stream ${stream.name}`, error);
    try {
      await jsm.streams.add({
        name: stream.name,
        ...wanted,
        storage: stream.storage === "memory" ? StorageType.Memory : StorageType.File,
        num_replicas: stream.replicas,
      });
    } catch (addError) {
      throw provisionFailure(`creating stream ${stream.name}`, addError);
    }
    log.info({ stream: stream.name, subjects: stream.subjects }, "created stream");
    return;
  }
  if (opts.createOnly) return;
  const drift = [
    sameSet(current.subjects ?? [], stream.subjects) ? undefined : "subjects",
    current.max_age === wanted.max_age ? undefined : "maxAge",
    current.duplicate_window === wanted.duplicate_window ? undefined : "duplicateWindow",
  ].filter(Boolean);
  if (current.storage !== stream.storage || current.num_replicas !== stream.replicas) {
    log.warn(
      { stream: stream.name, server: { storage: current.storage, replicas: current.num_replicas } },
      "stream storage/replicas differ from functions.yaml; they cannot be changed in place, keeping the server's",
    );
  }
  if (drift.length === 0) return;
  try {
    await jsm.streams.update(stream.name, { ...current, ...wanted });
  } catch (error) {
    throw provisionFailure(`updating stream ${stream.name}`, error);
  }
  log.info({ stream: stream.name, changed: drift }, "updated stream to match functions.yaml");
}

function desiredConsumer(fn: CompiledFunction): Partial<ConsumerConfig> {
  const config: Partial<ConsumerConfig> = {
    durable_name: fn.durable,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(fn.ackWaitMs),
    max_ack_pending: fn.maxAckPending,
    // Retries are the host's decision (it dead-letters); the server must never stop
    // delivering on its own, or a message whose dead-letter publish failed would strand.
    max_deliver: -1,
    ...(fn.subjects.length === 1 ? { filter_subject: fn.subjects[0] } : { filter_subjects: [...fn.subjects] }),
  };
  const policy = fn.deliverPolicy;
  switch (policy.kind) {
    case "all":
      return { ...config, deliver_policy: DeliverPolicy.All };
    case "new":
      return { ...config, deliver_policy: DeliverPolicy.New };
    case "last":
      return { ...config, deliver_policy: DeliverPolicy.Last };
    case "startTime":
      return { ...config, deliver_policy: DeliverPolicy.StartTime, opt_start_time: policy.startTime.toISOString() };
    case "startSeq":
      return { ...config, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: policy.startSeq };
  }
}

/** Creates or updates a function's durable consumer; also used to re-bind one deleted under us. */
export async function ensureConsumer(jsm: JetStreamManager, fn: CompiledFunction, log: Logger): Promise<void> {
  let streamSubjects: string[];
  try {
    streamSubjects = (await jsm.streams.info(fn.stream)).config.subjects ?? [];
  } catch (error) {
    if (isNotFound(error)) {
      throw new ProvisionError(
        `function ${fn.name}: stream ${fn.stream} does not exist and is not declared under streams: in functions.yaml`,
      );
    }
    throw provisionFailure(`stream ${fn.stream}`, error);
  }
  for (const subject of fn.subjects) {
    if (!streamSubjects.some((s) => subjectCovers(s, subject))) {
      throw new ProvisionError(
        `function ${fn.name}: subject ${subject} is not captured by stream ${fn.stream} (${streamSubjects.join(", ")})`,
      );
    }
  }
  await requireCapture(jsm, fn, "deadLetter", fn.deadLetter);
  if (fn.output) await requireCapture(jsm, fn, "output", fn.output);

  const wanted = desiredConsumer(fn);
  let current: ConsumerConfig | undefined;
  try {
    current = (await jsm.consumers.info(fn.stream, fn.durable)).config;
  } catch (error) {
    if (!isNotFound(error)) throw provisionFailure(`consumer ${fn.durable}`, error);
  }
  if (!current) {
    try {
      await jsm.consumers.add(fn.stream, wanted);
      log.info({ function: fn.name, stream: fn.stream, durable: fn.durable }, "created consumer");
      return;
    } catch (error) {
      // Made meanwhile by another host (a takeover re-creating a partition's durable at its
      // ack floor, which an add of another start cannot update): that one is kept.
      current = await jsm.consumers.info(fn.stream, fn.durable).then(
        (info) => info.config,
        () => undefined,
      );
      if (!current) {
        // A copies' stream jetfn has just made, not found: its cluster is electing.
        const electing = fn.stream.startsWith(ORDERED_STREAM_PREFIX) && isNotFound(error);
        const cause = electing ? new StreamElecting((error as Error).message, { cause: error }) : error;
        throw provisionFailure(`creating consumer ${fn.durable} on ${fn.stream}`, cause);
      }
    }
  }
  // A partition's durable is rewound by start sequence on takeover (rewindConsumer).
  const rewound = fn.ordering !== undefined && current.deliver_policy === DeliverPolicy.StartSequence;
  if (current.deliver_policy !== wanted.deliver_policy && !rewound) {
    log.warn(
      { function: fn.name, durable: fn.durable, server: current.deliver_policy, yaml: wanted.deliver_policy },
      "deliverPolicy differs from the existing consumer and cannot be changed in place; keeping the server's (delete the consumer to reset it)",
    );
  }
  const updatable: Partial<ConsumerConfig> = {
    ack_wait: wanted.ack_wait,
    max_ack_pending: wanted.max_ack_pending,
    max_deliver: wanted.max_deliver,
    ...(wanted.filter_subject ? { filter_subject: wanted.filter_subject } : { filter_subjects: wanted.filter_subjects }),
  };
  const changed = (Object.keys(updatable) as (keyof ConsumerConfig)[]).filter(
    (key) => JSON.stringify(current[key]) !== JSON.stringify(updatable[key]),
  );
  if (changed.length === 0) return;
  try {
    await jsm.consumers.update(fn.stream, fn.durable, updatable);
  } catch (error) {
    throw provisionFailure(`updating consumer ${fn.durable} (${changed.join(", ")}); delete it to recreate`, error);
  }
  log.info({ function: fn.name, durable: fn.durable, changed }, "updated consumer to match functions.yaml");
}

/** A publish to a subject no stream captures would fail forever: refuse to start instead. */
async function requireCapture(jsm: JetStreamManager, fn: CompiledFunction, key: string, subject: string): Promise<void> {
  try {
    await jsm.streams.find(subject);
  } catch {
    throw new ProvisionError(`function ${fn.name}: ${key} subject ${subject} is not captured by any stream; declare one under streams:`);
  }
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

function provisionFailure(what: string, error: unknown): ProvisionError {
  return new ProvisionError(`${what}: ${(error as Error).message}`, { cause: error });
}

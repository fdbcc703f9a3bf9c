/**
 * The KV bucket `JETFN_STEPS`: where `ctx.step` records live (key layout and record format
 * in `contracts/steps.ts`), and idempotency keys' (`contracts/idempotency.ts`). History 1,
 * file storage, as replicated as the most replicated stream the host declares. A bucket's
 * `max_age` is one for all its keys, while `steps.ttl` is per function: the bucket keeps
 * the largest ttl any host has asked for (it only ever grows), and each record carries its
 * own `expiresAt`, past which the host reads it as absent. Its replicas only grow too.
 */
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import { parseStepRecordKey, runRecordFilter, STEP_BUCKET, type StepStore } from "../contracts/steps.ts";

/**
 * Creates the step bucket or opens it, and makes sure its `max_age` is at least `ttlMs`
 * and it has at least `replicas` replicas.
 */
export async function openStepBucket(nc: NatsConnection, ttlMs: number, replicas = 1): Promise<KV> {
  const kv = await new Kvm(nc).create(STEP_BUCKET, { history: 1, storage: StorageType.File, ttl: ttlMs, replicas });
  await keepAtLeast(nc, ttlMs, replicas);
  return kv;
}

/**
 * Raises the bucket's `max_age` to `ttlMs` when it is shorter, and its replicas to
 * `replicas` when it has fewer (never lowers either: another function or host may need it).
 */
async function keepAtLeast(nc: NatsConnection, ttlMs: number, replicas = 1): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const stream = `KV_${STEP_BUCKET}`;
  const info = await jsm.streams.info(stream);
  const wanted = nanos(ttlMs);
  const longer = info.config.max_age !== 0 && info.config.max_age < wanted;
  const more = info.config.num_replicas < replicas;
  if (longer || more) {
    await jsm.streams.update(stream, {
      ...info.config,
      ...(longer ? { max_age: wanted } : {}),
      ...(more ? { num_replicas: replicas } : {}),
    });
  }
}

/**
 * `ctx.step`'s records on one connection: the bucket is opened (created with `replicas`) on
 * the first step of any function, and its `max_age` raised on the first step of each
 * function whose ttl is longer.
 */
export function stepStoreOf(nc: NatsConnection, replicas = 1): (ttlMs: number) => Promise<StepStore> {
  let store = stores.get(nc);
  if (!store) stores.set(nc, (store = new LazyStepStore(nc, replicas)));
  const lazy = store;
  return (ttlMs) => lazy.open(ttlMs);
}

const stores = new WeakMap<NatsConnection, LazyStepStore>();

class LazyStepStore {
  readonly #nc: NatsConnection;
  readonly #replicas: number;
  #kv?: Promise<KV>;
  /** The longest ttl made sure of so far. */
  #ttlMs = 0;
  #raising: Promise<void> = Promise.resolve();

  constructor(nc: NatsConnection, replicas: number) {
    this.#nc = nc;
    this.#replicas = replicas;
  }

  async open(ttlMs: number): Promise<StepStore> {
    if (!this.#kv) {
      this.#kv = openStepBucket(this.#nc, ttlMs, this.#replicas);
      this.#kv.catch(() => (this.#kv = undefined));
      this.#ttlMs = ttlMs;
    }
    const kv = await this.#kv;
    if (ttlMs > this.#ttlMs) {
      this.#ttlMs = ttlMs;
      this.#raising = this.#raising.then(() => keepAtLeast(this.#nc, ttlMs));
      await this.#raising;
    }
    return kvStepStore(kv);
  }
}

/** A {@link StepStore} over a KV bucket: every write is a compare-and-set on the key's revision. */
export function kvStepStore(kv: KV): StepStore {
  return {
    async get(key) {
      const entry = await kv.get(key);
      if (entry?.operation !== "PUT") return undefined;
      return { value: entry.string(), revision: entry.revision };
    },
    create: (key, value) => ifNoConflict(kv.create(key, value)),
    update: (key, value, revision) => ifNoConflict(kv.update(key, value, revision)),
    async delete(key, revision) {
      await ifNoConflict(kv.delete(key, { previousSeq: revision }).then(() => 0));
    },
  };
}

/** The write's revision, or undefined when another write came first. */
async function ifNoConflict(write: Promise<number>): Promise<number | undefined> {
  try {
    return await write;
  } catch (error) {
    if (isConflict(error)) return undefined;
    throw error;
  }
}

function isConflict(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence || error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/** One record of a run, as `jetfn steps show` lists it. */
export interface RunRecord {
  /** The step's name (`charge`, `charge#2`); absent for the run's completion record. */
  readonly step?: string;
  /** The record's JSON text. */
  readonly value: string;
  /** Bytes of the value. */
  readonly size: number;
  /** When the server stored it. */
  readonly stored: Date;
}

/**
 * The records of one run (its steps, and its completion record), oldest first; undefined
 * when the bucket does not exist (no step ever ran against this server).
 */
export async function readRunRecords(nc: NatsConnection, fn: string, runId: string): Promise<RunRecord[] | undefined> {
  const kv = await openExisting(nc);
  if (!kv) return undefined;
  const records: RunRecord[] = [];
  for await (const key of await kv.keys(runRecordFilter(fn, runId))) {
    const entry = await kv.get(key);
    const parsed = parseStepRecordKey(key);
    if (entry?.operation !== "PUT" || !parsed) continue;
    records.push({
      ...(parsed.step !== undefined ? { step: parsed.step } : {}),
      value: entry.string(),
      size: entry.length,
      stored: entry.created,
    });
  }
  return records.sort((a, b) => a.stored.getTime() - b.stored.getTime());
}

/** Removes every record of one run (purged: nothing of them is kept); resolves with how many there were. */
export async function forgetRun(nc: NatsConnection, fn: string, runId: string): Promise<number> {
  const kv = await openExisting(nc);
  if (!kv) return 0;
  const keys: string[] = [];
  for await (const key of await kv.keys(runRecordFilter(fn, runId))) keys.push(key);
  for (const key of keys) await kv.purge(key);
  return keys.length;
}

/** The step bucket if it exists: reading it must not create it. */
async function openExisting(nc: NatsConnection): Promise<KV | undefined> {
  try {
    await (await jetstreamManager(nc)).streams.info(`KV_${STEP_BUCKET}`);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return undefined;
    throw error;
  }
  return new Kvm(nc).open(STEP_BUCKET);
}

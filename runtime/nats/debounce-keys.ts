import { StorageType } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { DEBOUNCE_BUCKET, DEBOUNCE_ENTRY_TTL_MS, type DebounceEntry, parseEntry } from "../contracts/debounce.ts";
import { isConflict } from "./kv-cas.ts";

/** Writes of one key that lose a race to another replica's, in a row, before a change fails. */
const MAX_CONFLICTS = 50;

/** What a change of an entry returns: the entry to write (none: leave it), and its result. */
export interface EntryChange<T> {
  readonly write?: DebounceEntry;
  readonly result: T;
}

/**
 * Debounced functions' keys in `JETFN_DEBOUNCE_KEYS` (contracts/debounce.ts): history 1,
 * file storage, entries kept {@link DEBOUNCE_ENTRY_TTL_MS} after their last write. Every
 * write is a compare-and-set on the revision read, so replicas taking events and fires of
 * one key at once each see the other's write.
 */
export class DebounceKeys {
  readonly #kv: KV;

  private constructor(kv: KV) {
    this.#kv = kv;
  }

  /** Creates the bucket, or opens it if it exists. */
  static async open(nc: NatsConnection): Promise<DebounceKeys> {
    return new DebounceKeys(
      await new Kvm(nc).create(DEBOUNCE_BUCKET, { history: 1, storage: StorageType.File, ttl: DEBOUNCE_ENTRY_TTL_MS }),
    );
  }

  /** Reads `key`'s entry, applies `change` and writes what it returns; read and applied again after a conflict. */
  async change<T>(key: string, change: (entry: DebounceEntry | undefined) => EntryChange<T>): Promise<T> {
    for (let conflicts = 0; ; conflicts++) {
      const found = await this.#kv.get(key);
      const live = found !== null && found.operation === "PUT";
      let entry: DebounceEntry | undefined;
      try {
        entry = live ? parseEntry(found.json()) : undefined;
      } catch {
        entry = undefined; // not JSON: written anew
      }
      const { write, result } = change(entry);
      if (write === undefined) return result;
      try {
        const value = JSON.stringify(write);
        if (live) await this.#kv.update(key, value, found.revision);
        else await this.#kv.create(key, value);
        return result;
      } catch (error) {
        if (!isConflict(error) || conflicts >= MAX_CONFLICTS) throw error;
      }
    }
  }
}

import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";

/** A KV write that lost a race: its compare-and-set base was not the key's last revision. */
export function isConflict(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence || error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/** Writes of one key that lose a race to another replica's, in a row, before a change fails. */
const MAX_CONFLICTS = 50;

/** What a change of a cell returns: the value to write (none: leave it), and its result. */
export interface CellChange<T, R> {
  readonly write?: T;
  readonly result: R;
}

/**
 * Values in a KV bucket, each changed by read, change, compare-and-set on the revision read,
 * and again after a conflict: replicas changing one key at once each see the other's write.
 * A value that `parse` does not accept (or that is not JSON) reads as absent and is written anew.
 */
export class KvCells<T> {
  readonly #kv: KV;
  readonly #parse: (value: unknown) => T | undefined;

  constructor(kv: KV, parse: (value: unknown) => T | undefined) {
    this.#kv = kv;
    this.#parse = parse;
  }

  /** Reads `key`'s value, applies `change` and writes what it returns. */
  async change<R>(key: string, change: (value: T | undefined) => CellChange<T, R>): Promise<R> {
    for (let conflicts = 0; ; conflicts++) {
      const found = await this.#kv.get(key);
      const live = found !== null && found.operation === "PUT";
      let value: T | undefined;
      try {
        value = live ? this.#parse(found.json()) : undefined;
      } catch {
        value = undefined; // not JSON
      }
      const { write, result } = change(value);
      if (write === undefined) return result;
      try {
        const text = JSON.stringify(write);
        if (live) await this.#kv.update(key, text, found.revision);
        else await this.#kv.create(key, text);
        return result;
      } catch (error) {
        if (!isConflict(error) || conflicts >= MAX_CONFLICTS) throw error;
      }
    }
  }
}

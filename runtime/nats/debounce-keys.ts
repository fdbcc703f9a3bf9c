import { StorageType } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { DEBOUNCE_BUCKET, DEBOUNCE_ENTRY_TTL_MS, type DebounceEntry, parseEntry } from "../contracts/debounce.ts";
import { KvCells } from "./kv-cas.ts";

/** Debounced functions' keys (contracts/debounce.ts), each changed by compare-and-set. */
export type DebounceKeys = KvCells<DebounceEntry>;

/**
 * Creates `JETFN_DEBOUNCE_KEYS` (history 1, file storage, `replicas`, entries kept
 * {@link DEBOUNCE_ENTRY_TTL_MS} after their last write), or opens it if it exists.
 */
export async function openDebounceKeys(nc: NatsConnection, replicas: number): Promise<DebounceKeys> {
  const kv = await new Kvm(nc).create(DEBOUNCE_BUCKET, { history: 1, storage: StorageType.File, replicas, ttl: DEBOUNCE_ENTRY_TTL_MS });
  return new KvCells(kv, parseEntry);
}

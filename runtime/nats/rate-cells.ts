import { StorageType } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { parseCell, RATE_CELL_TTL_MS, RATE_LIMIT_BUCKET } from "../contracts/rate-limit.ts";
import { KvCells } from "./kv-cas.ts";

/**
 * Creates `JETFN_RATE_LIMITS` (history 1, file storage, `replicas`, a cell gone a day after
 * its last write: a full bucket again), or opens it if it exists; its cells are TATs, epoch ms.
 */
export async function openRateCells(nc: NatsConnection, replicas: number): Promise<KvCells<number>> {
  const kv = await new Kvm(nc).create(RATE_LIMIT_BUCKET, { history: 1, storage: StorageType.File, replicas, ttl: RATE_CELL_TTL_MS });
  return new KvCells(kv, parseCell);
}

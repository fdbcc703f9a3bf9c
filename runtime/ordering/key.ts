/**
 * The partition of a key: FNV-1a (32 bit) of its UTF-8 bytes, modulo `partitions`. Fixed
 * for ever: every replica, and every version of jetfn, must put a key in the same partition.
 */
export function partitionOf(key: string, partitions: number): number {
  let hash = 0x811c9dc5;
  const bytes = Buffer.from(key, "utf8");
  for (const byte of bytes) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % partitions;
}

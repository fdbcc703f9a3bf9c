/**
 * How many partitions one host should hold, from what it saw in one lease round. Pure: the
 * lease rounds in `leases.ts` feed it and act on the answer.
 *
 * Each live member may hold up to `ceil(partitions / live)`. That alone can leave a member
 * with nothing while the others sit at the ceiling (8 partitions on 5 hosts: 2/2/2/2/0), so
 * members below `floor(partitions / live)` come first: while one is, the others take vacant
 * partitions only up to the floor, and if there are not enough vacant partitions for it,
 * the fullest members (ties by host id, so every host picks the same ones) give one each.
 */

/** What one host knows of a function's partitions after a round. */
export interface LeaseView {
  readonly partitions: number;
  /** This host's id. */
  readonly self: string;
  /** Host ids of the live members; this host counts whether listed or not. */
  readonly live: ReadonlySet<string>;
  /** Owner host id of each partition held by another host, as last read (live or not). */
  readonly others: ReadonlyMap<number, string>;
  /** Partitions this host holds and may start events of (not those being released). */
  readonly held: number;
}

/** What this host should do about its share. */
export interface LeaseShare {
  readonly floor: number;
  readonly ceil: number;
  /** Take vacant partitions while holding fewer than this (`floor` while another member is below it). */
  readonly limit: number;
  /** How many of its highest-numbered partitions to release now. */
  readonly release: number;
}

export function leaseShare(view: LeaseView): LeaseShare {
  const live = new Set(view.live).add(view.self);
  const floor = Math.floor(view.partitions / live.size);
  const ceil = Math.ceil(view.partitions / live.size);
  const counts = new Map<string, number>([...live].map((host) => [host, 0]));
  for (const owner of view.others.values()) {
    const count = counts.get(owner);
    if (count !== undefined && owner !== view.self) counts.set(owner, count + 1);
  }
  counts.set(view.self, view.held);

  let heldByLive = 0;
  let deficit = 0;
  let deficitOfOthers = 0;
  for (const [host, count] of counts) {
    heldByLive += count;
    deficit += Math.max(0, floor - count);
    if (host !== view.self) deficitOfOthers += Math.max(0, floor - count);
  }
  // Vacant: no owner, an owner that is not live, or this host's own partitions being released.
  const vacant = Math.max(0, view.partitions - heldByLive);
  const limit = deficitOfOthers > 0 ? floor : ceil;

  if (view.held > ceil) return { floor, ceil, limit, release: view.held - ceil };
  const wanted = deficit - vacant;
  if (wanted > 0 && view.held > floor) {
    const donors = [...counts]
      .filter(([, count]) => count > floor)
      .sort(([a, ca], [b, cb]) => cb - ca || (a < b ? -1 : a > b ? 1 : 0))
      .map(([host]) => host);
    const rank = donors.indexOf(view.self);
    if (rank >= 0 && rank < wanted) return { floor, ceil, limit, release: 1 };
  }
  return { floor, ceil, limit, release: 0 };
}

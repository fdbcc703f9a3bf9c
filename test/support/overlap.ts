/** The most invocations running at once, from their start and end times (epoch ms). */
export function maxOverlap(runs: readonly { readonly start: number; readonly end: number }[]): number {
  const edges = runs.flatMap((c) => [
    { at: c.start, d: 1 },
    { at: c.end, d: -1 },
  ]);
  // An end before a start at the same millisecond: that slot was freed first.
  edges.sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let max = 0;
  for (const edge of edges) max = Math.max(max, (now += edge.d));
  return max;
}

import { describe, expect, it } from "vitest";
import { leaseShare } from "../../runtime/nats/lease-share.ts";

/** `owners` lists the owner of partitions 0, 1, 2, ... ("" for none); `self` holds those marked with its id. */
function view(self: string, live: string[], owners: string[]) {
  const others = new Map<number, string>();
  owners.forEach((owner, p) => {
    if (owner !== "" && owner !== self) others.set(p, owner);
  });
  return { partitions: owners.length, self, live: new Set(live), others, held: owners.filter((o) => o === self).length };
}

describe("leaseShare", () => {
  it("lets a lone host take every partition", () => {
    expect(leaseShare(view("a", ["a"], ["", "", "", "", "", "", "", ""]))).toEqual({ floor: 8, ceil: 8, limit: 8, release: 0 });
  });

  it("counts this host even when its membership was not listed", () => {
    expect(leaseShare(view("a", [], ["", "", ""])).limit).toBe(3);
  });

  it("releases down to the ceiling when a member joins", () => {
    const owners = ["a", "a", "a", "a", "a", "a", "a", "a"];
    expect(leaseShare(view("a", ["a", "b"], owners))).toMatchObject({ ceil: 4, release: 4 });
    expect(leaseShare(view("b", ["a", "b"], owners))).toMatchObject({ limit: 4, release: 0 });
  });

  it("settles 8 partitions on 3 hosts at 3/3/2", () => {
    const owners = ["a", "a", "a", "b", "b", "b", "c", "c"];
    for (const self of ["a", "b", "c"]) {
      expect(leaseShare(view(self, ["a", "b", "c"], owners))).toEqual({ floor: 2, ceil: 3, limit: 3, release: 0 });
    }
  });

  it("holds the others at the floor while a member is below it", () => {
    const owners = ["a", "a", "b", "b", "", "", "", ""];
    // c has nothing: a and b may take only up to 2 until c has its 2.
    expect(leaseShare(view("a", ["a", "b", "c"], owners))).toMatchObject({ limit: 2, release: 0 });
    expect(leaseShare(view("c", ["a", "b", "c"], owners))).toMatchObject({ limit: 3, release: 0 });
  });

  it("has exactly the fullest members give one each to a member left with nothing (2/2/2/2/0)", () => {
    const owners = ["a", "a", "b", "b", "c", "c", "d", "d"];
    const live = ["a", "b", "c", "d", "e"];
    expect(leaseShare(view("a", live, owners)).release).toBe(1);
    for (const self of ["b", "c", "d"]) expect(leaseShare(view(self, live, owners)).release).toBe(0);
    expect(leaseShare(view("e", live, owners))).toMatchObject({ floor: 1, ceil: 2, limit: 2 });
  });

  it("gives nothing while vacant partitions can cover the deficit", () => {
    // d's partitions are vacant (d is not live): e takes one of them instead.
    const owners = ["a", "a", "b", "b", "c", "c", "d", "d"];
    expect(leaseShare(view("a", ["a", "b", "c", "e"], owners)).release).toBe(0);
  });

  it("does not release twice: a donor whose partition is being released is no longer a donor", () => {
    // a released partition 1 (still listed as a's by the others until deleted).
    const owners = ["a", "", "b", "b", "c", "c", "d", "d"];
    expect(leaseShare(view("a", ["a", "b", "c", "d", "e"], owners)).release).toBe(0);
    const seenByB = view("b", ["a", "b", "c", "d", "e"], ["a", "a", "b", "b", "c", "c", "d", "d"]);
    expect(leaseShare(seenByB).release).toBe(0);
  });

  it("leaves hosts beyond the partition count with nothing to take", () => {
    const owners = ["a", "b"];
    expect(leaseShare(view("c", ["a", "b", "c"], owners))).toEqual({ floor: 0, ceil: 1, limit: 1, release: 0 });
    expect(leaseShare(view("a", ["a", "b", "c"], owners)).release).toBe(0);
  });
});

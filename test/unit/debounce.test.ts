/** The rules of a debounced key (contracts/debounce.ts): what an event and a fire do to its entry. */
import { describe, expect, it } from "vitest";
import {
  type DebounceEntry,
  entryKey,
  fireAt,
  fireSubject,
  parseEntry,
  parseFireSubject,
  releaseFire,
  takeEvent,
  takeFire,
} from "../../runtime/contracts/debounce.ts";

describe("debounce rules", () => {
  it("opens a window with the first event, and a newer event supersedes the window's newest", () => {
    const first = takeEvent(undefined, 10, 1000);
    expect(first).toEqual({ kind: "take", superseded: false, entry: { newest: 10, since: 1000, high: 10 } });
    const second = takeEvent(first.kind === "take" ? first.entry : undefined, 12, 1500);
    // The window's start stays: maxWait counts from the first event.
    expect(second).toEqual({ kind: "take", superseded: true, entry: { newest: 12, since: 1000, high: 12 } });
  });

  it("takes an older event, or a redelivery, without changing anything", () => {
    const entry: DebounceEntry = { newest: 12, since: 1000, high: 12 };
    expect(takeEvent(entry, 11, 2000)).toEqual({ kind: "old" });
    expect(takeEvent(entry, 12, 2000)).toEqual({ kind: "again" });
    // A closed window remembers the highest taken: a late redelivery of its event is old.
    expect(takeEvent({ newest: 0, since: 0, high: 12, running: 7 }, 12, 2000)).toEqual({ kind: "old" });
  });

  it("fires a period after now, or maxWait after the window's first event, whichever is sooner", () => {
    const entry: DebounceEntry = { newest: 12, since: 1000, high: 12 };
    expect(fireAt(entry, 5000, 2000)).toBe(7000);
    expect(fireAt(entry, 5000, 2000, 60_000)).toBe(7000);
    expect(fireAt(entry, 5000, 2000, 3000)).toBe(4000); // due already: delivered at once
  });

  it("runs the fire of the newest event (claiming the key), a retry of the claiming fire, and nothing else", () => {
    const open: DebounceEntry = { newest: 12, since: 1000, high: 12 };
    const claimed = takeFire(open, 12, 500);
    expect(claimed).toEqual({ kind: "run", claim: { newest: 0, since: 0, high: 12, running: 500 } });
    const entry = claimed.kind === "run" ? claimed.claim : undefined;
    expect(takeFire(entry, 12, 500)).toEqual({ kind: "run" }); // its retry
    expect(takeFire(entry, 12, 501)).toEqual({ kind: "stale" }); // a duplicate fire of the same event
    expect(takeFire(open, 11, 499)).toEqual({ kind: "stale" }); // a superseded event's fire
    expect(takeFire(undefined, 12, 500)).toEqual({ kind: "stale" });
    // A new window opened while the claimed run goes on keeps the claim until its own fire claims the key.
    const reopened = takeEvent(entry, 13, 9000);
    expect(reopened).toMatchObject({ kind: "take", superseded: false, entry: { newest: 13, since: 9000, running: 500 } });
    expect(releaseFire(entry, 500)).toEqual({ newest: 0, since: 0, high: 12 });
    expect(releaseFire(entry, 501)).toBeUndefined();
  });

  it("writes fire subjects and entry keys any subject or key survives", () => {
    expect(fireSubject("latest-price", 42, "prices.eu.AAPL")).toBe("jetfn.debounce.latest-price.42.prices.eu.AAPL");
    expect(parseFireSubject("jetfn.debounce.latest-price.42.prices.eu.AAPL")).toEqual({
      fn: "latest-price",
      seq: 42,
      subject: "prices.eu.AAPL",
    });
    expect(parseFireSubject("jetfn.debounce.latest-price.x.prices")).toBeUndefined();
    expect(entryKey("f", "")).toBe("f.k");
    expect(entryKey("f", "a b/ü.*")).toMatch(/^f\.k[A-Za-z0-9_-]+$/);
    expect(parseEntry({ newest: 1, since: 2, high: 3 })).toEqual({ newest: 1, since: 2, high: 3 });
    expect(parseEntry({ newest: "1", since: 2, high: 3 })).toBeUndefined();
    expect(parseEntry(null)).toBeUndefined();
  });
});

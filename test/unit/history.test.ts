/** The bad-day suite's checker (test/support/history.ts) on hand-made histories. */
import { describe, expect, it } from "vitest";
import { type HistoryLine, judge } from "../support/history.ts";

function run(id: string, runId: string, start: number, end: number | undefined, ok = true, key?: string): HistoryLine[] {
  const base = { id, run: runId, replica: "r1", ...(key !== undefined ? { key } : {}) };
  return [{ ...base, kind: "start", at: start }, ...(end === undefined ? [] : [{ ...base, kind: "end" as const, at: end, ok }])];
}

describe("history checker", () => {
  it("finds nothing wrong in a clean history", () => {
    const history = [...run("a", "1", 0, 10, true, "k"), ...run("b", "2", 11, 20, true, "k"), ...run("c", "3", 5, 6)];
    expect(judge(history, [{ id: "a", key: "k" }, { id: "b", key: "k" }, { id: "c" }])).toEqual({
      published: 3,
      succeeded: 3,
      lost: [],
      duplicates: 0,
      unfinished: 0,
      orderViolations: [],
      overlaps: [],
    });
  });

  it("counts lost events, duplicates and unfinished runs; a failed run is not a success", () => {
    const history = [...run("a", "1", 0, 10), ...run("a", "2", 20, 30), ...run("b", "3", 0, 5, false), ...run("c", "4", 0, undefined)];
    const verdict = judge(history, [{ id: "a" }, { id: "b" }, { id: "c" }]);
    expect(verdict).toMatchObject({ succeeded: 2, lost: ["b", "c"], duplicates: 1, unfinished: 1 });
  });

  it("finds a key's event started before its predecessor first succeeded, and runs of a key that overlap", () => {
    const history = [
      ...run("a", "1", 0, 100, true, "k"),
      ...run("b", "2", 50, 60, true, "k"), // before a's success, and inside a's run
      ...run("c", "3", 200, undefined, true, "k"), // never ended: runs to the end of the history
      ...run("d", "4", 250, 300, true, "k"),
    ];
    const verdict = judge(history, [
      { id: "a", key: "k" },
      { id: "b", key: "k" },
      { id: "c", key: "k" },
      { id: "d", key: "k" },
    ]);
    expect(verdict.orderViolations).toEqual(["k: b started 50 ms before a first succeeded"]);
    expect(verdict.overlaps).toEqual(["k: b (2) started 50 ms before a (1) ended", "k: d (4) started 50 ms before c (3) ended"]);
    expect(verdict.lost).toEqual(["c"]);
  });

  it("ends an unfinished run with its replica's last line: a killed replica's run overlaps nothing after it", () => {
    const killed = run("a", "1", 0, undefined, true, "k").map((line) => ({ ...line, replica: "r2" }));
    const history = [
      ...killed,
      { ...run("z", "9", 5, 10)[0]!, replica: "r2" },
      ...run("a", "2", 50, 60, true, "k"),
      ...run("b", "3", 70, 80, true, "k"),
    ];
    const verdict = judge(history, [
      { id: "a", key: "k" },
      { id: "b", key: "k" },
    ]);
    expect(verdict.overlaps).toEqual([]);
    expect(verdict.unfinished).toBe(2);
  });
});

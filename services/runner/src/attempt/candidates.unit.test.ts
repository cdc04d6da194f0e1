import { describe, expect, it } from "vitest";
import { type CandidateScore, numstatLines, rankCandidates, scoreOf } from "./candidates.js";

const s = (candidate: number, o: Partial<CandidateScore> = {}): CandidateScore => ({ candidate, status: "passed", ...o });

describe("the best-of-N test oracle", () => {
  it("picks the only candidate whose tests passed", () => {
    const r = rankCandidates([s(1, { status: "failed", testsFailed: 1 }), s(2, { testsPassed: 3 }), s(3, { status: "error" })]);
    expect(r.winner).toBe(2);
    expect(r.order).toEqual([2, 1, 3]);
    expect(r.reason).toBe("candidate 2: the only candidate whose tests passed");
  });

  it("among passing ones: more tests passed, then fewer failed, then the smaller diff, then the lower number", () => {
    expect(rankCandidates([s(1, { testsPassed: 3 }), s(2, { testsPassed: 5 })]).winner).toBe(2);
    expect(rankCandidates([s(1, { testsPassed: 5, testsFailed: 1 }), s(2, { testsPassed: 5, testsFailed: 0 })]).winner).toBe(2);
    const bySize = rankCandidates([s(1, { diffLines: 40 }), s(2, { diffLines: 12 }), s(3)]);
    expect(bySize).toMatchObject({ winner: 2, order: [2, 1, 3] });
    expect(bySize.reason).toContain("smallest change (12 lines)");
    expect(rankCandidates([s(3, { diffLines: 5 }), s(1, { diffLines: 5 })]).winner).toBe(1);
  });

  it("has no winner when none passed, and says which failed best", () => {
    const r = rankCandidates([
      s(1, { status: "error" }),
      s(2, { status: "failed", testsPassed: 2, testsFailed: 1 }),
      s(3, { status: "failed" }),
    ]);
    expect(r.winner).toBeUndefined();
    expect(r.order[0]).toBe(2);
    expect(r.reason).toMatch(/no candidate passed its tests \(3 ran; the best was candidate 2\)/);
  });

  it("scores a candidate from how its pipeline ended: its tests, or a platform failure as an error", () => {
    const counts = { total: 4, passed: 3, failed: 1, skipped: 0 };
    expect(scoreOf(1, { status: "succeeded" }, { testOutcome: { outcome: "succeeded", detail: "", counts } }, { diffLines: 7 })).toEqual({
      candidate: 1,
      status: "passed",
      testsPassed: 3,
      testsFailed: 1,
      diffLines: 7,
    });
    expect(scoreOf(2, { status: "failed", reasonCode: "test_failed", reason: "1 failed" }, {})).toMatchObject({
      status: "failed",
      reasonCode: "test_failed",
    });
    expect(scoreOf(3, { status: "failed", reasonCode: "internal_error", reason: "x" }, {}).status).toBe("error");
  });

  it("reads git's numstat as numbers only: lines added and removed, a binary file as one", () => {
    expect(numstatLines("3\t1\ta.txt\n-\t-\tlogo.png\n10\t0\tb/c.ts\n")).toBe(15);
    expect(numstatLines("")).toBe(0);
    expect(numstatLines("fatal: not a git repository")).toBeUndefined();
  });
});

import { describe, expect, it } from "vitest";
import { artifactNameProblem, assertArtifactName, isArtifactKind, parseRange } from "./names.js";

describe("parseRange (RFC 9110 §14, one range per request)", () => {
  const size = 10_000;

  it("serves first-last, open-ended and suffix ranges, clamped to the content", () => {
    expect(parseRange("bytes=0-499", size)).toEqual({ start: 0, end: 499 });
    expect(parseRange("bytes=500-999", size)).toEqual({ start: 500, end: 999 });
    expect(parseRange("bytes=-500", size)).toEqual({ start: 9_500, end: 9_999 });
    expect(parseRange("bytes=9500-", size)).toEqual({ start: 9_500, end: 9_999 });
    expect(parseRange("bytes=0-0", size)).toEqual({ start: 0, end: 0 });
    expect(parseRange("bytes=-1", size)).toEqual({ start: 9_999, end: 9_999 });
    expect(parseRange("bytes=9999-", size)).toEqual({ start: 9_999, end: 9_999 });
    // a last position past the end, or a suffix longer than the content, means "to the end"
    expect(parseRange("bytes=0-99999999999999999999", size)).toEqual({ start: 0, end: 9_999 });
    expect(parseRange("bytes=-20000", size)).toEqual({ start: 0, end: 9_999 });
    expect(parseRange("  bytes=1-2  ", size)).toEqual({ start: 1, end: 2 });
    expect(parseRange("bytes=007-010", size)).toEqual({ start: 7, end: 10 });
  });

  it("answers 416 for ranges that start at or past the end, or select nothing", () => {
    expect(parseRange("bytes=10000-", size)).toBe("unsatisfiable");
    expect(parseRange("bytes=10000-20000", size)).toBe("unsatisfiable");
    expect(parseRange("bytes=99999999999999999999-", size)).toBe("unsatisfiable");
    expect(parseRange("bytes=-0", size)).toBe("unsatisfiable");
    expect(parseRange("bytes=5-3", size)).toBe("unsatisfiable");
    // nothing of an empty artifact can be selected
    expect(parseRange("bytes=0-", 0)).toBe("unsatisfiable");
    expect(parseRange("bytes=-5", 0)).toBe("unsatisfiable");
    expect(parseRange("bytes=0-0", 0)).toBe("unsatisfiable");
  });

  it("ignores what it does not serve: the whole artifact is sent, as the RFC allows", () => {
    for (const header of [
      undefined,
      "",
      "bytes=-",
      "bytes=0-1,5-6",
      "items=0-1",
      "bytes 0-1",
      "bytes=a-b",
      "bytes=-1-2",
      "bytes=1.5-2",
      "bytes=0x10-",
      "bytes=+1-2",
      "bytes=１-２",
    ]) {
      expect(parseRange(header, size), JSON.stringify(header)).toBeUndefined();
    }
  });

  it("never yields a range outside the content, whatever the numbers", () => {
    for (const header of [
      "bytes=0-",
      "bytes=-1",
      "bytes=-99999",
      "bytes=3-2",
      "bytes=0-9007199254740993",
      "bytes=9007199254740993-9007199254740999",
    ])
      for (const n of [0, 1, 2, 3, 1000]) {
        const r = parseRange(header, n);
        if (r === undefined || r === "unsatisfiable") continue;
        expect(r.start, `${header} of ${n}`).toBeGreaterThanOrEqual(0);
        expect(r.start, `${header} of ${n}`).toBeLessThanOrEqual(r.end);
        expect(r.end, `${header} of ${n}`).toBeLessThan(n);
      }
  });

  it("reads a hostile header in linear time", () => {
    const started = performance.now();
    expect(parseRange(`bytes=${"1".repeat(1_000_000)}-`, size)).toBe("unsatisfiable");
    expect(parseRange(`bytes=${"0".repeat(1_000_000)}x`, size)).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(500);
  });
});

describe("artifactNameProblem", () => {
  it("accepts names with folders", () => {
    for (const name of [
      "changes.diff",
      "reports/junit.xml",
      "a/b/c.txt",
      "...",
      "..x",
      "x..",
      "ünïcode.txt",
      "a b.txt",
      `${"x".repeat(255)}`,
    ]) {
      expect(artifactNameProblem(name), name).toBeUndefined();
    }
  });

  it("refuses names that point outside their task or hide control characters", () => {
    const cases: [string, RegExp][] = [
      ["", /empty/],
      ["x".repeat(256), /255 bytes/],
      ["é".repeat(128), /255 bytes/], // 256 bytes in UTF-8
      ["/etc/passwd", /absolute/],
      ["C:\\x", /absolute/],
      ["c:x", /absolute/],
      ["a\\..\\b", /backslash/],
      ["../x", /'\.\.'/],
      ["a/../../x", /'\.\.'/],
      ["a/..", /'\.\.'/],
      ["a//b", /empty or '\.'/],
      ["a/", /empty or '\.'/],
      ["./a", /empty or '\.'/],
      ["a\u0000b", /control/],
      ["a\nb", /control/],
      ["a\u007f", /control/],
    ];
    for (const [name, problem] of cases) expect(artifactNameProblem(name), JSON.stringify(name)).toMatch(problem);
    expect(() => assertArtifactName("../x")).toThrow(/invalid artifact name/);
  });
});

describe("isArtifactKind", () => {
  it("knows the catalogue's kinds only", () => {
    for (const k of ["diff", "log", "test-report", "transcript", "other"]) expect(isArtifactKind(k)).toBe(true);
    for (const k of ["", "DIFF", "constructor", "__proto__", "report"]) expect(isArtifactKind(k)).toBe(false);
  });
});

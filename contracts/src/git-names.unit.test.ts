import { describe, expect, it } from "vitest";
import { GIT_REF_PATTERN, gitRefProblem, isSafeGitRef } from "./git-names.js";

// What `git check-ref-format --allow-onelevel` answers for each (git 2.x), plus our two rules:
// no leading '-' (option injection) and a bounded length; and no characters outside a safe set.
const GIT_ACCEPTS = [
  "main",
  "refs/heads/x",
  "v1.0.0",
  "feature/JIRA-12_fix+x",
  "a@b",
  "a@",
  "@/x",
  "x/@",
  "x@/y",
  "x./y",
  "a.lock.b",
  "HEAD",
];
const GIT_REFUSES = [
  "foo.lock/bar",
  "a/b.lock/c",
  "a.lock/b.lock",
  "x.lock",
  "a/.b",
  ".a",
  "a/.lock",
  ".lock",
  "@",
  "a@{1}",
  "x/",
  "/x",
  "x.",
  "a/x.",
  "a..b",
  "a/..b",
  "a//b",
  "a/./b",
  "a b",
  "a~1",
  "a^",
  "a:b",
  "a?",
  "a*",
  "a[",
  "a\\b",
  "a\u0000",
  "a\u007f",
];

describe("isSafeGitRef", () => {
  it("accepts what git accepts", () => {
    for (const ref of GIT_ACCEPTS) expect(isSafeGitRef(ref), ref).toBe(true);
  });

  it("refuses what git refuses, component by component", () => {
    for (const ref of GIT_REFUSES) expect(isSafeGitRef(ref), ref).toBe(false);
  });

  it("refuses option-like, over-long and non-ASCII names that git would take", () => {
    for (const ref of ["-x", "--upload-pack=touch /tmp/x", "é", "naïve", "a".repeat(201), ""]) expect(isSafeGitRef(ref), ref).toBe(false);
    expect(isSafeGitRef("a".repeat(200))).toBe(true);
  });

  it("is at least as strict as the schema pattern (the pattern alone misses the per-component rules)", () => {
    const re = new RegExp(GIT_REF_PATTERN);
    for (const ref of [...GIT_ACCEPTS, ...GIT_REFUSES, "-x", ""]) if (isSafeGitRef(ref)) expect(re.test(ref), ref).toBe(true);
    // documented gap: these pass the task spec's schema and are refused at run time by isSafeGitRef
    expect(["foo.lock/bar", "a/.b"].filter((ref) => re.test(ref))).toEqual(["foo.lock/bar", "a/.b"]);
  });
});

describe("gitRefProblem", () => {
  it("says why, in words a submitter can act on", () => {
    expect(gitRefProblem("main")).toBeUndefined();
    expect(gitRefProblem("")).toBe("is empty");
    expect(gitRefProblem("x".repeat(201))).toBe("is longer than 200 characters");
    expect(gitRefProblem("-f")).toBe("starts with '-'");
    expect(gitRefProblem("a/../b")).toBe("contains '..'");
    expect(gitRefProblem("a\nb")).toBe("contains control characters");
    expect(gitRefProblem("a b")).toMatch(/not a valid git ref name/);
    expect(gitRefProblem("foo.lock/bar")).toMatch(/not a valid git ref name/);
  });

  it("answers in bounded time on hostile input", () => {
    const started = performance.now();
    for (const ref of [
      "a.".repeat(100_000),
      `${"a/".repeat(100_000)}.`,
      "@{".repeat(100_000),
      `${"a".repeat(199)}${".lock".repeat(10_000)}`,
    ]) {
      expect(isSafeGitRef(ref)).toBe(false);
      expect(gitRefProblem(ref)).toBeDefined();
    }
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

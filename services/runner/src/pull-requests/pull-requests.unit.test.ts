import { describe, expect, it } from "vitest";
import { DiffStatCounter, diffLine, fenced, linksFor, pullRequestBody, pullRequestTitle, testsLine } from "./body.js";
import { branchOfRef, pullRequestRef } from "./forge.js";
import { gitlabHost } from "./gitlab.js";
import { PullRequestError, type RetryPolicy, retryAfterMs, retryOf, scrubbed, withRetries } from "./http.js";

const headers = (h: Record<string, string>) => ({ get: (name: string) => h[name.toLowerCase()] ?? null });

describe("the pull request's title", () => {
  it("is the task's, on one line, without control characters, bounded", () => {
    expect(pullRequestTitle("Fix the flaky date test")).toBe("Fix the flaky date test");
    expect(pullRequestTitle("line one\nline two\r\n\tthree")).toBe("line one line two three");
    expect(pullRequestTitle("a\u0000b\u202ec\u0007d")).toBe("a b c d");
    const long = pullRequestTitle("x".repeat(1000));
    expect(long).toHaveLength(250);
    expect(long.endsWith("…")).toBe(true);
    expect(pullRequestTitle(" \n ")).toBe("codefleet task");
  });
});

describe("the pull request's body", () => {
  const facts = {
    taskId: "tsk_01KA0000000000000000000000",
    attempt: 2,
    summary: "Fixed the timezone handling.\n\n@octocat see [here](https://evil.example)",
    tests: { outcome: "succeeded" as const, counts: { total: 13, passed: 12, failed: 0, skipped: 1 } },
    diff: { files: 3, additions: 10, deletions: 2, binaryFiles: 0 },
    commitSha: "a".repeat(40),
    branch: "codefleet/tsk_01KA0000000000000000000000",
    links: linksFor("tsk_01KA0000000000000000000000", "4bf92f3577b34da6a3ce929d0e0e4736", {
      publicUrl: "https://codefleet.example/",
      jaegerUrl: "https://jaeger.example",
    }),
  };

  it("has the summary, the tests, the diff stat, the commit and links to the task and its trace", () => {
    const body = pullRequestBody(facts);
    expect(body).toContain("Fixed the timezone handling.");
    expect(body).toContain("- **Tests:** ✅ passed: 12 passed, 0 failed, 1 skipped (13 tests)");
    expect(body).toContain("- **Changes:** 3 files changed, +10 −2");
    expect(body).toContain(`- **Commit:** \`${"a".repeat(40)}\` on \`codefleet/tsk_01KA0000000000000000000000\``);
    expect(body).toContain(
      "- **Task:** [tsk_01KA0000000000000000000000](https://codefleet.example/tasks/tsk_01KA0000000000000000000000) ([API](https://codefleet.example/v1/tasks/tsk_01KA0000000000000000000000)), attempt 2",
    );
    expect(body).toContain(
      "- **Trace:** [4bf92f3577b34da6a3ce929d0e0e4736](https://jaeger.example/trace/4bf92f3577b34da6a3ce929d0e0e4736)",
    );
  });

  it("puts the agent's words in a code fence they cannot close, so no markdown, mention or link of theirs renders", () => {
    const hostile = "done\n```\n@everyone [click](javascript:alert(1))\n````\n<img src=x onerror=alert(1)>";
    const body = pullRequestBody({ ...facts, summary: hostile });
    const fence = "`````"; // one longer than the longest run in the summary (4)
    expect(body).toContain(`${fence}text\n${hostile}\n${fence}`);
    // everything between the fences is the summary; nothing of it is outside
    const inside = body.slice(body.indexOf(`${fence}text\n`) + fence.length + 5, body.lastIndexOf(`\n${fence}`));
    expect(inside).toBe(hostile);
    expect(body.replace(inside, "")).not.toContain("@everyone");
    expect(fenced("no backticks")).toBe("```text\nno backticks\n```");
  });

  it("bounds the summary, strips its control characters, and says when there is none", () => {
    const body = pullRequestBody({ ...facts, summary: `a\u001b[31mred\u0000${"y".repeat(20_000)}` });
    expect(body.includes("\u0000") || body.includes("\u001b")).toBe(false);
    expect(body).toContain("… (cut)");
    expect(body.length).toBeLessThan(9000);
    expect(pullRequestBody({ ...facts, summary: "  " })).toContain("_The agent gave no summary._");
  });

  it("says what it knows of the tests and leaves out links it has no URL for", () => {
    expect(testsLine(undefined)).toBe("no test command");
    expect(testsLine({ outcome: "failed" })).toBe("❌ failed");
    expect(testsLine({ outcome: "failed", counts: { total: 1, passed: 0, failed: 1, skipped: 0 } })).toBe(
      "❌ failed: 0 passed, 1 failed, 0 skipped (1 test)",
    );
    expect(diffLine({ files: 1, additions: 0, deletions: 0, binaryFiles: 1 })).toBe("1 file changed, +0 −0, 1 binary file");
    const bare = pullRequestBody({ ...facts, taskId: "tsk_1", links: linksFor("tsk_1", undefined, {}) });
    expect(bare).toContain("- **Task:** `tsk_1`, attempt 2");
    expect(bare).not.toContain("Trace");
    expect(linksFor("tsk_1", "not-a-trace-id", { jaegerUrl: "https://j" })).toEqual({});
  });
});

describe("DiffStatCounter", () => {
  const diff = [
    "diff --git a/a.ts b/a.ts",
    "index 1111111..2222222 100644",
    "--- a/a.ts",
    "+++ b/a.ts",
    "@@ -1,3 +1,3 @@",
    " keep",
    "--- a removed line that looks like a header",
    "+++ an added line that looks like a header",
    "-old",
    "+new",
    "\\ No newline at end of file",
    "diff --git a/new.txt b/new.txt",
    "new file mode 100644",
    "--- /dev/null",
    "+++ b/new.txt",
    "@@ -0,0 +1 @@",
    "+hello",
    "diff --git a/img.png b/img.png",
    "Binary files a/img.png and b/img.png differ",
    "",
  ].join("\n");

  it("counts files and lines by the hunks' own counts, binary files apart", () => {
    const c = new DiffStatCounter();
    c.push(diff);
    expect(c.end()).toEqual({ files: 3, additions: 3, deletions: 2, binaryFiles: 1 });
  });

  it("gives the same counts however the stream is cut, and keeps only the start of a long line", () => {
    for (const size of [1, 3, 7, 64]) {
      const c = new DiffStatCounter();
      for (let i = 0; i < diff.length; i += size) c.push(diff.slice(i, i + size));
      expect(c.end(), `chunks of ${size}`).toEqual({ files: 3, additions: 3, deletions: 2, binaryFiles: 1 });
    }
    const c = new DiffStatCounter();
    c.push(`diff --git a/x b/x\n@@ -1 +1 @@\n-${"x".repeat(100_000)}\n+${"y".repeat(100_000)}\n`);
    expect(c.end()).toEqual({ files: 1, additions: 1, deletions: 1, binaryFiles: 0 });
  });
});

describe("provider answers and errors", () => {
  it("take only an http(s) URL and a positive number from an answer", () => {
    expect(pullRequestRef("https://github.com/a/b/pull/1", 1, "x")).toEqual({ url: "https://github.com/a/b/pull/1", number: 1 });
    for (const [url, n] of [
      ["javascript:alert(1)", 1],
      ["https://x/ y", 1],
      [undefined, 1],
      ["https://x/1", 0],
      ["https://x/1", 1.5],
      ["https://x/1", "1"],
    ] as const)
      expect(() => pullRequestRef(url, n, "x")).toThrow(PullRequestError);
  });

  it("classify: 401/403/404/422 are final, 429 and 5xx retried, after Retry-After or a spent rate limit's reset", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    for (const s of [400, 401, 403, 404, 409, 422]) expect(retryOf(s, headers({}), now), String(s)).toEqual({ kind: "never" });
    expect(retryOf(429, headers({}), now)).toEqual({ kind: "backoff" });
    expect(retryOf(503, headers({}), now)).toEqual({ kind: "backoff" });
    expect(retryOf(429, headers({ "retry-after": "7" }), now)).toEqual({ kind: "after", delayMs: 7000 });
    expect(retryOf(503, headers({ "retry-after": "Thu, 01 Jan 2026 00:00:30 GMT" }), now)).toEqual({ kind: "after", delayMs: 30_000 });
    // GitHub: 403 with the primary rate limit spent, or a secondary one with Retry-After
    expect(retryOf(403, headers({ "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now / 1000 + 12) }), now)).toEqual({
      kind: "after",
      delayMs: 12_000,
    });
    expect(retryOf(403, headers({ "retry-after": "60" }), now)).toEqual({ kind: "after", delayMs: 60_000 });
    expect(retryAfterMs("soon", now)).toBeUndefined();
  });

  it("lose the token, control characters and length in messages", () => {
    expect(scrubbed("Bad credentials for ghp_secret123 \u001b[0m", ["ghp_secret123"])).toBe("Bad credentials for *** [0m");
    expect(scrubbed("x".repeat(500), [])).toHaveLength(301);
  });
});

describe("withRetries", () => {
  const policy = (slept: number[], over: Partial<RetryPolicy> = {}): RetryPolicy => ({
    retries: 3,
    baseDelayMs: 100,
    maxDelayMs: 250,
    maxRetryAfterMs: 5000,
    sleep: async (ms) => {
      slept.push(ms);
    },
    ...over,
  });
  const failing = (errors: PullRequestError[]) => {
    let calls = 0;
    return {
      f: async () => {
        const e = errors[calls++];
        if (e) throw e;
        return calls;
      },
      calls: () => calls,
    };
  };

  it("waits as the server asks, else backs off exponentially (capped), a bounded number of times", async () => {
    const slept: number[] = [];
    const r = failing([
      new PullRequestError("429", { status: 429, retry: { kind: "after", delayMs: 1200 } }),
      new PullRequestError("503", { status: 503, retry: { kind: "backoff" } }),
      new PullRequestError("503", { status: 503, retry: { kind: "backoff" } }),
    ]);
    expect(await withRetries(r.f, policy(slept))).toBe(4);
    expect(slept).toEqual([1200, 200, 250]);
    const many = failing(Array.from({ length: 10 }, () => new PullRequestError("502", { status: 502, retry: { kind: "backoff" } })));
    await expect(withRetries(many.f, policy([]))).rejects.toThrow("502");
    expect(many.calls()).toBe(4);
  });

  it("never retries a final error, nor waits longer than allowed", async () => {
    const slept: number[] = [];
    const r = failing([new PullRequestError("401", { status: 401, retry: { kind: "never" } })]);
    await expect(withRetries(r.f, policy(slept))).rejects.toThrow("401");
    expect(r.calls()).toBe(1);
    const long = failing([new PullRequestError("429", { status: 429, retry: { kind: "after", delayMs: 3_600_000 } })]);
    await expect(withRetries(long.f, policy(slept))).rejects.toThrow("asks to wait 3600 s");
    expect(slept).toEqual([]);
  });
});

describe("small rules", () => {
  it("base: repo.ref when it names a branch", () => {
    expect(branchOfRef(undefined)).toBeUndefined();
    expect(branchOfRef("main")).toBe("main");
    expect(branchOfRef("refs/heads/release/1.2")).toBe("release/1.2");
    expect(branchOfRef("refs/tags/v1")).toBeUndefined();
    expect(branchOfRef("a".repeat(40))).toBeUndefined();
    expect(branchOfRef("HEAD")).toBeUndefined();
  });
  it("GitLab: the API root to the instance Gitbeaker wants", () => {
    expect(gitlabHost("https://gitlab.com/api/v4")).toBe("https://gitlab.com");
    expect(gitlabHost("https://git.example/gitlab/api/v4/")).toBe("https://git.example/gitlab");
    expect(gitlabHost("https://git.example")).toBe("https://git.example");
  });
});

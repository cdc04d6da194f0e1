import type { LogChunk } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { languageOf, parseUnifiedDiff } from "./diff.js";
import { formatDuration, taskDuration } from "./format.js";
import { highlightLines } from "./highlight.js";
import { logText, turnOfAttempt } from "./log-text.js";
import { EMPTY_FORM, fieldOf, specFromForm, validateSpec } from "./spec-form.js";

describe("parseUnifiedDiff", () => {
  it("splits files and hunks, numbers lines, counts changes, knows added, deleted and renamed files", () => {
    const files = parseUnifiedDiff(
      [
        "diff --git a/a.ts b/a.ts",
        "index 1..2 100644",
        "--- a/a.ts",
        "+++ b/a.ts",
        "@@ -10,3 +10,3 @@ function f() {",
        " keep",
        "-old",
        "+new",
        "\\ No newline at end of file",
        "diff --git a/gone.txt b/gone.txt",
        "deleted file mode 100644",
        "--- a/gone.txt",
        "+++ /dev/null",
        "@@ -1 +0,0 @@",
        "-bye",
        "diff --git a/old name.md b/new name.md",
        "similarity index 100%",
        "rename from old name.md",
        "rename to new name.md",
        "diff --git a/img.png b/img.png",
        "Binary files a/img.png and b/img.png differ",
        "",
      ].join("\n"),
    );
    expect(files.map((f) => [f.path, f.status, f.additions, f.deletions, f.binary])).toEqual([
      ["a.ts", "modified", 1, 1, false],
      ["gone.txt", "deleted", 0, 1, false],
      ["new name.md", "renamed", 0, 0, false],
      ["img.png", "modified", 0, 0, true],
    ]);
    expect(files[0]!.hunks[0]!.lines).toEqual([
      { kind: "ctx", text: "keep", oldNo: 10, newNo: 10 },
      { kind: "del", text: "old", oldNo: 11 },
      { kind: "add", text: "new", newNo: 11 },
      { kind: "note", text: "No newline at end of file" },
    ]);
    expect(files[2]!.oldPath).toBe("old name.md");
  });

  it("reads a diff without git headers", () => {
    const [f] = parseUnifiedDiff("--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+print(1)\n");
    expect(f).toMatchObject({ path: "new.py", status: "added", additions: 1 });
  });
});

describe("highlighting", () => {
  it("knows languages by extension and name, escapes text, and keeps spans balanced per line", () => {
    expect(languageOf("src/a.tsx")).toBe("typescript");
    expect(languageOf("Dockerfile")).toBe("dockerfile");
    expect(languageOf("notes")).toBeUndefined();
    expect(highlightLines(["<b>&"], undefined)).toEqual(["&lt;b&gt;&amp;"]);
    const html = highlightLines(["const s = `a", "b` + '<x>'"], "typescript");
    expect(html).toHaveLength(2);
    for (const line of html) expect(line.match(/<span/g)?.length ?? 0).toBe(line.match(/<\/span>/g)?.length ?? 0);
    expect(html[1]).toContain("&lt;x&gt;");
    expect(html[1]!.startsWith('<span class="hljs-string">')).toBe(true); // the template string goes on
  });
});

describe("the submit form", () => {
  const filled = {
    ...EMPTY_FORM,
    title: "t",
    repoUrl: "https://git.example.com/a.git",
    ref: "main",
    prompt: "p",
    steps: "echo a\n\n  echo b  ",
    testCommand: "sh test.sh",
    timeoutSeconds: "600",
    cpus: "0.5",
    labels: "team=core\n",
  };

  it("turns the form into a task spec the API's schema accepts", () => {
    const { spec, errors } = specFromForm(filled);
    expect(errors).toEqual([]);
    expect(spec).toEqual({
      repo: { url: "https://git.example.com/a.git", ref: "main" },
      title: "t",
      prompt: "p",
      agent: { kind: "script", steps: [{ run: "echo a" }, { run: "echo b" }] },
      test: { command: "sh test.sh" },
      limits: { timeoutSeconds: 600, cpus: 0.5 },
      labels: { team: "core" },
    });
    expect(validateSpec(spec)).toMatchObject({ ok: true });
  });

  it("reports the schema's errors with their paths, the agent's by its kind", () => {
    const { spec } = specFromForm({ ...filled, title: "", steps: "", timeoutSeconds: "5", cpus: "many", agentKind: "script" });
    const r = validateSpec(spec);
    expect(r.ok).toBe(false);
    const paths = r.ok ? [] : r.errors.map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(["/title", "/agent/steps", "/limits/timeoutSeconds", "/limits/cpus"]));
    expect(paths).not.toContain("/agent");
    const openai = validateSpec(specFromForm({ ...filled, agentKind: "openai", model: "" }).spec);
    expect(openai.ok ? [] : openai.errors.map((e) => e.path)).toContain("/agent/model");
    expect(fieldOf("/agent/steps")).toBe("steps");
    expect(fieldOf("/limits/cpus")).toBe("cpus");
  });

  it("refuses label lines without = and label keys the registry refuses", () => {
    expect(specFromForm({ ...filled, labels: "oops" }).errors).toEqual([{ path: "/labels", message: "'oops' is not key=value" }]);
    const bad = validateSpec(specFromForm({ ...filled, labels: "bad key=1" }).spec);
    expect(bad.ok ? [] : bad.errors.map((e) => e.path)).toEqual(["/labels"]);
  });

  it("sends candidates as spec.candidates, checked against the schema's 1 – 8", () => {
    expect(specFromForm(filled).spec).not.toHaveProperty("candidates");
    const three = specFromForm({ ...filled, candidates: " 3 " }).spec;
    expect(three).toMatchObject({ candidates: 3 });
    expect(validateSpec(three)).toMatchObject({ ok: true });
    for (const bad of ["0", "9", "2.5", "many"]) {
      const r = validateSpec(specFromForm({ ...filled, candidates: bad }).spec);
      expect(r.ok ? [] : r.errors.map((e) => e.path), bad).toEqual(["/candidates"]);
    }
    expect(fieldOf("/candidates")).toBe("candidates");
  });
});

describe("the log's text", () => {
  const chunk = (attempt: number, seq: number, text: string, candidate?: number): LogChunk => ({
    taskId: "tsk_x",
    attempt,
    seq,
    stream: "stdout",
    text,
    at: "2026-01-01T00:00:00Z",
    ...(candidate === undefined ? {} : { candidate }),
  });

  it("is the chunks' text as they came for one attempt", () => {
    expect(logText([chunk(1, 1, "a\n"), chunk(1, 2, "b"), chunk(1, 3, "c\n")])).toBe("a\nb" + "c\n");
    expect(logText([])).toBe("");
  });

  it("prefixes a candidate's lines with [cN], goes on with its own unfinished line, and never joins another source's line", () => {
    expect(logText([chunk(1, 1, "one: a", 1), chunk(1, 2, "b\nc\n", 1)])).toBe("[c1] one: ab\n[c1] c\n");
    const text = logText([
      chunk(1, 1, "cloning\n"),
      chunk(1, 1, "one: start\none: wor", 1),
      chunk(1, 1, "two: start\n", 2),
      chunk(1, 2, "king\n\n", 1),
      chunk(1, 3, "one: done", 1),
      chunk(1, 2, "two: done\n", 2),
      chunk(1, 2, "scoring\n"),
    ]);
    expect(text.split("\n")).toEqual([
      "cloning",
      "[c1] one: start",
      "[c1] one: wor",
      "[c2] two: start",
      "[c1] king",
      "",
      "[c1] one: done",
      "[c2] two: done",
      "scoring",
      "",
    ]);
  });

  it("separates attempts, naming their turn when the task has several, and says where output was dropped", () => {
    const turns = [
      { turn: 1, firstAttempt: 1 },
      { turn: 2, firstAttempt: 3 },
    ];
    expect(turnOfAttempt(turns, 1)).toBe(1);
    expect(turnOfAttempt(turns, 2)).toBe(1);
    expect(turnOfAttempt(turns, 4)).toBe(2);
    expect(turnOfAttempt([], 1)).toBeUndefined();
    const chunks = [chunk(2, 1, "retry"), { ...chunk(3, 1, "again\n"), truncated: true }];
    expect(logText(chunks, turns)).toBe(
      "── turn 1 · attempt 2 ──\nretry\n── turn 2 · attempt 3 ──\n… earlier output dropped (the log's size cap) …\nagain\n",
    );
    expect(logText(chunks, turns.slice(0, 1)).split("\n")[0]).toBe("── attempt 2 ──");
  });
});

describe("durations", () => {
  it("formats durations and a task's time so far", () => {
    expect(formatDuration(850)).toBe("850 ms");
    expect(formatDuration(12_345)).toBe("12.3 s");
    expect(formatDuration(245_000)).toBe("4 min 05 s");
    expect(formatDuration(7_380_000)).toBe("2 h 03 min");
    const now = Date.parse("2026-01-01T00:10:00Z");
    expect(taskDuration({ status: "queued", submittedAt: "2026-01-01T00:09:00Z" }, now)).toBe("waiting 1 min 00 s");
    expect(taskDuration({ status: "running", submittedAt: "x", startedAt: "2026-01-01T00:09:50Z" }, now)).toBe("10.0 s");
    expect(
      taskDuration({ status: "succeeded", submittedAt: "x", startedAt: "2026-01-01T00:00:00Z", finishedAt: "2026-01-01T00:00:01Z" }, now),
    ).toBe("1.0 s");
  });
});

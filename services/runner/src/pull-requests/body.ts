/**
 * What a pull request says, pure: its title (the task's) and its body (the agent's summary, the
 * tests, the size of the change and links to the task and its trace). The summary is the agent's
 * words, so hostile: it goes in verbatim inside a code fence longer than any it holds (no markdown,
 * no @mention, no link of its making is rendered), masked and bounded by the caller's masker.
 */

export type DiffStat = { files: number; additions: number; deletions: number; binaryFiles: number };

export type PullRequestFacts = {
  taskId: string;
  attempt: number;
  /** The agent's own summary of its work (masked), if it gave one. */
  summary?: string;
  tests?: {
    outcome: "succeeded" | "failed" | "timed_out" | "canceled";
    counts?: { total: number; passed: number; failed: number; skipped: number };
  };
  diff?: DiffStat;
  commitSha: string;
  branch: string;
  /** Set from the operator's configuration, never from the task. */
  links: { task?: string; api?: string; trace?: string };
};

export const MAX_TITLE_CHARS = 250;
export const MAX_SUMMARY_CHARS = 8000;

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
const CONTROL_BUT_NEWLINE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** One line, no control characters (bidi overrides included), at most `max` characters. */
export function pullRequestTitle(title: string, max = MAX_TITLE_CHARS): string {
  const line = title
    .replace(CONTROL_BUT_NEWLINE, " ")
    .replace(/[\r\n\t]+/g, " ")
    .replace(/\s+/g, " ")
    .trim();
  const out = line.length > max ? `${line.slice(0, max - 1)}…` : line;
  return out || "codefleet task";
}

/** `text` as a fenced code block whose fence no run of backticks in it can close. */
export function fenced(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = "`".repeat(Math.max(3, longest + 1));
  return `${fence}text\n${text}\n${fence}`;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function testsLine(tests: PullRequestFacts["tests"]): string {
  if (!tests) return "no test command";
  const verdict = { succeeded: "✅ passed", failed: "❌ failed", timed_out: "⏱️ timed out", canceled: "canceled" }[tests.outcome];
  const c = tests.counts;
  if (!c) return verdict;
  return `${verdict}: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped (${plural(c.total, "test")})`;
}

export function diffLine(diff: DiffStat): string {
  const binary = diff.binaryFiles ? `, ${plural(diff.binaryFiles, "binary file")}` : "";
  return `${plural(diff.files, "file")} changed, +${diff.additions} −${diff.deletions}${binary}`;
}

/** The markdown body. Everything but the summary is codefleet's own text and the operator's URLs. */
export function pullRequestBody(f: PullRequestFacts): string {
  const out: string[] = [];
  let summary = (f.summary ?? "").replace(CONTROL_BUT_NEWLINE, "").replace(/\r\n?/g, "\n").trim();
  if (summary.length > MAX_SUMMARY_CHARS) summary = `${summary.slice(0, MAX_SUMMARY_CHARS)}\n… (cut)`;
  out.push(summary ? `**Summary** (the agent's own words)\n\n${fenced(summary)}` : "_The agent gave no summary._");
  out.push("");
  out.push(`- **Tests:** ${testsLine(f.tests)}`);
  if (f.diff) out.push(`- **Changes:** ${diffLine(f.diff)}`);
  out.push(`- **Commit:** \`${f.commitSha}\` on \`${f.branch.replace(/`/g, "")}\``);
  const task = f.links.task ? `[${f.taskId}](${f.links.task})` : `\`${f.taskId}\``;
  out.push(`- **Task:** ${task}${f.links.api ? ` ([API](${f.links.api}))` : ""}, attempt ${f.attempt}`);
  if (f.links.trace) out.push(`- **Trace:** [${f.links.trace.split("/").pop()}](${f.links.trace})`);
  out.push("");
  out.push(`<sub>Opened by codefleet. Updated in place when the task's branch is pushed again.</sub>`);
  return out.join("\n");
}

/** The links of a pull request body, from the operator's URLs (absent: no link). */
export function linksFor(
  taskId: string,
  traceId: string | undefined,
  urls: { publicUrl?: string; jaegerUrl?: string },
): PullRequestFacts["links"] {
  const base = urls.publicUrl?.replace(/\/+$/, "");
  const jaeger = urls.jaegerUrl?.replace(/\/+$/, "");
  const id = encodeURIComponent(taskId);
  return {
    ...(base ? { task: `${base}/tasks/${id}`, api: `${base}/v1/tasks/${id}` } : {}),
    ...(jaeger && traceId && /^[0-9a-f]{32}$/.test(traceId) ? { trace: `${jaeger}/trace/${traceId}` } : {}),
  };
}

/**
 * Counts a unified diff as it streams by (`git diff` output: what the changes.diff artifact holds):
 * files, added and removed lines (by the hunks' own line counts, so a removed line that starts
 * with `--` is a line, not a header), binary files. Bounded: only the start of a long line is kept.
 */
export class DiffStatCounter {
  private stat: DiffStat = { files: 0, additions: 0, deletions: 0, binaryFiles: 0 };
  private pending = "";
  private pendingLong = false;
  private oldLeft = 0;
  private newLeft = 0;

  push(chunk: string): void {
    let start = 0;
    for (let nl = chunk.indexOf("\n", start); nl >= 0; nl = chunk.indexOf("\n", start)) {
      this.keep(chunk.slice(start, nl));
      this.line(this.pending);
      this.pending = "";
      this.pendingLong = false;
      start = nl + 1;
    }
    this.keep(chunk.slice(start));
  }

  end(): DiffStat {
    if (this.pending) this.line(this.pending);
    this.pending = "";
    return { ...this.stat };
  }

  private keep(piece: string): void {
    if (this.pendingLong) return;
    this.pending += piece;
    if (this.pending.length > 512) {
      this.pending = this.pending.slice(0, 512);
      this.pendingLong = true;
    }
  }

  private line(l: string): void {
    const c = l[0];
    // a line that cannot be a hunk's ends it (counts that were off never swallow the next file)
    if ((this.oldLeft > 0 || this.newLeft > 0) && !(c === "+" || c === "-" || c === " " || c === "\\" || l === "")) {
      this.oldLeft = 0;
      this.newLeft = 0;
    }
    if (this.oldLeft > 0 || this.newLeft > 0) {
      if (c === "+") {
        this.stat.additions++;
        this.newLeft--;
      } else if (c === "-") {
        this.stat.deletions++;
        this.oldLeft--;
      } else if (c === " " || l === "") {
        this.oldLeft--;
        this.newLeft--;
      }
      // `\ No newline at end of file` counts for neither
      return;
    }
    if (l.startsWith("diff --git ")) this.stat.files++;
    else if (l.startsWith("Binary files ") || l === "GIT binary patch") this.stat.binaryFiles++;
    else {
      const h = /^@@ -[0-9]+(?:,([0-9]+))? \+[0-9]+(?:,([0-9]+))? @@/.exec(l);
      if (h) {
        this.oldLeft = h[1] === undefined ? 1 : Number(h[1]);
        this.newLeft = h[2] === undefined ? 1 : Number(h[2]);
      }
    }
  }
}

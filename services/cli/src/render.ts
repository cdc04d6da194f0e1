import type { ArtifactLink, StoredEventView, TaskStatus, TaskSummary, TaskView } from "@codefleet/contracts";

/** Human output. Pure string building: the commands decide where it goes. */

export type Style = { bold(s: string): string; dim(s: string): string; status(status: TaskStatus | string, text?: string): string };

export function createStyle(enabled: boolean): Style {
  const sgr = (code: string) => (s: string) => (enabled ? `\x1b[${code}m${s}\x1b[0m` : s);
  const colors: Record<string, (s: string) => string> = {
    succeeded: sgr("32"),
    failed: sgr("31"),
    timed_out: sgr("31"),
    canceled: sgr("33"),
    rejected: sgr("31"),
    running: sgr("36"),
    queued: sgr("2"),
  };
  return { bold: sgr("1"), dim: sgr("2"), status: (status, text = status) => (colors[status] ?? ((s: string) => s))(text) };
}

export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "-";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  return m < 60 ? `${m}m ${String(s).padStart(2, "0")}s` : `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function ago(iso: string, now: number): string {
  return `${formatDuration(Math.max(0, now - Date.parse(iso)))} ago`;
}

const truncate = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

export function table(rows: string[][], widths?: number[]): string {
  // widths are measured on the text without escape sequences
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping SGR sequences
  const visible = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "").length;
  const w = widths ?? rows[0]?.map((_, i) => Math.max(...rows.map((r) => visible(r[i] ?? "")))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell + " ".repeat(Math.max(0, (w[i] ?? 0) - visible(cell)))))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function renderTaskList(items: TaskSummary[], st: Style, now = Date.now()): string {
  if (items.length === 0) return st.dim("no tasks");
  const rows = [["ID", "STATUS", "PHASE", "SUBMITTED", "AGENT", "REPO", "TITLE"].map(st.bold)];
  for (const t of items) {
    rows.push([
      t.id,
      st.status(t.status),
      t.currentPhase ?? "-",
      ago(t.submittedAt, now),
      t.agentKind,
      truncate(t.repo.url + (t.repo.ref ? `@${t.repo.ref}` : ""), 48),
      truncate(t.title, 60),
    ]);
  }
  return table(rows);
}

export function traceLink(jaegerUrl: string, traceId: string | undefined): string | undefined {
  return traceId ? `${jaegerUrl}/trace/${traceId}` : undefined;
}

/** "2 files changed (a.ts, b.ts), +10 −3" from a unified diff. */
export function diffSummary(diff: string): string {
  const files = [...diff.matchAll(/^diff --git a\/(\S+)/gm)].map((m) => m[1]);
  const plus = (diff.match(/^\+(?!\+\+ )/gm) ?? []).length;
  const minus = (diff.match(/^-(?!-- )/gm) ?? []).length;
  if (files.length === 0) return "no changes";
  const shown = files.length > 5 ? `${files.slice(0, 5).join(", ")}, …` : files.join(", ");
  return `${files.length} file${files.length === 1 ? "" : "s"} changed (${shown}), +${plus} −${minus}`;
}

export function renderTask(
  view: TaskView,
  st: Style,
  opts: { jaegerUrl: string; artifacts?: ArtifactLink[]; diffSummary?: string },
): string {
  const lines: string[] = [];
  const kv = (k: string, v: string) => lines.push(`${st.bold(k.padEnd(10))}${v}`);
  kv("task", `${view.id}  ${st.status(view.status)}${view.failureReason ? `  (${view.failureReason})` : ""}`);
  kv("title", view.title);
  kv("repo", `${view.repo.url}${view.repo.ref ? ` @ ${view.repo.ref}` : ""}`);
  kv("agent", view.agentKind);
  if (view.tenant) kv("tenant", `${view.tenant}${view.submittedBy ? `  (submitted by ${view.submittedBy})` : ""}`);
  if (view.rejection) {
    lines.push(st.bold("rejected"));
    lines.push(`  ${st.status("rejected", view.rejection.code)}: ${view.rejection.reason}`);
    for (const e of view.rejection.errors) lines.push(`  ${e.path || "/"}  ${e.message}`);
  }
  kv(
    "attempt",
    `${view.attempt}${view.attempts.length > 1 ? ` (of ${view.attempts.length})` : ""}${view.runnerId ? ` on ${view.runnerId}` : ""}`,
  );
  kv(
    "submitted",
    `${view.submittedAt}${view.finishedAt ? `, finished ${view.finishedAt} (${formatDuration(Date.parse(view.finishedAt) - Date.parse(view.submittedAt))})` : ""}`,
  );
  if (view.phases.length) {
    lines.push(st.bold("phases"));
    const rows = view.phases.map((p) => [
      `  ${p.phase}`,
      p.outcome
        ? st.status(p.outcome === "succeeded" ? "succeeded" : p.outcome === "skipped" ? "queued" : "failed", p.outcome)
        : st.status("running", "running"),
      formatDuration(p.durationMs),
      p.exitCode !== undefined ? `exit ${p.exitCode}` : "",
      truncate(p.detail ?? "", 80),
    ]);
    lines.push(table(rows));
  }
  if ((view.turns?.length ?? 0) > 1) {
    lines.push(st.bold("turns"));
    lines.push(
      table(
        (view.turns ?? []).map((t) => [
          `  ${t.turn}`,
          t.status ? st.status(t.status) : st.status(t.turn === view.turn ? view.status : "queued"),
          t.commitSha ? t.commitSha.slice(0, 12) : "",
          truncate((t.turn === 1 ? view.title : t.prompt).replace(/\s+/g, " "), 70),
        ]),
      ),
    );
  }
  if (view.candidates?.length) {
    lines.push(st.bold("candidates"));
    lines.push(
      table(
        view.candidates.map((c) => [
          `  ${c.candidate}${c.winner ? " *" : ""}`,
          st.status(c.status === "passed" ? "succeeded" : c.status === "running" ? "running" : "failed", c.status),
          c.testsPassed === undefined ? "" : `${c.testsPassed} passed, ${c.testsFailed ?? 0} failed`,
          c.diffLines === undefined ? "" : `${c.diffLines} lines`,
          truncate(c.reason ?? (c.winner ? "selected" : ""), 60),
        ]),
      ),
    );
  }
  kv("branch", view.branch);
  if (view.commitSha) kv("commit", view.commitSha);
  if (view.pullRequest) kv("pull req", `#${view.pullRequest.number}  ${view.pullRequest.url}`);
  if (opts.diffSummary) kv("diff", opts.diffSummary);
  if (view.llmUsage) {
    const u = view.llmUsage;
    kv(
      "model usage",
      `${u.calls} calls, ${u.promptTokens} in / ${u.completionTokens} out tokens, $${u.costUsd.toFixed(4)}${u.unpricedCalls ? ` (${u.unpricedCalls} unpriced)` : ""}`,
    );
  }
  for (const a of opts.artifacts ?? []) kv("artifact", `${a.name} (${formatBytes(a.size)})  ${a.downloadUrl}`);
  if (!opts.artifacts) for (const a of view.artifacts) kv("artifact", `${a.name} (${formatBytes(a.size)})  ${a.artifactId}`);
  const trace = traceLink(opts.jaegerUrl, view.traceId);
  if (trace) kv("trace", trace);
  if (view.cancelRequested && view.status === "running")
    kv("note", `cancellation requested${view.cancelRequestedBy ? ` by ${view.cancelRequestedBy}` : ""}`);
  return lines.join("\n");
}

export function renderEvents(events: StoredEventView[], st: Style): string {
  if (events.length === 0) return st.dim("no events");
  return table([
    ["#", "RECORDED", "TYPE", "ATTEMPT", "DATA"].map(st.bold),
    ...events.map((e) => [
      String(e.streamVersion),
      e.recordedAt,
      e.type + (e.anomaly ? st.status("failed", ` (anomaly: ${e.anomaly})`) : ""),
      e.attempt === null ? "-" : String(e.attempt),
      truncate(JSON.stringify(e.data), 100),
    ]),
  ]);
}

export function renderArtifacts(items: ArtifactLink[], st: Style): string {
  if (items.length === 0) return st.dim("no artifacts");
  return table([
    ["ID", "ATTEMPT", "KIND", "NAME", "SIZE", "URL"].map(st.bold),
    ...items.map((a) => [a.artifactId, String(a.attempt), a.kind, a.name, formatBytes(a.size), a.downloadUrl]),
  ]);
}

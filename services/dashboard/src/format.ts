import type { TaskStatus, TaskSummary } from "@codefleet/contracts";

/** 850 ms, 12.3 s, 4 min 05 s, 2 h 03 min. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** How long a task has taken: start to finish, start to now while running, or time waiting while queued. */
export function taskDuration(t: Pick<TaskSummary, "status" | "submittedAt" | "startedAt" | "finishedAt">, now: number): string {
  const start = Date.parse(t.startedAt ?? "");
  const end = Date.parse(t.finishedAt ?? "");
  if (Number.isFinite(start)) return formatDuration((Number.isFinite(end) ? end : now) - start);
  if (t.status === "queued") return `waiting ${formatDuration(now - Date.parse(t.submittedAt))}`;
  return "–";
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function formatTime(iso: string | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "–" : d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

/** A repository URL without its scheme and `.git`, for narrow columns. */
export function shortRepo(url: string): string {
  return url.replace(/^[a-z+]+:\/\//, "").replace(/\.git$/, "");
}

export const STATUS_LABEL: Record<TaskStatus, string> = {
  queued: "queued",
  running: "running",
  succeeded: "succeeded",
  failed: "failed",
  timed_out: "timed out",
  canceled: "canceled",
  rejected: "rejected",
};

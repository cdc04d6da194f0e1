import { TASK_STATUSES, type TaskPage } from "@codefleet/contracts";
import { useEffect, useState } from "preact/hooks";
import { type Api, ApiError, type Problem } from "../api.js";
import { Labels, Link, ProblemView, StatusBadge } from "../components.js";
import { formatTime, STATUS_LABEL, shortRepo, taskDuration } from "../format.js";
import { navigate } from "../router.js";

const POLL_MS = 2000;
const PAGE_SIZES = [25, 50, 100];

/** The filters live in the URL (linkable, back button); the cursor history of the pages before, in the page. */
function filtersOf(q: URLSearchParams) {
  return {
    status: (q.get("status") ?? "").split(",").filter(Boolean),
    repo: q.get("repo") ?? "",
    labels: q.getAll("label").filter(Boolean),
    limit: Number(q.get("limit") ?? 25) || 25,
    cursor: q.get("cursor") ?? undefined,
  };
}

function toQuery(f: { status: string[]; repo: string; labels: string[]; limit: number; cursor?: string | undefined }): string {
  const q = new URLSearchParams();
  if (f.status.length) q.set("status", f.status.join(","));
  if (f.repo) q.set("repo", f.repo);
  for (const l of f.labels) q.append("label", l);
  if (f.limit !== 25) q.set("limit", String(f.limit));
  if (f.cursor) q.set("cursor", f.cursor);
  const s = q.toString();
  return s ? `/tasks?${s}` : "/tasks";
}

export function TasksPage({ api, query }: { api: Api; query: URLSearchParams }) {
  const filters = filtersOf(query);
  const key = query.toString();
  const [page, setPage] = useState<TaskPage | undefined>();
  const [problem, setProblem] = useState<Problem | undefined>();
  const [updatedAt, setUpdatedAt] = useState<number | undefined>();
  const [now, setNow] = useState(Date.now());
  const [history, setHistory] = useState<string[]>([]);
  const [repo, setRepo] = useState(filters.repo);
  const [label, setLabel] = useState(filters.labels.join(" "));

  useEffect(() => {
    setRepo(filters.repo);
    setLabel(filters.labels.join(" "));
  }, [key]);

  // the page, refreshed every POLL_MS while the tab is visible: new tasks and status changes show up live
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let ctl: AbortController | undefined;
    const load = async () => {
      if (document.visibilityState === "visible") {
        ctl = new AbortController();
        try {
          const p = await api.listTasks(
            {
              status: filters.status,
              repo: filters.repo,
              labels: filters.labels,
              limit: filters.limit,
              ...(filters.cursor ? { cursor: filters.cursor } : {}),
            },
            ctl.signal,
          );
          if (stopped) return;
          setPage(p);
          setProblem(undefined);
          setUpdatedAt(Date.now());
          setNow(Date.now());
        } catch (err) {
          if (stopped || (err as Error).name === "AbortError") return;
          setProblem(err instanceof ApiError ? err.problem : { status: 0, detail: (err as Error).message });
        }
      }
      if (!stopped) timer = setTimeout(load, POLL_MS);
    };
    void load();
    return () => {
      stopped = true;
      ctl?.abort();
      if (timer) clearTimeout(timer);
    };
  }, [api, key]);

  const go = (patch: Partial<ReturnType<typeof filtersOf>>, keepHistory = false) => {
    if (!keepHistory) setHistory([]);
    navigate(toQuery({ ...filters, cursor: undefined, ...patch }));
  };

  const applyText = (e: Event) => {
    e.preventDefault();
    go({ repo: repo.trim(), labels: label.split(/\s+/).filter(Boolean) });
  };

  return (
    <section aria-labelledby="tasks-title">
      <div class="page-head">
        <h1 id="tasks-title">Tasks</h1>
        <p class="muted live" aria-live="off">
          <span class="dot" aria-hidden="true" /> live · updated {updatedAt ? new Date(updatedAt).toLocaleTimeString() : "…"}
        </p>
        <Link href="/submit" class="button">
          Submit a task
        </Link>
      </div>

      <form class="filters" onSubmit={applyText} aria-label="Filter tasks">
        <div class="field">
          <label for="f-status">Status</label>
          <select
            id="f-status"
            value={filters.status[0] ?? ""}
            onChange={(e) => go({ status: [(e.target as HTMLSelectElement).value].filter(Boolean) })}
          >
            <option value="">any</option>
            {TASK_STATUSES.map((s) => (
              <option key={s} value={s}>
                {STATUS_LABEL[s]}
              </option>
            ))}
          </select>
        </div>
        <div class="field grow">
          <label for="f-repo">Repository URL</label>
          <input
            id="f-repo"
            type="search"
            value={repo}
            placeholder="exact URL"
            onInput={(e) => setRepo((e.target as HTMLInputElement).value)}
          />
        </div>
        <div class="field">
          <label for="f-label">Labels</label>
          <input
            id="f-label"
            type="search"
            value={label}
            placeholder="key=value"
            onInput={(e) => setLabel((e.target as HTMLInputElement).value)}
          />
        </div>
        <div class="field">
          <label for="f-limit">Per page</label>
          <select id="f-limit" value={String(filters.limit)} onChange={(e) => go({ limit: Number((e.target as HTMLSelectElement).value) })}>
            {PAGE_SIZES.map((n) => (
              <option key={n} value={String(n)}>
                {n}
              </option>
            ))}
          </select>
        </div>
        <div class="field actions">
          <button type="submit">Apply</button>
          {filters.status.length || filters.repo || filters.labels.length ? (
            <button type="button" class="secondary" onClick={() => go({ status: [], repo: "", labels: [] })}>
              Clear
            </button>
          ) : null}
        </div>
      </form>

      {problem ? <ProblemView problem={problem} /> : null}

      {page ? (
        page.items.length === 0 ? (
          <p class="empty">No tasks{filters.status.length || filters.repo || filters.labels.length ? " match these filters" : " yet"}.</p>
        ) : (
          <div class="table-wrap">
            <table class="tasks">
              <caption class="sr-only">Tasks, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Status</th>
                  <th scope="col">Title</th>
                  <th scope="col">Repository</th>
                  <th scope="col">Agent</th>
                  <th scope="col">Duration</th>
                  <th scope="col">Labels</th>
                  <th scope="col">Submitted by</th>
                </tr>
              </thead>
              <tbody>
                {page.items.map((t) => (
                  <tr key={t.id} data-task-id={t.id}>
                    <td data-label="Status">
                      <StatusBadge status={t.status} />
                    </td>
                    <td data-label="Title" class="title">
                      <Link href={`/tasks/${t.id}`}>{t.title}</Link>
                      <div class="muted small mono">{t.id}</div>
                    </td>
                    <td data-label="Repository" class="repo">
                      <span title={t.repo.url}>{shortRepo(t.repo.url)}</span>
                      {t.repo.ref ? <span class="muted"> @ {t.repo.ref}</span> : null}
                    </td>
                    <td data-label="Agent">{t.agentKind}</td>
                    <td data-label="Duration" title={`submitted ${formatTime(t.submittedAt)}`}>
                      {taskDuration(t, now)}
                    </td>
                    <td data-label="Labels">
                      <Labels labels={t.labels} />
                    </td>
                    <td data-label="Submitted by">{t.submittedBy ?? <span class="muted">{t.submittedVia}</span>}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )
      ) : problem ? null : (
        <p class="muted">Loading…</p>
      )}

      <nav class="pager" aria-label="Pages">
        <button
          type="button"
          class="secondary"
          disabled={!filters.cursor}
          onClick={() => {
            const prev = history.slice(0, -1);
            setHistory(prev);
            go({ cursor: history[history.length - 1] || undefined }, true);
          }}
        >
          Newer
        </button>
        <button
          type="button"
          class="secondary"
          disabled={!page?.nextCursor}
          onClick={() => {
            setHistory([...history, filters.cursor ?? ""]);
            go({ cursor: page?.nextCursor }, true);
          }}
        >
          Older
        </button>
      </nav>
    </section>
  );
}

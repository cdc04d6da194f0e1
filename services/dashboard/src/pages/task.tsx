import { type ArtifactRef, isFinalStatus, type LogChunk, type PhaseView, type TaskView } from "@codefleet/contracts";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { type Api, ApiError, type LogState, type Problem } from "../api.js";
import { Labels, Link, ProblemView, StatusBadge } from "../components.js";
import { type DiffFile, languageOf, parseUnifiedDiff } from "../diff.js";
import { formatBytes, formatDuration, formatTime, STATUS_LABEL } from "../format.js";
import { highlightLines } from "../highlight.js";
import { logText, turnOfAttempt } from "../log-text.js";

const POLL_MS = 2000;
/** Artifacts are recorded just after the task's end: keep looking this long for them. */
const SETTLE_MS = 15_000;
/** After that, an ended task is looked at now and then: someone else may ask for a follow-up turn. */
const ENDED_POLL_MS = 15_000;

const problemOf = (err: unknown): Problem => (err instanceof ApiError ? err.problem : { status: 0, detail: (err as Error).message });

function useTask(api: Api, id: string) {
  const [view, setViewState] = useState<TaskView | undefined>();
  const [problem, setProblem] = useState<Problem | undefined>();
  const [tick, setTick] = useState(0);
  // the newest turn shown: a poll answered before a follow-up was projected must not bring the turn before back
  const shownTurn = useRef(0);
  const setView = (v: TaskView) => {
    shownTurn.current = Math.max(shownTurn.current, v.turn ?? 1);
    setViewState(v);
  };
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let finalSince: number | undefined;
    const load = async () => {
      try {
        const v = await api.task(id);
        if (stopped) return;
        if ((v.turn ?? 1) >= shownTurn.current) {
          setView(v);
          if (isFinalStatus(v.status)) finalSince ??= Date.now();
          else finalSince = undefined; // a follow-up turn
        }
        setProblem(undefined);
      } catch (err) {
        if (stopped) return;
        setProblem(problemOf(err));
      }
      const settled = finalSince !== undefined && Date.now() - finalSince > SETTLE_MS;
      if (!stopped) timer = setTimeout(load, settled ? ENDED_POLL_MS : POLL_MS);
    };
    void load();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [api, id, tick]);
  return { view, problem, reload: () => setTick((t) => t + 1), setView };
}

export function TaskPage({ api, id, jaegerUrl }: { api: Api; id: string; jaegerUrl: string }) {
  const { view, problem, reload, setView } = useTask(api, id);
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!view || isFinalStatus(view.status)) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [view?.status]);

  if (!view) {
    return (
      <section>
        <p>
          <Link href="/tasks">← Tasks</Link>
        </p>
        {problem ? <ProblemView problem={problem} /> : <p class="muted">Loading…</p>}
      </section>
    );
  }

  const implement = view.phases.find((p) => p.phase === "implement");
  const test = view.phases.find((p) => p.phase === "test");
  const diff = [...view.artifacts].reverse().find((a) => a.kind === "diff");

  return (
    <article aria-labelledby="task-title" class="task">
      <p>
        <Link href="/tasks">← Tasks</Link>
      </p>
      <div class="page-head">
        <h1 id="task-title">{view.title}</h1>
        <StatusBadge status={view.status} />
        <span class="grow" />
        <CancelButton
          api={api}
          view={view}
          onCanceled={(v) => {
            setView(v);
            reload();
          }}
        />
      </div>
      <p class="muted mono small">{view.id}</p>
      {problem ? <ProblemView problem={problem} /> : null}

      <Summary view={view} now={now} />

      <section aria-labelledby="timeline-title">
        <h2 id="timeline-title">Phases</h2>
        <Timeline phases={view.phases} now={now} running={view.status === "running"} />
      </section>

      <div class="grid2">
        <section aria-labelledby="tests-title">
          <h2 id="tests-title">Tests</h2>
          <Facts
            phase={test}
            empty={
              view.spec && !view.spec.test
                ? "This task has no test command."
                : test?.outcome
                  ? `The test command ${test.outcome === "succeeded" ? "passed" : test.outcome}${test.exitCode === undefined ? "" : ` (exit code ${test.exitCode})`}; it wrote no report file to count tests from.`
                  : "No test results yet."
            }
          />
        </section>
        <section aria-labelledby="usage-title">
          <h2 id="usage-title">Usage and cost</h2>
          <Facts
            phase={implement}
            only={["inputTokens", "outputTokens", "turns", "costUsd"]}
            empty={implement?.finishedAt ? `The ${view.agentKind} agent reported no usage.` : "Reported when the agent has finished."}
          />
        </section>
      </div>

      {(view.turns?.length ?? 0) > 1 ? (
        <section aria-labelledby="turns-title">
          <h2 id="turns-title">Turns</h2>
          <Turns view={view} />
        </section>
      ) : null}

      {view.candidates?.length ? (
        <section aria-labelledby="candidates-title">
          <h2 id="candidates-title">Candidates</h2>
          <Candidates candidates={view.candidates} jaegerUrl={jaegerUrl} />
        </section>
      ) : null}

      <ReplyForm
        api={api}
        view={view}
        onReplied={(v) => {
          setView(v);
          reload();
        }}
        onRefused={reload}
      />

      <section aria-labelledby="log-title">
        <h2 id="log-title">Log</h2>
        <LiveLog key={view.turn ?? 1} api={api} id={view.id} turns={view.turns} />
      </section>

      <section aria-labelledby="diff-title">
        <h2 id="diff-title">Changes</h2>
        {diff ? (
          <DiffViewer api={api} taskId={view.id} artifact={diff} />
        ) : (
          <p class="muted">{isFinalStatus(view.status) ? "No diff was stored." : "The diff is stored when the task has run."}</p>
        )}
      </section>

      <section aria-labelledby="artifacts-title">
        <h2 id="artifacts-title">Artifacts</h2>
        <Artifacts api={api} taskId={view.id} artifacts={view.artifacts} />
      </section>

      <section aria-labelledby="attempts-title">
        <h2 id="attempts-title">Attempts</h2>
        <Attempts view={view} jaegerUrl={jaegerUrl} />
      </section>
    </article>
  );
}

function Summary({ view, now }: { view: TaskView; now: number }) {
  const started = Date.parse(view.startedAt ?? "");
  const finished = Date.parse(view.finishedAt ?? "");
  const rows: [string, preact.ComponentChildren][] = [
    [
      "Repository",
      <span class="mono">
        {view.repo.url}
        {view.repo.ref ? ` @ ${view.repo.ref}` : ""}
      </span>,
    ],
    ["Agent", view.agentKind],
    [
      "Submitted",
      <>
        {formatTime(view.submittedAt)} by {view.submittedBy ?? `a ${view.submittedVia} dispatcher`}
      </>,
    ],
    [
      "Duration",
      Number.isFinite(started)
        ? formatDuration((Number.isFinite(finished) ? finished : now) - started)
        : view.status === "queued"
          ? "waiting for a runner"
          : "–",
    ],
    ["Branch", <span class="mono">{view.branch}</span>],
  ];
  if (view.commitSha) rows.push(["Commit", <span class="mono">{view.commitSha}</span>]);
  // an http(s) link only (the event's schema says so; the page does not take it on trust)
  if (view.pullRequest && /^https?:\/\//.test(view.pullRequest.url))
    rows.push([
      "Pull request",
      <a href={view.pullRequest.url} target="_blank" rel="noopener noreferrer">
        #{view.pullRequest.number}
      </a>,
    ]);
  if (view.currentPhase && view.status === "running") rows.push(["Phase", view.currentPhase]);
  if (view.failureReason)
    rows.push([
      "Reason",
      <>
        {view.failureReason}
        {view.reasonCode ? <code> ({view.reasonCode})</code> : null}
      </>,
    ]);
  if (view.rejection) rows.push(["Rejected", `${view.rejection.reason} (${view.rejection.code})`]);
  if (view.cancelRequested) rows.push(["Cancel", `requested${view.cancelRequestedBy ? ` by ${view.cancelRequestedBy}` : ""}`]);
  rows.push(["Labels", <Labels labels={view.labels} />]);
  rows.push(["Tenant", view.tenant]);
  return (
    <dl class="summary">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

function CancelButton({ api, view, onCanceled }: { api: Api; view: TaskView; onCanceled: (v: TaskView) => void }) {
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | undefined>();
  if (isFinalStatus(view.status)) return null;
  if (view.cancelRequested) return <span class="muted">Cancel requested</span>;
  if (!open)
    return (
      <button type="button" class="danger" onClick={() => setOpen(true)}>
        Cancel task
      </button>
    );
  return (
    <form
      class="cancel"
      aria-label="Cancel the task"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        try {
          onCanceled(await api.cancel(view.id, reason.trim() || undefined));
          setOpen(false);
        } catch (err) {
          setProblem(problemOf(err));
        } finally {
          setBusy(false);
        }
      }}
    >
      <label for="cancel-reason">Reason (optional)</label>
      <input id="cancel-reason" value={reason} maxLength={2000} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
      <button type="submit" class="danger" disabled={busy}>
        Confirm cancel
      </button>
      <button type="button" class="secondary" onClick={() => setOpen(false)}>
        Keep running
      </button>
      {problem ? <ProblemView problem={problem} /> : null}
    </form>
  );
}

function phaseMs(p: PhaseView, now: number): number | undefined {
  if (p.durationMs !== undefined) return p.durationMs;
  const s = Date.parse(p.startedAt ?? "");
  return Number.isFinite(s) ? now - s : undefined;
}

function Timeline({ phases, now, running }: { phases: PhaseView[]; now: number; running: boolean }) {
  if (phases.length === 0) return <p class="muted">No phase has started yet.</p>;
  const total = phases.reduce((s, p) => s + (phaseMs(p, now) ?? 0), 0) || 1;
  return (
    <ol class="timeline">
      {phases.map((p) => {
        const ms = phaseMs(p, now);
        const state = p.outcome ?? (running && !p.finishedAt ? "running" : "unknown");
        return (
          <li key={p.phase} class={`phase outcome-${state}`}>
            <span class="phase-name">{p.phase}</span>
            <span class="bar" aria-hidden="true">
              <span class="fill" style={{ width: `${Math.max(2, ((ms ?? 0) / total) * 100)}%` }} />
            </span>
            <span class="phase-meta">
              {state} · {ms === undefined ? "–" : formatDuration(ms)}
              {p.exitCode !== undefined ? ` · exit ${p.exitCode}` : ""}
            </span>
            {p.detail ? <span class="phase-detail muted">{p.detail}</span> : null}
          </li>
        );
      })}
    </ol>
  );
}

function Facts({ phase, only, empty }: { phase: PhaseView | undefined; only?: string[]; empty: string }) {
  const facts = Object.entries(phase?.facts ?? {}).filter(([k]) => !only || only.includes(k));
  if (facts.length === 0) return <p class="muted">{empty}</p>;
  return (
    <dl class="facts">
      {facts.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{k === "costUsd" && typeof v === "number" ? `$${v.toFixed(4)}` : String(v)}</dd>
        </div>
      ))}
    </dl>
  );
}

/** The live log: SSE from the registry, resumed after a dropped connection where it stopped. */
function LiveLog({ api, id, turns }: { api: Api; id: string; turns: TaskView["turns"] | undefined }) {
  const [chunks, setChunks] = useState<LogChunk[]>([]);
  const [state, setState] = useState<LogState | undefined>();
  const [ended, setEnded] = useState<string | undefined>();
  const [problem, setProblem] = useState<Problem | undefined>();
  const pre = useRef<HTMLPreElement>(null);
  const stick = useRef(true);
  useEffect(() => {
    const ctl = new AbortController();
    setChunks([]);
    setEnded(undefined);
    api
      .followLogs(id, ctl.signal, (e) => {
        if (e.kind === "log") setChunks((c) => [...c, e.chunk]);
        else if (e.kind === "end") setEnded(e.status);
        else setState(e.state);
      })
      .catch((err) => setProblem(problemOf(err)));
    return () => ctl.abort();
  }, [api, id]);
  useEffect(() => {
    const el = pre.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [chunks.length]);
  const text = useMemo(() => logText(chunks, turns), [chunks, turns]);
  const status = ended
    ? `ended: ${STATUS_LABEL[ended as keyof typeof STATUS_LABEL] ?? ended}`
    : state?.live
      ? "live"
      : state
        ? `reconnecting (${state.reconnects})…`
        : "connecting…";
  return (
    <div class="log">
      <p class="muted small" data-log-state={ended ? "ended" : state?.live ? "live" : "connecting"}>
        {status}
      </p>
      {problem ? <ProblemView problem={problem} /> : null}
      <pre
        ref={pre}
        class="log-text"
        role="log"
        aria-label="Task log"
        // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable log must be reachable by keyboard (WCAG 2.1.1)
        tabIndex={0}
        onScroll={(e) => {
          const el = e.currentTarget as HTMLPreElement;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {text || (ended ? "(no output)" : "(nothing yet)")}
      </pre>
    </div>
  );
}

function DiffViewer({ api, taskId, artifact }: { api: Api; taskId: string; artifact: ArtifactRef }) {
  const [files, setFiles] = useState<DiffFile[] | undefined>();
  const [problem, setProblem] = useState<Problem | undefined>();
  const [selected, setSelected] = useState(0);
  useEffect(() => {
    let stopped = false;
    api
      .artifactText(taskId, artifact.artifactId)
      .then((text) => !stopped && setFiles(parseUnifiedDiff(text)))
      .catch((err) => !stopped && setProblem(problemOf(err)));
    return () => {
      stopped = true;
    };
  }, [api, taskId, artifact.artifactId]);
  if (problem) return <ProblemView problem={problem} />;
  if (!files) return <p class="muted">Loading the diff…</p>;
  if (files.length === 0) return <p class="muted">The diff is empty: nothing changed.</p>;
  const file = files[Math.min(selected, files.length - 1)]!;
  return (
    <div class="diff">
      <nav aria-label="Changed files" class="diff-files">
        <ul>
          {files.map((f, i) => (
            <li key={`${f.path}${i}`}>
              <button type="button" aria-pressed={i === selected} onClick={() => setSelected(i)} class="file-button">
                <span class={`file-status ${f.status}`}>{f.status[0]!.toUpperCase()}</span>
                <span class="mono">{f.path}</span>
                <span class="counts">
                  <span class="add">+{f.additions}</span> <span class="del">−{f.deletions}</span>
                </span>
              </button>
            </li>
          ))}
        </ul>
      </nav>
      <FileDiff file={file} />
    </div>
  );
}

function FileDiff({ file }: { file: DiffFile }) {
  const language = languageOf(file.path);
  return (
    <section class="file-diff" aria-label={`Diff of ${file.path}`}>
      <h3 class="mono">
        {file.oldPath && file.oldPath !== file.path ? `${file.oldPath} → ` : ""}
        {file.path}
        <span class="muted small"> {language ?? "text"}</span>
      </h3>
      {file.binary ? <p class="muted">Binary file.</p> : null}
      {file.hunks.map((h, i) => {
        const code = h.lines.filter((l) => l.kind !== "note");
        const html = highlightLines(
          code.map((l) => l.text),
          language,
        );
        return (
          <table class="hunk" key={i}>
            <caption class="hunk-header mono">{h.header}</caption>
            <tbody>
              {code.map((l, j) => (
                <tr key={j} class={`line ${l.kind}`}>
                  <td class="no" aria-label={l.oldNo !== undefined ? `old line ${l.oldNo}` : undefined}>
                    {l.oldNo ?? ""}
                  </td>
                  <td class="no" aria-label={l.newNo !== undefined ? `new line ${l.newNo}` : undefined}>
                    {l.newNo ?? ""}
                  </td>
                  <td class="sign" aria-label={l.kind === "add" ? "added" : l.kind === "del" ? "removed" : undefined}>
                    {l.kind === "add" ? "+" : l.kind === "del" ? "−" : " "}
                  </td>
                  {/* highlight.js escapes the text it highlights */}
                  <td class="code hljs" dangerouslySetInnerHTML={{ __html: html[j] ?? "" }} />
                </tr>
              ))}
            </tbody>
          </table>
        );
      })}
    </section>
  );
}

function Artifacts({ api, taskId, artifacts }: { api: Api; taskId: string; artifacts: ArtifactRef[] }) {
  const [open, setOpen] = useState<{ artifact: ArtifactRef; text?: string; problem?: Problem } | undefined>();
  if (artifacts.length === 0) return <p class="muted">None yet.</p>;
  const show = async (a: ArtifactRef) => {
    setOpen({ artifact: a });
    try {
      setOpen({ artifact: a, text: await api.artifactText(taskId, a.artifactId) });
    } catch (err) {
      setOpen({ artifact: a, problem: problemOf(err) });
    }
  };
  const download = async (a: ArtifactRef) => {
    try {
      const text = await api.artifactText(taskId, a.artifactId);
      const url = URL.createObjectURL(new Blob([text], { type: a.contentType }));
      const link = document.createElement("a");
      link.href = url;
      link.download = a.name;
      link.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      setOpen({ artifact: a, problem: problemOf(err) });
    }
  };
  return (
    <>
      <div class="table-wrap">
        <table class="artifacts">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Kind</th>
              <th scope="col">Attempt</th>
              <th scope="col">Size</th>
              <th scope="col">Stored</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {artifacts.map((a) => (
              <tr key={a.artifactId}>
                <td data-label="Name" class="mono">
                  {a.name}
                </td>
                <td data-label="Kind">{a.kind}</td>
                <td data-label="Attempt">{a.attempt}</td>
                <td data-label="Size">{formatBytes(a.size)}</td>
                <td data-label="Stored">{formatTime(a.storedAt)}</td>
                <td class="actions">
                  <button type="button" class="secondary" onClick={() => void show(a)} aria-label={`View ${a.name}`}>
                    View
                  </button>
                  <button type="button" class="secondary" onClick={() => void download(a)} aria-label={`Download ${a.name}`}>
                    Download
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {open ? (
        <section class="artifact-view" aria-label={`Content of ${open.artifact.name}`}>
          <h3 class="mono">
            {open.artifact.name}{" "}
            <button type="button" class="link-button" onClick={() => setOpen(undefined)}>
              Close
            </button>
          </h3>
          {open.problem ? (
            <ProblemView problem={open.problem} />
          ) : open.text === undefined ? (
            <p class="muted">Loading…</p>
          ) : (
            <>
              {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be reachable by keyboard (WCAG 2.1.1) */}
              <pre tabIndex={0}>{open.text}</pre>
            </>
          )}
        </section>
      ) : null}
    </>
  );
}

/** A follow-up turn on a task that ended: a new commit on the same branch (and pull request). */
function ReplyForm({
  api,
  view,
  onReplied,
  onRefused,
}: {
  api: Api;
  view: TaskView;
  onReplied: (v: TaskView) => void;
  /** The registry said no (another client may have asked first): the page should look again. */
  onRefused: () => void;
}) {
  const [prompt, setPrompt] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | undefined>();
  const ended = isFinalStatus(view.status);
  // a refusal stays in sight when the page then shows the turn someone else asked for; the next end clears it
  const wasEnded = useRef(ended);
  useEffect(() => {
    if (ended && !wasEnded.current) setProblem(undefined);
    wasEnded.current = ended;
  }, [ended]);
  if (view.status === "rejected") return null;
  if (!ended)
    return problem ? (
      <section aria-labelledby="reply-title">
        <h2 id="reply-title">Follow up</h2>
        <ProblemView problem={problem} />
        <p class="muted">Turn {view.turn} is under way: a follow-up can be asked for when it has ended.</p>
      </section>
    ) : null;
  if (view.spec?.push?.enabled === false)
    return (
      <section aria-labelledby="reply-title">
        <h2 id="reply-title">Follow up</h2>
        <p class="muted">This task does not push its change, so a follow-up turn has no commit to start from.</p>
      </section>
    );
  return (
    <section aria-labelledby="reply-title">
      <h2 id="reply-title">Follow up</h2>
      <form
        class="reply"
        aria-label="Ask for a follow-up turn"
        onSubmit={async (e) => {
          e.preventDefault();
          if (!prompt.trim()) return;
          setBusy(true);
          setProblem(undefined);
          try {
            onReplied(await api.followUp(view.id, { prompt: prompt.trim() }));
            setPrompt("");
          } catch (err) {
            setProblem(problemOf(err));
            onRefused();
          } finally {
            setBusy(false);
          }
        }}
      >
        <label for="reply-prompt">What next? The turn starts from the commit this task pushed and pushes a new one to {view.branch}.</label>
        <textarea
          id="reply-prompt"
          rows={3}
          maxLength={200_000}
          value={prompt}
          onInput={(e) => setPrompt((e.target as HTMLTextAreaElement).value)}
        />
        <button type="submit" disabled={busy || !prompt.trim()}>
          Send follow-up
        </button>
        {problem ? <ProblemView problem={problem} /> : null}
      </form>
    </section>
  );
}

function Turns({ view }: { view: TaskView }) {
  return (
    <div class="table-wrap">
      <table class="turns">
        <thead>
          <tr>
            <th scope="col">Turn</th>
            <th scope="col">Status</th>
            <th scope="col">Commit</th>
            <th scope="col">Asked by</th>
            <th scope="col">Prompt</th>
          </tr>
        </thead>
        <tbody>
          {(view.turns ?? []).map((t) => {
            const status = t.status ?? (t.turn === view.turn ? view.status : undefined);
            return (
              <tr key={t.turn}>
                <td data-label="Turn">{t.turn}</td>
                <td data-label="Status">{status ? STATUS_LABEL[status] : "–"}</td>
                <td data-label="Commit" class="mono">
                  {t.commitSha ? t.commitSha.slice(0, 12) : "–"}
                </td>
                <td data-label="Asked by">{t.requestedBy ?? "–"}</td>
                <td data-label="Prompt">{t.prompt.length > 160 ? `${t.prompt.slice(0, 160)}…` : t.prompt}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

function Candidates({ candidates, jaegerUrl }: { candidates: NonNullable<TaskView["candidates"]>; jaegerUrl: string }) {
  return (
    <div class="table-wrap">
      <table class="candidates">
        <thead>
          <tr>
            <th scope="col">Candidate</th>
            <th scope="col">Result</th>
            <th scope="col">Tests</th>
            <th scope="col">Change</th>
            <th scope="col">Reason</th>
            <th scope="col">Trace</th>
          </tr>
        </thead>
        <tbody>
          {candidates.map((c) => (
            <tr key={c.candidate} class={c.winner ? "winner" : undefined}>
              <td data-label="Candidate">
                {c.candidate}
                {c.winner ? " (selected)" : ""}
              </td>
              <td data-label="Result">{c.status}</td>
              <td data-label="Tests">{c.testsPassed === undefined ? "–" : `${c.testsPassed} passed, ${c.testsFailed ?? 0} failed`}</td>
              <td data-label="Change">{c.diffLines === undefined ? "–" : `${c.diffLines} lines`}</td>
              <td data-label="Reason">
                {c.reason ?? (c.reasonCode ? "" : "–")}
                {c.reasonCode ? <code> ({c.reasonCode})</code> : null}
              </td>
              <td data-label="Trace">
                <TraceLink jaegerUrl={jaegerUrl} traceId={c.traceId} of={`candidate ${c.candidate}`} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** A trace in Jaeger, by its short id ("–" when there is none). */
function TraceLink({ jaegerUrl, traceId, of }: { jaegerUrl: string; traceId: string | undefined; of: string }) {
  if (!traceId) return <>–</>;
  return (
    <a href={`${jaegerUrl}/trace/${traceId}`} target="_blank" rel="noopener noreferrer" aria-label={`Trace of ${of} in Jaeger`}>
      {traceId.slice(0, 12)}…
    </a>
  );
}

function Attempts({ view, jaegerUrl }: { view: TaskView; jaegerUrl: string }) {
  if (view.attempts.length === 0)
    return (
      <p class="muted">
        No attempt yet.{" "}
        {view.traceId ? (
          <a href={`${jaegerUrl}/trace/${view.traceId}`} target="_blank" rel="noopener noreferrer">
            The submission's trace
          </a>
        ) : null}
      </p>
    );
  const manyTurns = (view.turns?.length ?? 0) > 1;
  return (
    <div class="table-wrap">
      <table class="attempts">
        <thead>
          <tr>
            <th scope="col">#</th>
            {manyTurns ? <th scope="col">Turn</th> : null}
            <th scope="col">Status</th>
            <th scope="col">Runner</th>
            <th scope="col">Started</th>
            <th scope="col">Duration</th>
            <th scope="col">Reason</th>
            <th scope="col">Trace</th>
          </tr>
        </thead>
        <tbody>
          {view.attempts.map((a) => {
            const s = Date.parse(a.startedAt);
            const f = Date.parse(a.finishedAt ?? "");
            return (
              <tr key={a.attempt}>
                <td data-label="#">{a.attempt}</td>
                {manyTurns ? <td data-label="Turn">{a.turn ?? turnOfAttempt(view.turns, a.attempt) ?? "–"}</td> : null}
                <td data-label="Status">{a.status ? STATUS_LABEL[a.status] : "running"}</td>
                <td data-label="Runner" class="mono">
                  {a.runnerId}
                </td>
                <td data-label="Started">{formatTime(a.startedAt)}</td>
                <td data-label="Duration">{Number.isFinite(f) ? formatDuration(f - s) : "–"}</td>
                <td data-label="Reason">{a.reason ?? "–"}</td>
                <td data-label="Trace">
                  <TraceLink jaegerUrl={jaegerUrl} traceId={a.traceId} of={`attempt ${a.attempt}`} />
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

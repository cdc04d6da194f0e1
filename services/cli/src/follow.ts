import { setTimeout as delay } from "node:timers/promises";
import { isFinalStatus, type Phase, type TaskView } from "@codefleet/contracts";
import { CliError, EXIT } from "./exit-codes.js";
import type { RegistryApi } from "./registry-api.js";
import { diffSummary, formatDuration, renderTask, type Style } from "./render.js";

export type Terminal = {
  write(text: string): void;
  /** True when the output is an interactive terminal: then a live status line is drawn. */
  isTTY: boolean;
};

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/**
 * A status line under the streaming log on a TTY (spinner, task, phase, elapsed time); log lines
 * are printed above it. Without a TTY it draws nothing and prints phase changes as lines.
 */
class LiveStatus {
  private frame = 0;
  private timer: NodeJS.Timeout | undefined;
  private drawn = false;
  phase: Phase | undefined;
  state = "waiting for a runner";
  private readonly startedAt = Date.now();

  constructor(
    private readonly out: Terminal,
    private readonly st: Style,
    private readonly taskId: string,
  ) {
    if (out.isTTY) this.timer = setInterval(() => this.draw(), 120);
  }

  private line(): string {
    const spin = SPINNER[this.frame++ % SPINNER.length];
    const phase = this.phase ? ` · ${this.st.bold(this.phase)}` : "";
    return `${this.st.status("running", spin)} ${this.taskId} · ${this.state}${phase} · ${formatDuration(Date.now() - this.startedAt)}`;
  }

  private clear(): void {
    if (this.drawn) this.out.write("\r\x1b[2K");
    this.drawn = false;
  }

  draw(): void {
    if (!this.out.isTTY) return;
    this.clear();
    this.out.write(this.line());
    this.drawn = true;
  }

  print(text: string): void {
    this.clear();
    this.out.write(text.endsWith("\n") ? text : `${text}\n`);
    this.draw();
  }

  setPhase(phase: Phase | undefined): void {
    if (!phase || phase === this.phase) return;
    this.phase = phase;
    this.state = "running";
    this.print(this.st.bold(`── ${phase} ──`));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.clear();
  }
}

/**
 * A task submitted a moment ago is on the bus before the registry's projection has it: wait for it
 * to show up (briefly) instead of reporting it missing.
 */
async function visible(api: RegistryApi, id: string, turn = 1, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      // a follow-up is visible once the view has its turn (until then it shows the turn before, ended)
      const view = await api.show(id);
      if ((view.turn ?? 1) >= turn || Date.now() > deadline) return;
      await delay(200);
    } catch (err) {
      if (!(err instanceof CliError) || err.exitCode !== EXIT.notFound || Date.now() > deadline) throw err;
      await delay(200);
    }
  }
}

/** A best-of-N candidate's log text, each line marked with its candidate. */
export function candidateLines(candidate: number, text: string): string {
  return text.replace(/^/gm, `[c${candidate}] `);
}

/** Waits until the view is final and its artifacts are recorded (they land just after run.finished). */
/** Whether a task in this final status will still get artifacts (a canceled or rejected one may never). */
export function awaitsArtifacts(view: Pick<TaskView, "status" | "artifacts">): boolean {
  if (!isFinalStatus(view.status)) return true;
  return view.status !== "canceled" && view.status !== "rejected" && view.artifacts.length === 0;
}

async function settledView(api: RegistryApi, id: string, timeoutMs = 15_000): Promise<TaskView> {
  const deadline = Date.now() + timeoutMs;
  let view = await api.show(id);
  while (Date.now() < deadline && awaitsArtifacts(view)) {
    await delay(300);
    view = await api.show(id);
  }
  return view;
}

/**
 * Follows a task to its end: streams its log (phase by phase, resuming after dropped
 * connections), then prints the outcome. Returns the final view.
 */
export async function followTask(
  api: RegistryApi,
  id: string,
  opts: { out: Terminal; err: Terminal; st: Style; json: boolean; jaegerUrl: string; signal?: AbortSignal; turn?: number },
): Promise<TaskView> {
  const { out, st, json } = opts;
  await visible(api, id, opts.turn);
  const live = json ? undefined : new LiveStatus(out, st, id);
  try {
    live?.draw();
    for await (const ev of api.followLogs(id, opts.signal ? { signal: opts.signal } : {})) {
      if (json) {
        if (ev.kind === "log") out.write(`${JSON.stringify({ type: "log", ...ev.chunk })}\n`);
        else if (ev.kind === "reconnecting") opts.err.write(`${JSON.stringify({ type: "reconnecting", ...ev })}\n`);
        continue;
      }
      if (!live) continue;
      if (ev.kind === "log") {
        // a best-of-N candidate's output is its own: its lines say which candidate, and its phase is not the task's
        const { candidate } = ev.chunk;
        if (candidate === undefined) live.setPhase(ev.chunk.phase);
        const body = candidate === undefined ? ev.chunk.text.trimEnd() : candidateLines(candidate, ev.chunk.text.trimEnd());
        const text = ev.chunk.stream === "system" ? st.dim(body) : body;
        if (text) live.print(text);
      } else if (ev.kind === "reconnecting") {
        live.state = `reconnecting (${ev.reason})`;
        live.draw();
      } else {
        live.state = `finished: ${ev.status}`;
      }
    }
  } finally {
    live?.stop();
  }
  const view = await settledView(api, id);
  if (json) out.write(`${JSON.stringify({ type: "task", task: view })}\n`);
  else out.write(`\n${await describeTask(api, view, st, opts.jaegerUrl)}\n`);
  return view;
}

/** The task's summary with artifact links and, when the diff is small enough to fetch, what it changed. */
export async function describeTask(api: RegistryApi, view: TaskView, st: Style, jaegerUrl: string): Promise<string> {
  const artifacts = await api.artifacts(view.id);
  const diff = artifacts.filter((a) => a.kind === "diff").sort((a, b) => b.attempt - a.attempt)[0];
  let summary: string | undefined;
  if (diff && diff.size <= 5_000_000) {
    const body = await api.download(diff.downloadUrl).catch(() => undefined);
    if (body) {
      let text = "";
      for await (const chunk of body) text += chunk;
      summary = diffSummary(text);
    }
  }
  return renderTask(view, st, { jaegerUrl, artifacts, ...(summary ? { diffSummary: summary } : {}) });
}

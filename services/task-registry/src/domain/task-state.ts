import {
  type AttemptView,
  assertNever,
  type CandidateView,
  type CodefleetEvent,
  type CodefleetEventOf,
  DEFAULT_TENANT,
  isFinalStatus,
  MAX_TURNS,
  type PhaseView,
  resolveTaskSpec,
  type TaskView,
  type TurnView,
} from "@codefleet/contracts";
import { stripRepoUrlCredentials } from "@codefleet/contracts/access";

/**
 * The task state machine, pure: `evolve` folds one event into the task's view. An event that would
 * make an illegal transition is reported as an anomaly and leaves the view as it was, so the event
 * is still stored (the log is the truth) but cannot corrupt the projection.
 */

export type { ArtifactRef, AttemptView, PhaseView, TaskView } from "@codefleet/contracts";

export type EvolveResult = { state: TaskView | undefined; anomaly?: string };

const ok = (state: TaskView | undefined): EvolveResult => ({ state });
const anomaly = (state: TaskView | undefined, reason: string): EvolveResult => ({
  state: state ? { ...state, anomalies: state.anomalies + 1 } : state,
  anomaly: reason,
});

export function traceIdFromTraceparent(traceparent: string | undefined): string | undefined {
  return traceparent?.split("-")[1];
}

export function evolve(state: TaskView | undefined, event: CodefleetEvent): EvolveResult {
  if (event.type === "task.submitted") {
    if (state) return anomaly(state, "task.submitted for a task that already exists");
    const submitted = event.data.spec;
    const resolved = resolveTaskSpec(submitted, event.taskId);
    // the HTTP API refuses credentials in URLs; a bus submission may still carry them: never shown
    const url = stripRepoUrlCredentials(submitted.repo.url);
    const spec = url === submitted.repo.url ? submitted : { ...submitted, repo: { ...submitted.repo, url } };
    return ok({
      id: event.taskId,
      status: "queued",
      title: spec.title,
      repo: spec.repo.ref === undefined ? { url } : { url, ref: spec.repo.ref },
      agentKind: spec.agent.kind,
      labels: spec.labels ?? {},
      spec,
      submittedVia: event.data.submittedVia,
      submittedAt: event.occurredAt,
      tenant: event.data.tenant ?? DEFAULT_TENANT,
      ...(event.data.submittedBy ? { submittedBy: event.data.submittedBy } : {}),
      turn: 1,
      turns: [
        {
          turn: 1,
          prompt: spec.prompt,
          agentKind: spec.agent.kind,
          requestedAt: event.occurredAt,
          ...(event.data.submittedBy ? { requestedBy: event.data.submittedBy } : {}),
          firstAttempt: 1,
        },
      ],
      attempt: 0,
      phases: [],
      attempts: [],
      branch: resolved.push.branch,
      cancelRequested: false,
      artifacts: [],
      ...(traceIdFromTraceparent(event.metadata.traceparent) ? { traceId: traceIdFromTraceparent(event.metadata.traceparent) } : {}),
      version: 0,
      anomalies: 0,
    });
  }
  if (event.type === "task.rejected") {
    if (state) return anomaly(state, `task.rejected for a task that already exists (${state.status})`);
    const d = event.data;
    const traceId = traceIdFromTraceparent(event.metadata.traceparent);
    return ok({
      id: event.taskId,
      status: "rejected",
      title: d.title ?? "(rejected submission)",
      repo: { url: d.repoUrl ?? "" },
      agentKind: "unknown",
      labels: {},
      submittedVia: d.submittedVia ?? "bus",
      submittedAt: event.occurredAt,
      finishedAt: event.occurredAt,
      tenant: d.tenant ?? DEFAULT_TENANT,
      ...(d.submittedBy ? { submittedBy: d.submittedBy } : {}),
      turn: 1,
      turns: [],
      attempt: 0,
      phases: [],
      attempts: [],
      branch: "",
      cancelRequested: false,
      artifacts: [],
      failureReason: d.reason,
      reasonCode: d.code,
      rejection: { code: d.code, reason: d.reason, errors: d.errors },
      ...(traceId ? { traceId } : {}),
      version: 0,
      anomalies: 0,
    });
  }
  if (!state) return anomaly(state, `${event.type} for a task that was never submitted`);

  switch (event.type) {
    case "task.cancel_requested": {
      if ((event.data.turn ?? 1) < turnOf(state))
        return anomaly(state, `cancel requested for turn ${event.data.turn ?? 1}, but turn ${turnOf(state)} is current`);
      if (isFinalStatus(state.status)) return anomaly(state, `cancel requested after the task ended (${state.status})`);
      if (state.status === "queued") {
        // No runner owns it yet: the cancel itself ends it. A runner that picks it up later sees this.
        return ok({
          ...state,
          status: "canceled",
          cancelRequested: true,
          finishedAt: event.occurredAt,
          failureReason: event.data.reason ?? "canceled before it started",
          reasonCode: "canceled",
          ...(event.data.requestedBy ? { cancelRequestedBy: event.data.requestedBy } : {}),
          turns: withCurrentTurn(state, (t) => ({ ...t, status: "canceled", finishedAt: event.occurredAt, reasonCode: "canceled" })),
        });
      }
      return ok({ ...state, cancelRequested: true, ...(event.data.requestedBy ? { cancelRequestedBy: event.data.requestedBy } : {}) });
    }
    case "task.follow_up_requested": {
      const d = event.data;
      const problem = decideFollowUp(state).problem;
      if (problem) return anomaly(state, `follow-up (turn ${d.turn}) refused: ${problem}`);
      if (d.turn !== turnOf(state) + 1) return anomaly(state, `follow-up for turn ${d.turn}, but turn ${turnOf(state)} is the last`);
      if (d.firstAttempt <= state.attempt)
        return anomaly(state, `follow-up's first attempt ${d.firstAttempt}, but attempt ${state.attempt} already started`);
      const {
        currentPhase: _phase,
        finishedAt: _finished,
        failureReason: _reason,
        reasonCode: _code,
        cancelRequestedBy: _by,
        ...rest
      } = state;
      const traceId = traceIdFromTraceparent(event.metadata.traceparent);
      return ok({
        ...rest,
        status: "queued",
        turn: d.turn,
        turns: [
          ...(state.turns ?? []),
          {
            turn: d.turn,
            prompt: d.prompt,
            agentKind: d.agent?.kind ?? state.agentKind,
            requestedAt: event.occurredAt,
            ...(d.requestedBy ? { requestedBy: d.requestedBy } : {}),
            firstAttempt: d.firstAttempt,
            ...(d.fromCommit ? { fromCommit: d.fromCommit } : {}),
          },
        ],
        ...(d.agent ? { agentKind: d.agent.kind } : {}),
        cancelRequested: false,
        phases: [],
        ...(traceId ? { traceId } : {}),
      });
    }
    case "run.started": {
      if (isFinalStatus(state.status))
        return anomaly(state, `run.started for attempt ${event.attempt} after the task ended (${state.status})`);
      if (event.attempt <= state.attempt)
        return anomaly(state, `run.started for attempt ${event.attempt}, but attempt ${state.attempt} already started`);
      const traceId = traceIdFromTraceparent(event.metadata.traceparent);
      const attempt: AttemptView = {
        attempt: event.attempt,
        turn: turnOf(state),
        runnerId: event.data.runnerId,
        agentKind: event.data.agentKind,
        startedAt: event.occurredAt,
        ...(traceId ? { traceId } : {}),
        phases: [],
      };
      const previous = state.attempts.map((a) =>
        a.finishedAt ? a : { ...a, finishedAt: event.occurredAt, status: "failed" as const, reason: "superseded by a newer attempt" },
      );
      const { currentPhase: _dropped, candidates: _earlier, ...rest } = state;
      return ok({
        ...rest,
        status: "running",
        attempt: event.attempt,
        runnerId: event.data.runnerId,
        startedAt: state.startedAt ?? event.occurredAt,
        // each attempt is its own trace (linked to the one before): the view points at the latest
        ...(traceId ? { traceId } : {}),
        phases: [],
        attempts: [...previous, attempt],
      });
    }
    case "phase.started":
    case "phase.finished": {
      const problem = currentAttemptProblem(state, event);
      if (problem) return anomaly(state, problem);
      if (event.data.candidate !== undefined) return candidatePhase(state, event);
      const phase = event.data.phase;
      const phases = withPhase(state.phases, event);
      if (typeof phases === "string") return anomaly(state, `phase ${phase} of attempt ${event.attempt} ${phases}`);
      const commitSha =
        event.type === "phase.finished" && typeof event.data.facts?.commitSha === "string" ? event.data.facts.commitSha : state.commitSha;
      const next: TaskView = {
        ...state,
        phases,
        attempts: withCurrentAttempt(state, (a) => ({ ...a, phases })),
        ...(commitSha ? { commitSha } : {}),
      };
      if (event.type === "phase.started") next.currentPhase = phase;
      return ok(next);
    }
    case "candidate.selected": {
      const problem = currentAttemptProblem(state, event);
      if (problem) return anomaly(state, problem);
      const d = event.data;
      const known = new Map((state.candidates ?? []).map((c) => [c.candidate, c]));
      return ok({
        ...state,
        candidates: d.candidates.map((score) => ({
          ...score,
          attempt: event.attempt,
          phases: known.get(score.candidate)?.phases ?? [],
          winner: score.candidate === d.winner,
        })),
      });
    }
    case "run.finished": {
      const problem = currentAttemptProblem(state, event);
      if (problem) return anomaly(state, problem);
      const d = event.data;
      return ok({
        ...state,
        status: d.status,
        finishedAt: event.occurredAt,
        ...(d.branch ? { branch: d.branch } : {}),
        ...(d.commitSha ? { commitSha: d.commitSha } : {}),
        ...(d.reason !== undefined && d.status !== "succeeded" ? { failureReason: d.reason } : {}),
        ...(d.reasonCode !== undefined ? { reasonCode: d.reasonCode } : {}),
        attempts: withCurrentAttempt(state, (a) => ({
          ...a,
          finishedAt: event.occurredAt,
          status: d.status,
          ...(d.reason === undefined ? {} : { reason: d.reason }),
        })),
        turns: withCurrentTurn(state, (t) => ({
          ...t,
          status: d.status,
          finishedAt: event.occurredAt,
          ...(d.commitSha ? { commitSha: d.commitSha } : {}),
          ...(d.reasonCode !== undefined ? { reasonCode: d.reasonCode } : {}),
        })),
      });
    }
    case "slot.allocated":
    case "slot.released":
    case "slot.reclaimed": {
      if (event.attempt !== state.attempt && event.attempt !== 0) {
        // Slot events of an older attempt are normal when a stale lease is reclaimed: keep, don't apply.
        return ok(state);
      }
      const slotId = event.type === "slot.allocated" ? event.data.slotId : undefined;
      return ok({ ...state, attempts: withCurrentAttempt(state, (a) => (slotId ? { ...a, slotId } : a)) });
    }
    case "artifact.stored": {
      if (state.artifacts.some((a) => a.artifactId === event.data.artifactId)) return ok(state);
      return ok({ ...state, artifacts: [...state.artifacts, { ...event.data, attempt: event.attempt, storedAt: event.occurredAt }] });
    }
    case "llm.called": {
      const d = event.data;
      const u = state.llmUsage ?? { calls: 0, promptTokens: 0, completionTokens: 0, costUsd: 0, unpricedCalls: 0, byModel: {} };
      const m = u.byModel[d.model] ?? { calls: 0, promptTokens: 0, completionTokens: 0, costUsd: 0 };
      const cents = (x: number) => Math.round(x * 1e8) / 1e8; // sums of floats, kept to 1e-8 USD
      return ok({
        ...state,
        llmUsage: {
          calls: u.calls + 1,
          promptTokens: u.promptTokens + d.promptTokens,
          completionTokens: u.completionTokens + d.completionTokens,
          costUsd: cents(u.costUsd + d.costUsd),
          unpricedCalls: u.unpricedCalls + (d.priced ? 0 : 1),
          byModel: {
            ...u.byModel,
            [d.model]: {
              calls: m.calls + 1,
              promptTokens: m.promptTokens + d.promptTokens,
              completionTokens: m.completionTokens + d.completionTokens,
              costUsd: cents(m.costUsd + d.costUsd),
            },
          },
        },
      });
    }
    case "pull_request.opened": {
      // the provider's pull request exists whatever else happened to the attempt: the latest one counts
      const { url, number } = event.data;
      return ok({ ...state, pullRequest: { url, number } });
    }
    // the history of the task's webhooks: recorded in its stream, nothing in its view changes
    case "webhook.delivered":
    case "webhook.failed":
      return ok(state);
    // schedules have streams of their own (the event store projects them into `schedules`)
    case "schedule.created":
    case "schedule.paused":
    case "schedule.resumed":
    case "schedule.deleted":
    case "schedule.fired":
      return anomaly(state, `${event.type} on a task's stream`);
    default:
      return assertNever(event, "event type");
  }
}

/** A phase's start or end folded into a list of phases, or why it cannot be ("started twice"). */
function withPhase(
  phases: PhaseView[],
  event: CodefleetEventOf<"phase.started"> | CodefleetEventOf<"phase.finished">,
): PhaseView[] | string {
  const phase = event.data.phase;
  const existing = phases.find((p) => p.phase === phase);
  let updated: PhaseView;
  if (event.type === "phase.started") {
    if (existing?.startedAt) return "started twice";
    updated = { phase, startedAt: event.occurredAt };
  } else {
    if (existing?.finishedAt) return "finished twice";
    const d = event.data;
    updated = {
      ...(existing ?? { phase }),
      finishedAt: event.occurredAt,
      durationMs: d.durationMs,
      outcome: d.outcome,
      ...(d.exitCode === undefined ? {} : { exitCode: d.exitCode }),
      ...(d.detail === undefined ? {} : { detail: d.detail }),
      ...(d.facts === undefined ? {} : { facts: d.facts }),
    };
  }
  return existing ? phases.map((p) => (p.phase === phase ? updated : p)) : [...phases, updated];
}

/** A best-of-N candidate's phase event: its own phases, in the view's `candidates`, never the task's. */
function candidatePhase(state: TaskView, event: CodefleetEventOf<"phase.started"> | CodefleetEventOf<"phase.finished">): EvolveResult {
  const n = event.data.candidate as number;
  const candidates = [...(state.candidates ?? [])];
  let i = candidates.findIndex((c) => c.candidate === n);
  if (i < 0) {
    candidates.push({ candidate: n, status: "running", attempt: event.attempt, phases: [], winner: false });
    candidates.sort((a, b) => a.candidate - b.candidate);
    i = candidates.findIndex((c) => c.candidate === n);
  }
  const c = candidates[i] as CandidateView;
  const phases = withPhase(c.phases, event);
  if (typeof phases === "string") return anomaly(state, `phase ${event.data.phase} of candidate ${n} ${phases}`);
  candidates[i] = { ...c, phases };
  return ok({ ...state, candidates });
}

function currentAttemptProblem(state: TaskView, event: CodefleetEvent): string | undefined {
  if (event.attempt < state.attempt) return `${event.type} from attempt ${event.attempt}, but attempt ${state.attempt} is current`;
  if (event.attempt > state.attempt) return `${event.type} from attempt ${event.attempt}, which never started`;
  if (state.status !== "running") return `${event.type} while the task is ${state.status}`;
  return undefined;
}

/** The task's current turn (views from before follow-ups have no turn: 1). */
export const turnOf = (state: TaskView): number => state.turn ?? 1;

function withCurrentTurn(state: TaskView, f: (t: TurnView) => TurnView): TurnView[] {
  const turn = turnOf(state);
  return (state.turns ?? []).map((t) => (t.turn === turn ? f(t) : t));
}

/**
 * Whether a follow-up may be asked for: only on a task that ended (its turn is over) and was not
 * rejected (a rejected submission has no spec to continue), within the turns a task may take.
 */
export function decideFollowUp(state: TaskView): { problem?: string; code?: "task_not_finished" | "task_rejected" | "too_many_turns" } {
  if (state.status === "rejected") return { problem: "the task was rejected", code: "task_rejected" };
  if (!isFinalStatus(state.status))
    return { problem: `the task is still ${state.status}: wait for its turn to end`, code: "task_not_finished" };
  if (turnOf(state) >= MAX_TURNS) return { problem: `a task takes at most ${MAX_TURNS} turns`, code: "too_many_turns" };
  return {};
}

function withCurrentAttempt(state: TaskView, f: (a: AttemptView) => AttemptView): AttemptView[] {
  return state.attempts.map((a) => (a.attempt === state.attempt ? f(a) : a));
}

/** Folds one stored event: like evolve, and the view remembers the stream version it reflects. */
export function applyStored(state: TaskView | undefined, event: CodefleetEvent, streamVersion: number): EvolveResult {
  const r = evolve(state, event);
  return r.state ? { ...r, state: { ...r.state, version: streamVersion } } : r;
}

/** Decides whether a cancel may be requested; the HTTP layer maps the answer to 202/409. */
export function decideCancel(state: TaskView): { kind: "accept" } | { kind: "reject"; reason: string } {
  if (isFinalStatus(state.status)) return { kind: "reject", reason: `task already ${state.status}` };
  if (state.cancelRequested) return { kind: "accept" };
  return { kind: "accept" };
}

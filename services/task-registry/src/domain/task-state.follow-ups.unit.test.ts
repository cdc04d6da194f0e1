import { type CodefleetEvent, createEvent, type EventData, type EventType } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { applyStored, decideFollowUp, type TaskView } from "./task-state.js";

const taskId = "tsk_TURNS";
const spec = {
  repo: { url: "file:///tmp/repo.git" },
  title: "add a file",
  prompt: "write hello.txt",
  agent: { kind: "script" as const, steps: [{ run: "echo hi" }] },
};
const SHA1 = "1".repeat(40);
const SHA2 = "2".repeat(40);

function ev<T extends EventType>(type: T, data: EventData<T>, attempt = 0): CodefleetEvent {
  return createEvent(type, { taskId, attempt, data, producer: "test" }) as CodefleetEvent;
}

function fold(...events: CodefleetEvent[]): { state: TaskView | undefined; anomalies: string[] } {
  let state: TaskView | undefined;
  const anomalies: string[] = [];
  events.forEach((e, i) => {
    const r = applyStored(state, e, i + 1);
    if (r.anomaly) anomalies.push(r.anomaly);
    state = r.state;
  });
  return { state, anomalies };
}

const submitted = ev("task.submitted", { spec, submittedVia: "http", submittedBy: "alice" });
const started = (attempt: number) => ev("run.started", { runnerId: "r1", agentKind: "script" }, attempt);
const finished = (attempt: number, status: "succeeded" | "failed", commitSha?: string) =>
  ev(
    "run.finished",
    {
      status,
      durationMs: 5,
      ...(commitSha ? { commitSha } : {}),
      ...(status === "failed" ? { reasonCode: "test_failed", reason: "x" } : {}),
    },
    attempt,
  );
const followUp = (turn: number, firstAttempt: number, fromCommit?: string) =>
  ev("task.follow_up_requested", {
    turn,
    prompt: `turn ${turn}: also write bye.txt`,
    firstAttempt,
    ...(fromCommit ? { fromCommit } : {}),
    requestedBy: "bob",
  });

describe("follow-up turns in the task's view", () => {
  it("the submission is turn 1, with its prompt and submitter", () => {
    const { state } = fold(submitted);
    expect(state?.turn).toBe(1);
    expect(state?.turns).toEqual([
      { turn: 1, prompt: "write hello.txt", agentKind: "script", requestedAt: submitted.occurredAt, requestedBy: "alice", firstAttempt: 1 },
    ]);
  });

  it("a follow-up on a finished task queues turn 2; the status follows the latest turn; each turn keeps its own end", () => {
    const { state, anomalies } = fold(
      submitted,
      started(1),
      finished(1, "succeeded", SHA1),
      followUp(2, 2, SHA1),
      started(2),
      finished(2, "failed"),
    );
    expect(anomalies).toEqual([]);
    expect(state?.status).toBe("failed");
    expect(state?.turn).toBe(2);
    expect(state?.turns.map((t) => [t.turn, t.status, t.commitSha, t.fromCommit])).toEqual([
      [1, "succeeded", SHA1, undefined],
      [2, "failed", undefined, SHA1],
    ]);
    expect(state?.attempts.map((a) => [a.attempt, a.turn])).toEqual([
      [1, 1],
      [2, 2],
    ]);
    // the last pushed commit stays the task's until a turn pushes another
    expect(state?.commitSha).toBe(SHA1);
  });

  it("a queued follow-up clears the previous turn's end and phases", () => {
    const { state } = fold(submitted, started(1), finished(1, "failed"), followUp(2, 2));
    expect(state).toMatchObject({ status: "queued", turn: 2, phases: [], cancelRequested: false });
    expect(state?.finishedAt).toBeUndefined();
    expect(state?.failureReason).toBeUndefined();
    expect(state?.reasonCode).toBeUndefined();
  });

  it("turn 3 after turn 2 pushed records the commit it starts from", () => {
    const { state, anomalies } = fold(
      submitted,
      started(1),
      finished(1, "succeeded", SHA1),
      followUp(2, 2, SHA1),
      started(2),
      finished(2, "succeeded", SHA2),
      followUp(3, 3, SHA2),
    );
    expect(anomalies).toEqual([]);
    expect(state?.turns.at(-1)).toMatchObject({ turn: 3, fromCommit: SHA2, firstAttempt: 3, requestedBy: "bob" });
  });

  it("refuses a follow-up while the task runs, for a turn out of order, or numbering attempts backwards (stored as anomalies)", () => {
    expect(fold(submitted, started(1), followUp(2, 2)).anomalies[0]).toMatch(/still running/);
    expect(fold(submitted, started(1), finished(1, "succeeded"), followUp(3, 2)).anomalies[0]).toMatch(/turn 3, but turn 1/);
    const backwards = fold(
      submitted,
      started(1),
      finished(1, "succeeded"),
      followUp(2, 2),
      started(2),
      finished(2, "failed"),
      followUp(3, 2),
    );
    expect(backwards.anomalies[0]).toMatch(/first attempt 2/);
    // a second request for the same turn (a race the HTTP layer also refuses) changes nothing
    const twice = fold(submitted, started(1), finished(1, "succeeded"), followUp(2, 2), followUp(2, 2));
    expect(twice.anomalies).toHaveLength(1);
    expect(twice.state?.turns).toHaveLength(2);
  });

  it("a cancel of the queued turn ends it canceled; a cancel asked for an earlier turn does not touch a later one", () => {
    const canceled = fold(submitted, started(1), finished(1, "succeeded"), followUp(2, 2), ev("task.cancel_requested", { turn: 2 }));
    expect(canceled.state?.status).toBe("canceled");
    expect(canceled.state?.turns.at(-1)?.status).toBe("canceled");
    const stale = fold(submitted, started(1), finished(1, "succeeded"), followUp(2, 2), ev("task.cancel_requested", { turn: 1 }));
    expect(stale.anomalies[0]).toMatch(/turn 1, but turn 2/);
    expect(stale.state?.status).toBe("queued");
  });

  it("decideFollowUp: finished tasks only, never a rejected one", () => {
    const done = fold(submitted, started(1), finished(1, "failed")).state as TaskView;
    expect(decideFollowUp(done)).toEqual({});
    expect(decideFollowUp({ ...done, status: "running" }).code).toBe("task_not_finished");
    expect(decideFollowUp({ ...done, status: "queued" }).code).toBe("task_not_finished");
    expect(decideFollowUp({ ...done, status: "rejected" }).code).toBe("task_rejected");
    expect(decideFollowUp({ ...done, turn: 100 }).code).toBe("too_many_turns");
  });
});

describe("best-of-N candidates in the task's view", () => {
  const phase = (type: "phase.started" | "phase.finished", p: "implement" | "test", candidate: number) =>
    type === "phase.started"
      ? ev("phase.started", { phase: p, candidate }, 1)
      : ev("phase.finished", { phase: p, candidate, outcome: candidate === 2 ? "succeeded" : "failed", durationMs: 3 }, 1);

  it("keeps each candidate's phases apart from the task's, then the oracle's scores and the winner", () => {
    const { state, anomalies } = fold(
      submitted,
      started(1),
      phase("phase.started", "implement", 1),
      phase("phase.started", "implement", 2),
      phase("phase.finished", "implement", 2),
      phase("phase.finished", "implement", 1),
      phase("phase.started", "test", 2),
      phase("phase.finished", "test", 2),
      ev(
        "candidate.selected",
        {
          winner: 2,
          candidates: [
            { candidate: 1, status: "failed", reasonCode: "agent_failed", reason: "x" },
            { candidate: 2, status: "passed", testsPassed: 3, testsFailed: 0, diffLines: 4 },
          ],
          reason: "candidate 2: the only candidate whose tests passed",
        },
        1,
      ),
      ev("phase.started", { phase: "push" }, 1),
    );
    expect(anomalies).toEqual([]);
    expect(state?.phases.map((p) => p.phase)).toEqual(["push"]);
    expect(state?.candidates?.map((c) => [c.candidate, c.status, c.winner, c.phases.map((p) => `${p.phase}:${p.outcome}`)])).toEqual([
      [1, "failed", false, ["implement:failed"]],
      [2, "passed", true, ["implement:succeeded", "test:succeeded"]],
    ]);
    // a new attempt starts with no candidates of its own yet
    expect(fold(submitted, started(1), phase("phase.started", "implement", 1), started(2)).state?.candidates).toBeUndefined();
  });

  it("refuses a candidate's phase twice and a selection from another attempt", () => {
    expect(fold(submitted, started(1), phase("phase.started", "test", 1), phase("phase.started", "test", 1)).anomalies[0]).toMatch(
      /candidate 1 started twice/,
    );
    const stale = fold(
      submitted,
      started(1),
      started(2),
      ev("candidate.selected", { candidates: [{ candidate: 1, status: "failed" }], reason: "r" }, 1),
    );
    expect(stale.anomalies[0]).toMatch(/attempt 1, but attempt 2 is current/);
  });
});

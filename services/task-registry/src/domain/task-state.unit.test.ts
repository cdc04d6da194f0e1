import { type CodefleetEvent, createEvent, type EventData, type EventType } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { applyStored, decideCancel, type TaskView } from "./task-state.js";

const taskId = "tsk_TEST";
const spec = {
  repo: { url: "file:///tmp/repo.git" },
  title: "add a file",
  prompt: "do it",
  agent: { kind: "script" as const, steps: [{ run: "echo hi" }] },
  labels: { team: "a" },
};

function ev<T extends EventType>(type: T, data: EventData<T>, attempt = 0): CodefleetEvent {
  return createEvent(type, { taskId, attempt, data, producer: "test" }) as CodefleetEvent;
}

/** Given events, when one more arrives, then: the emmett DeciderSpecification shape. */
function given(...events: CodefleetEvent[]) {
  let state: TaskView | undefined;
  let version = 0;
  for (const e of events) {
    const r = applyStored(state, e, ++version);
    if (r.anomaly) throw new Error(`given-events produced an anomaly: ${r.anomaly}`);
    state = r.state;
  }
  return {
    when: (e: CodefleetEvent) => applyStored(state, e, version + 1),
    state: () => state,
  };
}

const submitted = () => ev("task.submitted", { spec, submittedVia: "http" });
const started = (attempt: number) => ev("run.started", { runnerId: `r${attempt}`, agentKind: "script" }, attempt);
const phaseStarted = (phase: "fetch" | "implement" | "test" | "push", attempt = 1) => ev("phase.started", { phase }, attempt);
const phaseFinished = (phase: "fetch" | "implement" | "test" | "push", attempt = 1, facts?: Record<string, string>) =>
  ev("phase.finished", { phase, outcome: "succeeded", durationMs: 5, ...(facts ? { facts } : {}) }, attempt);
const finished = (status: "succeeded" | "failed", attempt = 1) =>
  ev(
    "run.finished",
    {
      status,
      durationMs: 10,
      reason: status === "failed" ? "tests failed" : undefined,
      reasonCode: status === "failed" ? "test_failed" : undefined,
      commitSha: status === "succeeded" ? "a".repeat(40) : undefined,
    },
    attempt,
  );

describe("task state machine", () => {
  it("follows a task from queued through every phase to succeeded", () => {
    const r = given(
      submitted(),
      started(1),
      phaseStarted("fetch"),
      phaseFinished("fetch"),
      phaseStarted("implement"),
      phaseFinished("implement"),
      phaseStarted("push"),
    ).when(phaseFinished("push", 1, { commitSha: "b".repeat(40) }));
    expect(r.anomaly).toBeUndefined();
    expect(r.state?.status).toBe("running");
    expect(r.state?.currentPhase).toBe("push");
    expect(r.state?.commitSha).toBe("b".repeat(40));
    expect(r.state?.phases.map((p) => [p.phase, p.outcome])).toEqual([
      ["fetch", "succeeded"],
      ["implement", "succeeded"],
      ["push", "succeeded"],
    ]);
    const done = given(submitted(), started(1)).when(finished("succeeded"));
    expect(done.state?.status).toBe("succeeded");
    expect(done.state?.finishedAt).toBeDefined();
    expect(done.state?.attempts[0]?.status).toBe("succeeded");
  });

  it("flags a phase event after the task succeeded and leaves the view unchanged", () => {
    const g = given(submitted(), started(1), finished("succeeded"));
    const r = g.when(phaseStarted("test"));
    expect(r.anomaly).toMatch(/while the task is succeeded/);
    expect(r.state?.status).toBe("succeeded");
    expect(r.state?.phases).toEqual(g.state()?.phases);
    expect(r.state?.anomalies).toBe(1);
  });

  it("flags an older attempt's event once a newer attempt started", () => {
    const r = given(submitted(), started(1), phaseStarted("fetch", 1), started(2)).when(phaseFinished("fetch", 1));
    expect(r.anomaly).toMatch(/attempt 1, but attempt 2 is current/);
    expect(r.state?.attempt).toBe(2);
    expect(r.state?.attempts.map((a) => [a.attempt, a.status])).toEqual([
      [1, "failed"],
      [2, undefined],
    ]);
  });

  it("flags a run that starts for an attempt that is not newer", () => {
    const r = given(submitted(), started(2)).when(started(1));
    expect(r.anomaly).toMatch(/attempt 2 already started/);
  });

  it("flags events of a task that was never submitted and creates no view", () => {
    const r = given().when(started(1));
    expect(r.anomaly).toMatch(/never submitted/);
    expect(r.state).toBeUndefined();
  });

  it("flags a second submission of the same task id", () => {
    expect(given(submitted()).when(submitted()).anomaly).toMatch(/already exists/);
  });

  it("cancels a queued task at once, and only marks a running one", () => {
    const queued = given(submitted()).when(ev("task.cancel_requested", { reason: "no longer needed" }));
    expect(queued.state?.status).toBe("canceled");
    expect(queued.state?.failureReason).toBe("no longer needed");
    const running = given(submitted(), started(1)).when(ev("task.cancel_requested", {}));
    expect(running.state?.status).toBe("running");
    expect(running.state?.cancelRequested).toBe(true);
    const afterEnd = given(submitted(), started(1), finished("failed")).when(ev("task.cancel_requested", {}));
    expect(afterEnd.anomaly).toMatch(/after the task ended/);
  });

  it("decides cancel: accepted while not final, rejected after", () => {
    const running = given(submitted(), started(1)).state() as TaskView;
    expect(decideCancel(running).kind).toBe("accept");
    const done = given(submitted(), started(1), finished("succeeded")).state() as TaskView;
    expect(decideCancel(done)).toEqual({ kind: "reject", reason: "task already succeeded" });
  });

  it("records failure reason and code, and artifacts once each", () => {
    const art = ev(
      "artifact.stored",
      { artifactId: "art_1", kind: "diff", name: "changes.diff", size: 10, sha256: "c".repeat(64), contentType: "text/x-diff" },
      1,
    );
    const r = given(submitted(), started(1), art, art).when(finished("failed"));
    expect(r.state?.status).toBe("failed");
    expect(r.state?.failureReason).toBe("tests failed");
    expect(r.state?.reasonCode).toBe("test_failed");
    expect(r.state?.artifacts).toHaveLength(1);
  });

  it("records the tenant and who submitted and who asked to cancel; old events without them are tenant default", () => {
    const withWho = given(ev("task.submitted", { spec, submittedVia: "http", submittedBy: "ci-bot", tenant: "team-a" })).when(
      ev("task.cancel_requested", { requestedBy: "alice", tenant: "team-a" }),
    );
    expect(withWho.state).toMatchObject({ tenant: "team-a", submittedBy: "ci-bot", cancelRequestedBy: "alice", status: "canceled" });
    const old = given().when(submitted());
    expect(old.state?.tenant).toBe("default");
    expect(old.state?.submittedBy).toBeUndefined();
  });

  it("never shows repository credentials a bus submission carried", () => {
    const url = "https://x-access-token:ghp_secret0123456789abcdefghij@git.example.com/a/b.git";
    const r = given().when(ev("task.submitted", { spec: { ...spec, repo: { url, ref: "main" } }, submittedVia: "bus" }));
    expect(r.state?.repo).toEqual({ url: "https://git.example.com/a/b.git", ref: "main" });
    expect(r.state?.spec?.repo.url).toBe("https://git.example.com/a/b.git");
    expect(JSON.stringify(r.state)).not.toContain("ghp_secret");
  });

  it("makes a rejected submission a final, rejected task with its errors", () => {
    const rejected = ev("task.rejected", {
      code: "invalid_event_data",
      reason: "data of 'task.submitted' v1 is invalid",
      errors: [{ path: "/data/spec/agent", message: "Expected union value" }],
      submittedVia: "bus",
      title: "broken",
      tenant: "team-a",
    });
    const r = given().when(rejected);
    expect(r.anomaly).toBeUndefined();
    expect(r.state).toMatchObject({
      status: "rejected",
      title: "broken",
      tenant: "team-a",
      reasonCode: "invalid_event_data",
      rejection: { code: "invalid_event_data", errors: [{ path: "/data/spec/agent", message: "Expected union value" }] },
    });
    expect(r.state?.finishedAt).toBeDefined();
    expect(decideCancel(r.state as TaskView).kind).toBe("reject");
    expect(given(submitted()).when(rejected).anomaly).toMatch(/task.rejected for a task that already exists/);
    expect(given(rejected).when(submitted()).anomaly).toMatch(/already exists/);
  });

  it("sums the model calls, by model, in the view", () => {
    const call = (model: string, promptTokens: number, completionTokens: number, costUsd: number, attempt: number, priced = true) =>
      ev(
        "llm.called",
        { model, api: "openai", stream: false, status: 200, promptTokens, completionTokens, costUsd, priced, latencyMs: 5, attempts: 1 },
        attempt,
      );
    const state = given(
      submitted(),
      started(1),
      call("gpt-a", 100, 20, 0.1, 1),
      call("gpt-a", 50, 10, 0.2, 1),
      call("local", 7, 3, 0, 1, false),
      finished("failed", 1),
    ).state();
    expect(state?.llmUsage).toEqual({
      calls: 3,
      promptTokens: 157,
      completionTokens: 33,
      costUsd: 0.3,
      unpricedCalls: 1,
      byModel: {
        "gpt-a": { calls: 2, promptTokens: 150, completionTokens: 30, costUsd: 0.3 },
        local: { calls: 1, promptTokens: 7, completionTokens: 3, costUsd: 0 },
      },
    });
    expect(given(submitted()).state()?.llmUsage).toBeUndefined();
  });

  it("shows the pull request the runner opened, the latest one if it was opened again", () => {
    const opened = (n: number, attempt: number) =>
      ev(
        "pull_request.opened",
        { url: `https://github.com/acme/app/pull/${n}`, number: n, provider: "github", created: attempt === 1 },
        attempt,
      );
    expect(given(submitted()).state()?.pullRequest).toBeUndefined();
    const g = given(submitted(), started(1), opened(7, 1), finished("failed", 1));
    expect(g.state()?.pullRequest).toEqual({ url: "https://github.com/acme/app/pull/7", number: 7 });
    // a redelivered attempt that found the branch pushed updates the same pull request
    expect(g.when(opened(7, 2)).state?.pullRequest).toEqual({ url: "https://github.com/acme/app/pull/7", number: 7 });
  });

  it("remembers the stream version and the default branch", () => {
    const g = given(submitted(), started(1));
    expect(g.state()?.version).toBe(2);
    expect(g.state()?.branch).toBe(`codefleet/${taskId}`);
  });
});

import { describe, expect, it } from "vitest";
import { CONFLICT_ACTOR, conflictFollowUp } from "./conflict-follow-up.js";
import { followUpEventId } from "./submission.js";
import type { TaskView } from "./task-state.js";

const conflicted = (over: Partial<TaskView> = {}): TaskView =>
  ({
    id: "tsk_C",
    status: "failed",
    reasonCode: "rebase_conflict",
    tenant: "acme",
    attempt: 2,
    turn: 1,
    turns: [{ turn: 1, prompt: "p", agentKind: "script", requestedAt: "x", firstAttempt: 1, status: "failed" }],
    phases: [{ phase: "rebase", outcome: "failed", facts: { conflicts: 1, conflictingFiles: "README.md" } }],
    spec: {
      repo: { url: "file:///r.git" },
      title: "t",
      prompt: "p",
      agent: { kind: "script", steps: [{ run: "true" }] },
      push: { enabled: true, onConflict: "follow-up" },
    },
    ...over,
  }) as TaskView;

describe("a rebase conflict handed to the agent as a follow-up", () => {
  it("asks for turn 2 on the new base, naming the conflicting files, with an id per task and turn", () => {
    const e = conflictFollowUp(conflicted());
    expect(e?.id).toBe(followUpEventId("tsk_C", 2));
    expect(e?.data).toMatchObject({ turn: 2, firstAttempt: 3, requestedBy: CONFLICT_ACTOR, tenant: "acme" });
    expect(e?.data.fromCommit).toBeUndefined();
    expect(e?.data.prompt).toContain("in README.md");
  });

  it("only when the spec asks for it, for a conflict, once, and not for a follow-up's own branch", () => {
    expect(conflictFollowUp(conflicted({ spec: { ...conflicted().spec, push: { enabled: true } } as TaskView["spec"] }))).toBeUndefined();
    expect(conflictFollowUp(conflicted({ reasonCode: "test_failed" }))).toBeUndefined();
    const again = conflicted({
      turn: 2,
      turns: [
        ...conflicted().turns,
        { turn: 2, prompt: "x", agentKind: "script", requestedAt: "y", firstAttempt: 3, requestedBy: CONFLICT_ACTOR },
      ],
    });
    expect(conflictFollowUp(again)).toBeUndefined();
    const ofBranch = conflicted({
      turn: 2,
      turns: [
        ...conflicted().turns,
        { turn: 2, prompt: "x", agentKind: "script", requestedAt: "y", firstAttempt: 3, fromCommit: "a".repeat(40) },
      ],
    });
    expect(conflictFollowUp(ofBranch)).toBeUndefined();
  });
});

import { type CodefleetEventOf, createEvent } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { commitMessageFor, isPushOf } from "../phases/push.js";
import { attemptOf, canceledInTurn, finishedInTurn, firstTurn, followUpPrompt, turnWork } from "./turns.js";

const submitted = createEvent("task.submitted", {
  taskId: "tsk_T",
  producer: "test",
  data: {
    spec: {
      repo: { url: "file:///r.git" },
      title: "t",
      prompt: "write hello",
      agent: { kind: "script", steps: [{ run: "true" }] },
    },
    submittedVia: "http",
  },
}) as CodefleetEventOf<"task.submitted">;
const followUp = (turn: number, extra: Partial<CodefleetEventOf<"task.follow_up_requested">["data"]> = {}) =>
  createEvent("task.follow_up_requested", {
    taskId: "tsk_T",
    producer: "test",
    data: { turn, prompt: "now write bye", firstAttempt: 4, fromCommit: "c".repeat(40), ...extra },
  }) as CodefleetEventOf<"task.follow_up_requested">;

describe("turns", () => {
  it("numbers a turn's attempts from its first one, one per delivery", () => {
    expect(attemptOf(firstTurn(submitted), 1)).toBe(1);
    expect(attemptOf(firstTurn(submitted), 3)).toBe(3);
    const work = turnWork(followUp(2), submitted);
    expect(work && attemptOf(work.turn, 1)).toBe(4);
    expect(work && attemptOf(work.turn, 2)).toBe(5);
  });

  it("an earlier turn's end or cancel is history, not this turn's", () => {
    const turn2 = { number: 2, firstAttempt: 4, causationId: "x" };
    expect(finishedInTurn(3, turn2)).toBe(false);
    expect(finishedInTurn(4, turn2)).toBe(true);
    expect(finishedInTurn(undefined, turn2)).toBe(false);
    expect(canceledInTurn(1, turn2)).toBe(false);
    expect(canceledInTurn(2, turn2)).toBe(true);
    expect(canceledInTurn(1, firstTurn(submitted))).toBe(true);
  });

  it("a follow-up runs the submission's spec with its own prompt (the earlier one as context) and agent", () => {
    const agent = { kind: "script" as const, steps: [{ run: "echo other" }] };
    const work = turnWork(followUp(3, { agent }), submitted);
    expect(work?.turn).toEqual({ number: 3, firstAttempt: 4, fromCommit: "c".repeat(40), causationId: expect.any(String) });
    expect(work?.submitted.data.spec.agent).toEqual(agent);
    expect(work?.submitted.data.spec.repo).toEqual(submitted.data.spec.repo);
    const prompt = work?.submitted.data.spec.prompt ?? "";
    expect(prompt).toContain("follow-up turn 3");
    expect(prompt).toContain("write hello");
    expect(prompt.indexOf("now write bye")).toBeGreaterThan(prompt.indexOf("write hello"));
    expect(followUpPrompt("a", "b", 2)).not.toContain("since");
  });

  it("a follow-up without its task's submission (or another task's) is no work", () => {
    expect(turnWork(followUp(2), undefined)).toBeUndefined();
    expect(turnWork(followUp(2), { ...submitted, taskId: "tsk_OTHER" })).toBeUndefined();
  });

  it("a turn's push is recognised by its trailers, and turn 1's by having none", () => {
    const spec = { title: "t", push: {} };
    const m1 = commitMessageFor(spec, "tsk_T", 1);
    const m2 = commitMessageFor(spec, "tsk_T", 5, 2);
    expect(m2).toContain("Codefleet-Turn: 2");
    expect(isPushOf(m1, "tsk_T", 1)).toBe(true);
    expect(isPushOf(m1, "tsk_T", 2)).toBe(false);
    expect(isPushOf(m2, "tsk_T", 2)).toBe(true);
    expect(isPushOf(m2, "tsk_T", 1)).toBe(false);
    expect(isPushOf(m2, "tsk_T", 3)).toBe(false);
    expect(isPushOf(m2, "tsk_OTHER", 2)).toBe(false);
    // a message of the task's own (spec.push.commitMessage) gets the trailers it lacks
    const own = commitMessageFor({ title: "t", push: { commitMessage: "mine" } }, "tsk_T", 1, 3);
    expect(own).toBe("mine\n\nCodefleet-Task: tsk_T\nCodefleet-Turn: 3\n");
    expect(isPushOf(own, "tsk_T", 3)).toBe(true);
  });
});

describe("a follow-up that starts over", () => {
  it("tells the agent when the earlier change was not kept (no commit to start from: a rebase conflict's follow-up)", () => {
    const prompt = followUpPrompt("write hello", "redo it on the new base", 2, false);
    expect(prompt).toContain("was not kept");
    expect(prompt).not.toContain("already contains");
    const work = turnWork(followUp(2, { fromCommit: undefined }), submitted);
    expect(work?.submitted.data.spec.prompt).toContain("was not kept");
  });
});

import type { TaskView } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { createStyle, renderTask } from "./render.js";

const view = {
  id: "tsk_1",
  status: "succeeded",
  title: "t",
  repo: { url: "https://github.com/acme/app.git" },
  agentKind: "script",
  labels: {},
  submittedVia: "http",
  submittedAt: "2026-01-01T00:00:00.000Z",
  tenant: "default",
  attempt: 1,
  phases: [],
  attempts: [],
  branch: "codefleet/tsk_1",
  commitSha: "a".repeat(40),
  cancelRequested: false,
  artifacts: [],
  version: 5,
  anomalies: 0,
} as TaskView;

describe("codefleet show", () => {
  it("prints the task's pull request under its commit, and nothing when it has none", () => {
    const st = createStyle(false);
    const out = renderTask({ ...view, pullRequest: { url: "https://github.com/acme/app/pull/7", number: 7 } }, st, {
      jaegerUrl: "http://j",
    });
    const lines = out.split("\n");
    const commit = lines.findIndex((l) => l.startsWith("commit"));
    expect(lines[commit + 1]).toBe("pull req  #7  https://github.com/acme/app/pull/7");
    expect(renderTask(view, st, { jaegerUrl: "http://j" })).not.toContain("pull req");
  });
});

describe("codefleet show: turns and candidates", () => {
  const st = createStyle(false);
  it("lists the turns of a task with follow-ups, the current one's status from the task", () => {
    const out = renderTask(
      {
        ...view,
        status: "running",
        turn: 2,
        turns: [
          { turn: 1, prompt: "p1", agentKind: "script", requestedAt: "x", firstAttempt: 1, status: "succeeded", commitSha: "b".repeat(40) },
          { turn: 2, prompt: "also\nsay goodbye", agentKind: "script", requestedAt: "y", firstAttempt: 2 },
        ],
      },
      st,
      { jaegerUrl: "http://j" },
    );
    expect(out).toMatch(/turns\n\s+1\s+succeeded\s+bbbbbbbbbbbb\s+t\n\s+2\s+running\s+also say goodbye/);
    expect(renderTask(view, st, { jaegerUrl: "http://j" })).not.toContain("turns");
  });

  it("lists a best-of-N attempt's candidates with their scores, the winner starred", () => {
    const out = renderTask(
      {
        ...view,
        candidates: [
          { candidate: 1, status: "failed", testsPassed: 1, testsFailed: 2, reason: "tests failed", attempt: 1, phases: [], winner: false },
          { candidate: 2, status: "passed", testsPassed: 3, testsFailed: 0, diffLines: 4, attempt: 1, phases: [], winner: true },
        ],
      },
      st,
      { jaegerUrl: "http://j" },
    );
    expect(out).toMatch(
      /candidates\n\s+1\s+failed\s+1 passed, 2 failed\s+tests failed\n\s+2 \*\s+passed\s+3 passed, 0 failed\s+4 lines\s+selected/,
    );
  });
});

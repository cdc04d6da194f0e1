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

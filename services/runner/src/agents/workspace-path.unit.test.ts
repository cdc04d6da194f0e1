import { describe, expect, it } from "vitest";
import { workspacePath } from "./openai.js";

// workspacePath keeps a path an agent (or a task's test report setting) names inside /workspace.
describe("workspacePath", () => {
  it("resolves relative and absolute paths inside the workspace", () => {
    expect(workspacePath("src/a.ts")).toBe("/workspace/src/a.ts");
    expect(workspacePath("./src//a.ts")).toBe("/workspace/src/a.ts");
    expect(workspacePath("/etc/passwd")).toBe("/workspace/etc/passwd");
    expect(workspacePath("a/../b")).toBe("/workspace/b");
    expect(workspacePath("")).toBe("/workspace");
    expect(workspacePath(".")).toBe("/workspace");
    expect(workspacePath("-rf")).toBe("/workspace/-rf");
  });

  it("refuses paths that climb out of it, however they are spelled", () => {
    for (const p of ["..", "../x", "a/../../x", "/../x", "./../../etc/passwd", "a/b/../../../x"]) {
      expect(() => workspacePath(p), p).toThrow(expect.objectContaining({ code: "path_outside_workspace" }));
    }
  });

  it("does not mistake a sibling directory for the workspace", () => {
    expect(() => workspacePath("../workspace-evil/x")).toThrow(/outside the repository/);
    expect(() => workspacePath("../workspace")).not.toThrow();
  });
});

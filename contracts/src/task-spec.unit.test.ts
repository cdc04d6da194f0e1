import { describe, expect, it } from "vitest";
import {
  CACHE_PATH_PATTERN,
  defaultBranchFor,
  FINAL_STATUSES,
  isFinalStatus,
  LIMIT_DEFAULTS,
  resolveTaskSpec,
  TASK_STATUSES,
  type TaskSpec,
} from "./task-spec.js";

const spec: TaskSpec = {
  repo: { url: "https://github.com/acme/app.git" },
  title: "t",
  prompt: "p",
  agent: { kind: "script", steps: [{ run: "true" }] },
};

describe("cache paths (what a setup keeps of the workspace)", () => {
  const re = new RegExp(CACHE_PATH_PATTERN);

  it("accepts relative paths inside the workspace, dot-files included", () => {
    for (const p of [
      "node_modules",
      "node_modules/.cache",
      ".venv",
      ".github/x",
      ".gitignore",
      "a/b/c",
      "vendor/bundle",
      "-rf",
      "...",
      "a..b",
    ]) {
      expect(re.test(p), p).toBe(true);
    }
  });

  it("refuses absolute paths, traversal, the git directory and odd characters", () => {
    for (const p of [
      "",
      "/etc",
      "..",
      "../x",
      "a/../../x",
      "a/..",
      ".",
      "./x",
      "a/./b",
      ".git",
      ".git/hooks",
      "a/.git",
      "a/.git/config",
      "a//b",
      "a/",
      "a b",
      "a\\b",
      "a\nb",
      "$HOME",
      "~/x",
      "a*",
    ]) {
      expect(re.test(p), JSON.stringify(p)).toBe(false);
    }
  });
});

describe("resolveTaskSpec", () => {
  it("fills push and limits with the defaults, and the branch from the task id", () => {
    const r = resolveTaskSpec(spec, "tsk_1");
    expect(r.push).toEqual({ enabled: true, branch: "codefleet/tsk_1" });
    expect(r.limits).toEqual(LIMIT_DEFAULTS);
    expect(defaultBranchFor("tsk_1")).toBe("codefleet/tsk_1");
  });

  it("keeps what the spec says, field by field", () => {
    const r = resolveTaskSpec(
      { ...spec, push: { enabled: false, branch: "fix/x", commitMessage: "m" }, limits: { timeoutSeconds: 60 } as never },
      "tsk_1",
    );
    expect(r.push).toEqual({ enabled: false, branch: "fix/x", commitMessage: "m" });
    expect(r.limits).toEqual({ ...LIMIT_DEFAULTS, timeoutSeconds: 60 });
    expect(spec).not.toHaveProperty("push"); // the input is not changed
  });
});

describe("task statuses", () => {
  it("has exactly queued and running as the statuses a task leaves", () => {
    expect(TASK_STATUSES.filter((s) => !isFinalStatus(s))).toEqual(["queued", "running"]);
    expect([...FINAL_STATUSES].sort()).toEqual(TASK_STATUSES.filter((s) => s !== "queued" && s !== "running").sort());
  });
});

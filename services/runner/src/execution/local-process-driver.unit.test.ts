import { CONTAINER_BASE_INDEX, CONTAINER_BASE_OBJECTS, CONTAINER_WORKSPACE } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { containerPathRewriter, localPathMap, runnerKey } from "./local-process-driver.js";

describe("local driver: container paths on the host", () => {
  const map = localPathMap("/data/slots/s1", "/tmp/cf/run1");
  const rewrite = containerPathRewriter(map);

  it("maps the paths phases and the agent's git use to the slot and the run's directories", () => {
    expect(map).toEqual({
      [CONTAINER_WORKSPACE]: "/data/slots/s1/tree",
      [CONTAINER_BASE_OBJECTS]: "/data/slots/s1/git/objects",
      [CONTAINER_BASE_INDEX]: "/data/slots/s1/tree-index/index",
      "/tmp/codefleet": "/tmp/cf/run1/tmp/codefleet",
      "/home/agent": "/tmp/cf/run1/home",
    });
  });

  it("rewrites whole paths in arguments, scripts and environment values", () => {
    expect(rewrite("/workspace")).toBe("/data/slots/s1/tree");
    expect(rewrite("/workspace/reports/junit.xml")).toBe("/data/slots/s1/tree/reports/junit.xml");
    expect(rewrite("cd /workspace && ls")).toBe("cd /data/slots/s1/tree && ls");
    expect(rewrite(`printf '%s\\n' ${CONTAINER_BASE_OBJECTS} > .git/objects/info/alternates`)).toBe(
      "printf '%s\\n' /data/slots/s1/git/objects > .git/objects/info/alternates",
    );
    expect(rewrite(`cp ${CONTAINER_BASE_INDEX} .git/index`)).toBe("cp /data/slots/s1/tree-index/index .git/index");
    expect(rewrite('mkdir -p /tmp/codefleet && cat > "$1"')).toBe('mkdir -p /tmp/cf/run1/tmp/codefleet && cat > "$1"');
    expect(rewrite("/tmp/codefleet/prompt.md")).toBe("/tmp/cf/run1/tmp/codefleet/prompt.md");
    expect(rewrite('"/workspace/$p"')).toBe('"/data/slots/s1/tree/$p"');
    expect(rewrite("X=/home/agent/.cache")).toBe("X=/tmp/cf/run1/home/.cache");
    expect(rewrite("a:/workspace:b")).toBe("a:/data/slots/s1/tree:b");
  });

  it("leaves paths that only look alike", () => {
    for (const s of [
      "/workspaces",
      "/workspace.bak",
      "/workspace-old",
      "/home/x/workspace",
      "./workspace",
      "~/workspace",
      "/tmp/codefleet2",
      "/tmp/other",
      "/home/agents",
      "/codefleet/base/indexes",
      "workspace",
    ])
      expect(rewrite(s)).toBe(s);
  });

  it("keys runners by a fixed-length, path-safe hash", () => {
    expect(runnerKey("runner-a")).toMatch(/^[0-9a-f]{16}$/);
    expect(runnerKey("runner-a")).toBe(runnerKey("runner-a"));
    expect(runnerKey("runner-a")).not.toBe(runnerKey("runner-b"));
    expect(runnerKey("../../etc")).toMatch(/^[0-9a-f]{16}$/);
  });
});

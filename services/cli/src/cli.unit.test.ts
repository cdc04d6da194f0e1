import { describe, expect, it } from "vitest";
import { CliError, EXIT } from "./exit-codes.js";
import { awaitsArtifacts } from "./follow.js";
import { createStyle, formatDuration, renderTaskList } from "./render.js";
import { resolveSettings } from "./settings.js";
import { buildTaskSpec, parseTaskFile } from "./task-input.js";

describe("settings", () => {
  const files: Record<string, string> = {
    "/home/u/.config/codefleet/config.yaml": "url: http://registry.example:8080/\ntoken: from-file\njaegerUrl: http://jaeger:16686\n",
    "/etc/cf.json": '{"url":"https://cf.example","token":"json-token"}',
    "/bad.yaml": "colour: blue\n",
  };
  const read = (p: string) => files[p];
  it("takes flags over env over the config file, and trims trailing slashes", () => {
    const env = { HOME: "/home/u" };
    expect(resolveSettings({}, env, read)).toMatchObject({
      url: "http://registry.example:8080",
      token: "from-file",
      jaegerUrl: "http://jaeger:16686",
    });
    expect(resolveSettings({}, { ...env, CODEFLEET_TOKEN: "env-token" }, read).token).toBe("env-token");
    expect(resolveSettings({ token: "flag" }, { ...env, CODEFLEET_TOKEN: "env-token" }, read).token).toBe("flag");
    expect(resolveSettings({ config: "/etc/cf.json" }, env, read)).toMatchObject({ url: "https://cf.example", token: "json-token" });
    expect(resolveSettings({}, { HOME: "/nobody" }, read)).toMatchObject({
      url: "http://localhost:8080",
      token: undefined,
      configFile: undefined,
    });
  });
  it("says what is wrong with a config", () => {
    expect(() => resolveSettings({ config: "/missing.yaml" }, {}, read)).toThrow(/does not exist/);
    expect(() => resolveSettings({ config: "/bad.yaml" }, {}, read)).toThrow(/unknown key 'colour'/);
    expect(() => resolveSettings({ url: "ftp://x" }, {}, read)).toThrow(/must be http/);
  });
});

describe("buildTaskSpec", () => {
  it("builds a script task from flags", () => {
    const spec = buildTaskSpec(undefined, {
      repo: "https://git.example/r.git",
      ref: "main",
      title: "Fix it",
      step: ["echo hi > a.txt"],
      test: "sh test.sh",
      label: ["team=core", "ticket=ABC-1"],
      push: false,
      timeout: "120",
    });
    expect(spec).toEqual({
      repo: { url: "https://git.example/r.git", ref: "main" },
      title: "Fix it",
      prompt: "Fix it",
      agent: { kind: "script", steps: [{ run: "echo hi > a.txt" }] },
      test: { command: "sh test.sh" },
      labels: { team: "core", ticket: "ABC-1" },
      push: { enabled: false },
      limits: { timeoutSeconds: 120 },
    });
  });
  it("lets flags override a YAML task file", () => {
    const file = parseTaskFile(
      "task.yaml",
      "repo: {url: 'git://h/r.git', ref: dev}\ntitle: From file\nprompt: Do it\nagent: {kind: openai, model: gpt-4o-mini}\nlabels: {a: '1'}\n",
    );
    const spec = buildTaskSpec(file, { ref: "main", model: "other-model", label: ["b=2"] });
    expect(spec.repo).toEqual({ url: "git://h/r.git", ref: "main" });
    expect(spec.agent).toEqual({ kind: "openai", model: "other-model" });
    expect(spec.labels).toEqual({ a: "1", b: "2" });
    expect(spec.prompt).toBe("Do it");
  });
  it("refuses an invalid task with every problem and exit code 2", () => {
    const err = (() => {
      try {
        buildTaskSpec(undefined, { repo: "x", title: "t", agent: "openai", ref: "-evil" });
      } catch (e) {
        return e as CliError;
      }
    })();
    expect(err).toBeInstanceOf(CliError);
    expect(err?.exitCode).toBe(EXIT.usage);
    expect(err?.message).toMatch(/\/repo\/ref|\/agent/);
    expect(() => buildTaskSpec(undefined, { title: "t" })).toThrow(/needs --repo, --agent or --step/);
    expect(() => buildTaskSpec(undefined, { repo: "x", title: "t", step: ["a"], label: ["nokey"] })).toThrow(/key=value/);
    expect(() => parseTaskFile("t.json", "[1, 2]")).toThrow(/one task/);
    expect(() => parseTaskFile("t.json", "{ nope")).toThrow(/not valid YAML or JSON/);
  });
});

describe("render", () => {
  it("formats durations and a task table without colours when disabled", () => {
    expect(formatDuration(812)).toBe("812 ms");
    expect(formatDuration(12_345)).toBe("12.3 s");
    expect(formatDuration(125_000)).toBe("2m 05s");
    const out = renderTaskList(
      [
        {
          id: "tsk_1",
          status: "running",
          currentPhase: "implement",
          submittedAt: new Date(1000).toISOString(),
          agentKind: "script",
          repo: { url: "git://h/r.git", ref: "main" },
          title: "A title",
        } as never,
      ],
      createStyle(false),
      61_000,
    );
    expect(out.split("\n")[1]).toMatch(/^tsk_1\s+running\s+implement\s+1m 00s ago\s+script\s+git:\/\/h\/r.git@main\s+A title$/);
    expect(out).not.toContain("\x1b[");
  });
});

describe("diffSummary", () => {
  it("counts files and changed lines, not the file headers", async () => {
    const { diffSummary } = await import("./render.js");
    const diff = [
      "diff --git a/greet.sh b/greet.sh",
      "--- a/greet.sh",
      "+++ b/greet.sh",
      "@@ -1,2 +1,2 @@",
      " #!/bin/sh",
      '-echo "hello"',
      '+echo "hello from codefleet"',
      "diff --git a/new.txt b/new.txt",
      "--- /dev/null",
      "+++ b/new.txt",
      "@@ -0,0 +1 @@",
      "+new",
      "",
    ].join("\n");
    expect(diffSummary(diff)).toBe("2 files changed (greet.sh, new.txt), +2 −1");
    expect(diffSummary("")).toBe("no changes");
  });
});

describe("following a task to its end", () => {
  const artifact = { name: "task.log" } as never;
  it("waits for the artifacts of a finished task, not for those a canceled or rejected one will never have", () => {
    expect(awaitsArtifacts({ status: "running", artifacts: [] })).toBe(true);
    expect(awaitsArtifacts({ status: "succeeded", artifacts: [] })).toBe(true);
    expect(awaitsArtifacts({ status: "succeeded", artifacts: [artifact] })).toBe(false);
    expect(awaitsArtifacts({ status: "failed", artifacts: [] })).toBe(true);
    expect(awaitsArtifacts({ status: "canceled", artifacts: [] })).toBe(false);
    expect(awaitsArtifacts({ status: "rejected", artifacts: [] })).toBe(false);
  });
});

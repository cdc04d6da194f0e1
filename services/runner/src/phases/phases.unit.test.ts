import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AllocateResult, CodefleetError, resolveTaskSpec, type TaskSpec } from "@codefleet/contracts";
import { createLogger, SecretMasker } from "@codefleet/platform/runtime";
import { context as otelContext } from "@opentelemetry/api";
import { afterEach, describe, expect, it } from "vitest";
import type { AgentResult } from "../agents/agent.js";
import { agentRegistry } from "../agents/registry.js";
import type { ContainerState, ExecOptions, ExecResult, RunHandle, WorkspaceReader } from "../execution/driver.js";
import { LogStream } from "../logs/log-stream.js";
import { classifyAgentRun, implementPhase } from "./implement.js";
import type { AttemptPhase, PhaseContext } from "./phase.js";
import { Superseded } from "./phase.js";
import { runPipeline } from "./pipeline.js";
import { commitMessageFor, findSecretInCommit, pushPhase } from "./push.js";
import { classifySetupRun, setupPhase } from "./setup.js";
import { classifyTestRun, testPhase } from "./test.js";

const ok: ExecResult = { exitCode: 0, timedOut: false, idleTimedOut: false, canceled: false, durationMs: 1 };
const running: ContainerState = { running: true, oomKilled: false };
const limits = { memoryMb: 512, idleTimeoutMs: 60_000 };

/** A container that answers each exec from a script (by the command's text) and records what ran. */
class FakeRun implements RunHandle {
  readonly id = "fake";
  readonly ran: string[][] = [];
  removed = 0;
  constructor(
    private readonly answer: (cmd: string[], opts: ExecOptions) => Partial<ExecResult> & { stdout?: string } = () => ({}),
    private readonly containerState: ContainerState = running,
  ) {}
  async adopt(): Promise<void> {}
  async exec(cmd: string[], opts: ExecOptions): Promise<ExecResult> {
    this.ran.push(cmd);
    const { stdout, ...r } = this.answer(cmd, opts);
    if (stdout) opts.onOutput?.("stdout", Buffer.from(stdout));
    return { ...ok, ...r };
  }
  async state(): Promise<ContainerState> {
    return this.containerState;
  }
  async address(): Promise<string | undefined> {
    return undefined;
  }
  async remove(): Promise<void> {
    this.removed++;
  }
}

/** A workspace whose commit, remote branch and push are scripted. */
function fakeWorkspace(o: {
  changed?: boolean;
  added?: string;
  remote?: { sha: string; message: string };
  pushFails?: string;
}): WorkspaceReader & { pushed: string[] } {
  const pushed: string[] = [];
  return {
    pushed,
    stage: async () => ({ skipped: [] }),
    commit: async () => ({ sha: "c".repeat(40), changed: o.changed ?? true }),
    diff: async () => undefined,
    addedText: async (_b, _h, onText) => onText(o.added ?? "+a line\n"),
    commitMessage: async () => o.remote?.message ?? "",
    remoteBranch: async () => o.remote?.sha,
    fetchBranch: async () => undefined,
    push: async (_url, sha, branch) => {
      if (o.pushFails) throw new Error(o.pushFails);
      // the real push refuses a branch that exists
      if (o.remote) throw new Error("[rejected] (stale info)");
      pushed.push(`${sha}:${branch}`);
    },
  };
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function context(
  o: {
    spec?: Partial<TaskSpec>;
    run?: FakeRun;
    workspace?: WorkspaceReader;
    fence?: boolean;
    full?: number;
    secrets?: Record<string, string>;
  } = {},
): PhaseContext & { run: FakeRun } {
  const dir = mkdtempSync(join(tmpdir(), "phases-"));
  dirs.push(dir);
  const masker = new SecretMasker(Object.values(o.secrets ?? {}));
  const spec = resolveTaskSpec(
    {
      repo: { url: "https://example.com/r.git" },
      title: "t",
      prompt: "p",
      agent: { kind: "script", steps: [{ run: "true" }] },
      ...o.spec,
    },
    "tsk_unit",
  );
  const slot: AllocateResult = {
    slotId: "slot_X",
    path: dir,
    hostPath: dir,
    ref: "main",
    commitSha: "b".repeat(40),
    remoteUrl: "https://example.com/r.git",
    warm: true,
    leaseExpiresAt: new Date().toISOString(),
  };
  const run = o.run ?? new FakeRun();
  return {
    taskId: "tsk_unit",
    attempt: 1,
    turn: { number: 1, firstAttempt: 1, causationId: "evt_submitted" },
    spec,
    slot,
    run,
    agentGitReady: true,
    env: {},
    secrets: o.secrets ?? {},
    log: new LogStream({
      taskId: "tsk_unit",
      attempt: 1,
      masker,
      sink: async () => undefined,
      filePath: join(dir, "log"),
      maxBytes: 1 << 20,
    }),
    masker,
    signal: new AbortController().signal,
    remainingMs: () => 60_000,
    workspaceFull: async () => o.full,
    record: { baseSha: "b".repeat(40) },
    agents: agentRegistry,
    images: { default: "i", opencode: "o", claudeCode: "c" },
    settings: { agentIdleTimeoutMs: 60_000, commitAuthor: { name: "n", email: "e@x" }, defaults: { openaiBaseUrl: "http://x" } },
    removeContainer: () => run.remove(),
    openWorkspace: async () => o.workspace ?? fakeWorkspace({}),
    credentialsFor: () => undefined,
    fenceForPush: async () => o.fence ?? true,
  };
}

describe("implement: how an agent's run ends the attempt", () => {
  const r = (x: Partial<AgentResult>): AgentResult => ({ exitCode: 0, ...x });
  it("succeeds on exit 0 and stops nothing", () => {
    expect(classifyAgentRun(r({}), { container: running }, limits)).toEqual({ outcome: "succeeded", exitCode: 0 });
  });
  it("calls a failure in a full workspace disk_limit, before anything else", () => {
    const c = classifyAgentRun(r({ exitCode: 137 }), { container: { running: false, oomKilled: true }, workspaceFullBytes: 99 }, limits);
    expect(c.end).toMatchObject({ status: "failed", reasonCode: "disk_limit" });
  });
  it("calls an OOM kill oom_killed, and a bare 137 without a timeout too", () => {
    expect(classifyAgentRun(r({ exitCode: 1 }), { container: { running: false, oomKilled: true } }, limits).end?.reasonCode).toBe(
      "oom_killed",
    );
    expect(classifyAgentRun(r({ exitCode: 137 }), { container: running }, limits).end?.reasonCode).toBe("oom_killed");
  });
  it("calls an idle kill agent_stalled (not an OOM, though it exits 137)", () => {
    const c = classifyAgentRun(r({ exitCode: 137, idleTimedOut: true }), { container: running }, limits);
    expect(c).toMatchObject({ outcome: "timed_out", end: { status: "failed", reasonCode: "agent_stalled" } });
  });
  it("ends a timed-out agent as timed_out / task_timeout", () => {
    const c = classifyAgentRun(r({ exitCode: 137, timedOut: true }), { container: running }, limits);
    expect(c).toMatchObject({ outcome: "timed_out", end: { status: "timed_out", reasonCode: "task_timeout" } });
  });
  it("ends a canceled agent as canceled", () => {
    expect(classifyAgentRun(r({ exitCode: 137, canceled: true }), { container: running }, limits)).toMatchObject({
      outcome: "canceled",
      end: { status: "canceled", reasonCode: "canceled" },
    });
  });
  it("ends any other exit as agent_failed with the agent's summary", () => {
    const c = classifyAgentRun(r({ exitCode: 2, summary: "step 1 failed" }), { container: running }, limits);
    expect(c).toMatchObject({ outcome: "failed", detail: "step 1 failed", end: { reasonCode: "agent_failed" } });
    expect(c.end?.reason).toContain("step 1 failed");
  });
  it("runs the script agent in the container and records its result", async () => {
    const ctx = context({ spec: { agent: { kind: "script", steps: [{ run: "echo hi" }, { run: "exit 3" }] } } });
    const run = new FakeRun((cmd) => (cmd.join(" ").includes("exit 3") ? { exitCode: 3 } : {}));
    const report = await implementPhase.run({ ...ctx, run });
    expect(run.ran.map((c) => c.at(-1))).toEqual(["echo hi", "exit 3"]);
    expect(report).toMatchObject({ outcome: "failed", exitCode: 3, end: { reasonCode: "agent_failed" } });
    expect(ctx.record.agentResult?.exitCode).toBe(3);
  });
  it("asks repo-pool about the disk only when the agent failed", async () => {
    let asked = 0;
    const ctx = context();
    const report = await implementPhase.run({
      ...ctx,
      workspaceFull: async () => {
        asked++;
        return undefined;
      },
    });
    expect(report.outcome).toBe("succeeded");
    expect(asked).toBe(0);
  });
});

describe("test: how a test run ends the attempt", () => {
  it("classifies each outcome", () => {
    const t = (outcome: "succeeded" | "failed" | "timed_out" | "canceled") => ({ outcome, detail: "d", exitCode: 1 });
    expect(classifyTestRun(t("succeeded"), { container: running }, limits).end).toBeUndefined();
    expect(classifyTestRun(t("failed"), { container: running }, limits).end?.reasonCode).toBe("test_failed");
    expect(classifyTestRun(t("timed_out"), { container: running }, limits).end).toMatchObject({
      status: "timed_out",
      reasonCode: "test_timeout",
    });
    expect(classifyTestRun(t("failed"), { container: { running: false, oomKilled: true } }, limits).end?.reasonCode).toBe("oom_killed");
    expect(classifyTestRun(t("failed"), { container: running, workspaceFullBytes: 5 }, limits).end?.reasonCode).toBe("disk_limit");
    expect(classifyTestRun(t("canceled"), { container: running }, limits).end?.status).toBe("canceled");
  });
  it("does not apply to a task without a test", () => {
    expect(testPhase.appliesTo?.(context().spec)).toBe(false);
    expect(testPhase.appliesTo?.(context({ spec: { test: { command: "true" } } }).spec)).toBe(true);
  });
  it("reads the report inside the container and counts it", async () => {
    const junit =
      '<testsuite tests="3" failures="1"><testcase name="a"/><testcase name="b"><failure/></testcase><testcase name="c"/></testsuite>';
    const run = new FakeRun((cmd) => (cmd[0] === "head" ? { stdout: junit } : { exitCode: 1 }));
    const ctx = context({ run, spec: { test: { command: "npm test", report: { path: "report.xml", format: "junit" } } } });
    const report = await testPhase.run(ctx);
    expect(run.ran.find((c) => c[0] === "head")).toContain("/workspace/report.xml");
    expect(report).toMatchObject({ outcome: "failed", end: { reasonCode: "test_failed" }, facts: { passed: 2, failed: 1 } });
    expect(ctx.record.testOutcome?.report?.format).toBe("junit");
  });
});

describe("push: commit, secret scan, exactly one push", () => {
  it("removes the container before reading the tree, then pushes to the task's branch", async () => {
    const ws = fakeWorkspace({});
    const ctx = context({ workspace: ws });
    const report = await pushPhase.run(ctx);
    expect(ctx.run.removed).toBe(1);
    expect(report).toMatchObject({ outcome: "succeeded", facts: { branch: "codefleet/tsk_unit" } });
    expect(ws.pushed).toEqual([`${"c".repeat(40)}:codefleet/tsk_unit`]);
    expect(ctx.record.pushedSha).toBe("c".repeat(40));
  });
  it("skips when nothing changed", async () => {
    const ctx = context({ workspace: fakeWorkspace({ changed: false }) });
    expect(await pushPhase.run(ctx)).toMatchObject({ outcome: "skipped", detail: "nothing changed" });
    expect(ctx.record.head).toBeUndefined();
  });
  it("refuses a change carrying a secret's value, even base64-encoded", async () => {
    const secret = "sk-live-0123456789abcdef";
    const ws = fakeWorkspace({ added: `token = ${Buffer.from(secret).toString("base64")}\n` });
    const ctx = context({ workspace: ws, secrets: { API_KEY: secret } });
    expect(await pushPhase.run(ctx)).toMatchObject({ outcome: "failed", end: { reasonCode: "secret_in_diff" } });
    expect(ws.pushed).toEqual([]);
    // the diff is still kept for the record
    expect(ctx.record.head?.sha).toBe("c".repeat(40));
  });
  it("finds a secret cut across two pieces of the added text", async () => {
    const secret = "sk-live-0123456789abcdef";
    const ws: Pick<WorkspaceReader, "addedText"> = {
      addedText: async (_b, _h, onText) => {
        onText(`x = "${secret.slice(0, 10)}`);
        onText(`${secret.slice(10)}"\n`);
      },
    };
    expect(await findSecretInCommit(ws, "b", "c", { API_KEY: secret })).toBe("API_KEY");
    expect(await findSecretInCommit(ws, "b", "c", {})).toBeUndefined();
  });
  it("takes an earlier attempt's push of the same task as done, and another branch's work as a rejection", async () => {
    const mine = context({ workspace: fakeWorkspace({ remote: { sha: "d".repeat(40), message: "t\n\nCodefleet-Task: tsk_unit\n" } }) });
    expect(await pushPhase.run(mine)).toMatchObject({ outcome: "skipped", facts: { alreadyPushed: true } });
    expect(mine.record.pushedSha).toBe("d".repeat(40));
    const other = context({ workspace: fakeWorkspace({ remote: { sha: "d".repeat(40), message: "someone else's" } }) });
    expect(await pushPhase.run(other)).toMatchObject({ outcome: "failed", end: { reasonCode: "push_rejected" } });
  });
  it("does not push when a newer attempt holds the fence", async () => {
    const ws = fakeWorkspace({});
    await expect(pushPhase.run(context({ workspace: ws, fence: false }))).rejects.toBeInstanceOf(Superseded);
    expect(ws.pushed).toEqual([]);
  });
  it("reports a rejected push with the remote's words, masked", async () => {
    const secret = "hunter2-hunter2";
    const ctx = context({ workspace: fakeWorkspace({ pushFails: `denied for ${secret}` }), secrets: { PW: secret } });
    const report = await pushPhase.run(ctx);
    expect(report.end?.reasonCode).toBe("push_rejected");
    expect(report.end?.reason).not.toContain(secret);
  });
  it("keeps the commit but does not push when push is disabled", async () => {
    const ws = fakeWorkspace({});
    const ctx = context({ workspace: ws, spec: { push: { enabled: false } } });
    expect(await pushPhase.run(ctx)).toMatchObject({ outcome: "skipped", detail: "push disabled for this task" });
    expect(ws.pushed).toEqual([]);
  });
  it("always carries the task trailer in the commit message", () => {
    expect(commitMessageFor({ title: "x", push: {} }, "tsk_1", 2)).toContain("Codefleet-Task: tsk_1\nCodefleet-Attempt: 2");
    expect(commitMessageFor({ title: "x", push: { commitMessage: "mine" } }, "tsk_1", 1)).toBe("mine\n\nCodefleet-Task: tsk_1\n");
  });
});

describe("the pipeline", () => {
  const events: string[] = [];
  const hooks = (stopped?: () => ReturnType<Parameters<typeof runPipeline>[2]["stoppedBy"]>) => ({
    publish: async (type: string, data: unknown) => {
      events.push(
        `${type}:${(data as { phase: string; outcome?: string }).phase}${(data as { outcome?: string }).outcome ? `:${(data as { outcome?: string }).outcome}` : ""}`,
      );
    },
    stoppedBy: stopped ?? (() => undefined),
    traceContext: otelContext.active(),
    log: createLogger({ service: "test", level: "silent" }),
  });
  const phase = (name: "fetch" | "implement" | "test" | "push", run: AttemptPhase["run"]): AttemptPhase => ({ name, run });

  it("runs the phases in order and ends at the first that stops the attempt", async () => {
    events.length = 0;
    const end = await runPipeline(
      [
        phase("fetch", async () => ({ outcome: "succeeded" })),
        phase("implement", async () => ({ outcome: "failed", end: { status: "failed", reasonCode: "agent_failed" } })),
        phase("push", async () => ({ outcome: "succeeded" })),
      ],
      context(),
      hooks(),
    );
    expect(end).toEqual({ status: "failed", reasonCode: "agent_failed" });
    expect(events).toEqual([
      "phase.started:fetch",
      "phase.finished:fetch:succeeded",
      "phase.started:implement",
      "phase.finished:implement:failed",
    ]);
  });
  it("turns a thrown error into a failed phase with its code, masked", async () => {
    const ctx = context({ secrets: { K: "s3cr3t-value" } });
    const end = await runPipeline(
      [phase("fetch", async () => Promise.reject(new CodefleetError("repo_not_found", "gone: s3cr3t-value")))],
      ctx,
      hooks(),
    );
    expect(end).toMatchObject({ status: "failed", reasonCode: "repo_not_found" });
    expect(end.reason).not.toContain("s3cr3t-value");
  });
  it("ends with internal_error, the error's own code in the reason, when that code is not a reason code", async () => {
    const end = await runPipeline(
      [phase("fetch", async () => Promise.reject(new CodefleetError("repo_gone", "gone")))],
      context(),
      hooks(),
    );
    expect(end).toMatchObject({ status: "failed", reasonCode: "internal_error", reason: "gone (repo_gone)" });
  });
  it("lets a stop from outside (cancel) win over the phase's own failure", async () => {
    const end = await runPipeline(
      [phase("implement", async () => ({ outcome: "failed", end: { status: "failed", reasonCode: "agent_failed" } }))],
      context(),
      hooks(() => ({ status: "canceled", reasonCode: "canceled" })),
    );
    expect(end).toEqual({ status: "canceled", reasonCode: "canceled" });
  });
  it("ends succeeded with the pushed commit", async () => {
    const ctx = context();
    const end = await runPipeline(
      [
        phase("push", async (c) => {
          c.record.pushedSha = "e".repeat(40);
          return { outcome: "succeeded" };
        }),
      ],
      ctx,
      hooks(),
    );
    expect(end).toEqual({ status: "succeeded", commitSha: "e".repeat(40) });
  });
});

describe("setup: how the setup command ends the attempt", () => {
  const exec = (x: Partial<ExecResult>): ExecResult => ({ ...ok, ...x });
  it("classifies each ending", () => {
    expect(classifySetupRun(exec({}), { oomKilled: false }, 512)).toEqual({ outcome: "succeeded", exitCode: 0 });
    expect(classifySetupRun(exec({ exitCode: 1 }), { oomKilled: false }, 512).end?.reasonCode).toBe("setup_failed");
    expect(classifySetupRun(exec({ exitCode: 137 }), { oomKilled: true }, 512).end?.reasonCode).toBe("oom_killed");
    expect(classifySetupRun(exec({ exitCode: 1 }), { oomKilled: false, workspaceFullBytes: 1 }, 512).end?.reasonCode).toBe("disk_limit");
    expect(classifySetupRun(exec({ exitCode: 137, timedOut: true }), { oomKilled: false }, 512).end).toMatchObject({
      status: "timed_out",
      reasonCode: "setup_timeout",
    });
    expect(classifySetupRun(exec({ canceled: true }), { oomKilled: false }, 512).end?.status).toBe("canceled");
  });
  it("restores from the cache without running the command, or runs it and saves", async () => {
    const calls: string[] = [];
    const cache = (hit: boolean): NonNullable<PhaseContext["environmentCache"]> => ({
      key: async (files) => {
        calls.push(`key:${files.join(",")}`);
        return "k".repeat(64);
      },
      restore: async () => {
        calls.push("restore");
        return { hit, bytes: 5 };
      },
      save: async () => {
        calls.push("save");
        return { saved: true, bytes: 5 };
      },
    });
    const spec = { setup: { command: "npm ci", cachePaths: ["node_modules"], cacheKeyFiles: ["package-lock.json"] } };
    const hit = context({ spec });
    const hitReport = await setupPhase.run({ ...hit, environmentCache: cache(true) });
    expect(hitReport).toMatchObject({ outcome: "succeeded", facts: { cache: "hit" } });
    expect(hit.run.ran).toEqual([]);
    calls.length = 0;
    const miss = context({ spec });
    const missReport = await setupPhase.run({ ...miss, environmentCache: cache(false) });
    expect(missReport).toMatchObject({ outcome: "succeeded", facts: { cache: "saved" } });
    expect(miss.run.ran).toEqual([["sh", "-c", "npm ci"]]);
    expect(calls).toEqual(["key:package-lock.json", "restore", "save"]);
  });
  it("does not keep the result of a failed setup", async () => {
    let saved = false;
    const ctx = context({ spec: { setup: { command: "false", cachePaths: ["x"] } }, run: new FakeRun(() => ({ exitCode: 1 })) });
    const report = await setupPhase.run({
      ...ctx,
      environmentCache: {
        key: async () => "k",
        restore: async () => ({ hit: false }),
        save: async () => {
          saved = true;
          return { saved: true };
        },
      },
    });
    expect(report.end?.reasonCode).toBe("setup_failed");
    expect(saved).toBe(false);
  });
});

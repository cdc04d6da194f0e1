import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AllocateResult, resolveTaskSpec, type TaskSpec } from "@codefleet/contracts";
import { createLogger, SecretMasker } from "@codefleet/platform/runtime";
import { context as otelContext } from "@opentelemetry/api";
import { afterEach, describe, expect, it } from "vitest";
import { agentRegistry } from "../agents/registry.js";
import type { ContainerState, ExecOptions, ExecResult, RunHandle, WorkspaceReader } from "../execution/driver.js";
import { LogStream } from "../logs/log-stream.js";
import type { MergeResult, RebaseResult, WorkspaceRebaser } from "../workspace/workspace-git.js";
import type { PhaseContext } from "./phase.js";
import { runPipeline } from "./pipeline.js";
import { pushPhase } from "./push.js";
import { baseBranchOf, rebasePhase, rebaserOf } from "./rebase.js";
import { testPhase } from "./test.js";

const OLD = "a".repeat(40);
const NEW = "b".repeat(40);
const STAGED = "c".repeat(40);
const SNAPSHOT = "d".repeat(40);
const MOVED = "e".repeat(40);
const REBASED = "f".repeat(40);
const SNAP_DIR = "/tmp/codefleet-rebase.AbCd1234";

const ok: ExecResult = { exitCode: 0, timedOut: false, idleTimedOut: false, canceled: false, durationMs: 1 };
const running: ContainerState = { running: true, oomKilled: false };

/** A container that answers the rebase's scripts and the test command, and records what ran. */
class FakeRun implements RunHandle {
  readonly id = "fake";
  readonly ran: string[] = [];
  removed = 0;
  stdin: (string | Buffer)[] = [];
  constructor(private readonly o: { snapshot?: "ok" | "no-git"; apply?: boolean; tests?: number[] } = {}) {}
  async adopt(): Promise<void> {}
  async exec(cmd: string[], opts: ExecOptions): Promise<ExecResult> {
    const script = cmd[2] ?? cmd.join(" ");
    const what = script.includes("mktemp")
      ? "snapshot"
      : script.includes("pack-objects")
        ? "pack"
        : script.includes("git apply")
          ? "apply"
          : cmd[0] === "rm"
            ? "drop"
            : `sh:${script}`;
    this.ran.push(what);
    if (opts.stdin !== undefined) this.stdin.push(opts.stdin);
    const out = (s: string) => opts.onOutput?.("stdout", Buffer.from(s));
    if (what === "snapshot") {
      if (this.o.snapshot === "no-git") {
        opts.onOutput?.("stderr", Buffer.from("git is not installed\n"));
        return { ...ok, exitCode: 3 };
      }
      out(`${SNAP_DIR}\n${SNAPSHOT}\n`);
    }
    if (what === "pack") out("PACK-bytes");
    if (what === "apply" && this.o.apply === false) {
      opts.onOutput?.("stderr", Buffer.from("error: patch failed: f.txt:2\n"));
      return { ...ok, exitCode: 1 };
    }
    if (what.startsWith("sh:")) {
      const runs = this.ran.filter((r) => r.startsWith("sh:")).length;
      return { ...ok, exitCode: this.o.tests?.[runs - 1] ?? 0 };
    }
    return ok;
  }
  async state(): Promise<ContainerState> {
    return running;
  }
  async address(): Promise<string | undefined> {
    return undefined;
  }
  async remove(): Promise<void> {
    this.removed++;
    this.ran.push("remove");
  }
}

type FakeWs = WorkspaceReader & WorkspaceRebaser & { calls: string[]; pushed: string[] };

/** A workspace whose base tip, merges and commits are scripted; every call recorded. */
function fakeWorkspace(
  o: { tip?: string; merge?: MergeResult; rebase?: RebaseResult; pack?: Buffer[]; unchangedTree?: boolean } = {},
): FakeWs {
  const calls: string[] = [];
  const pushed: string[] = [];
  const trees: Record<string, string> = { [OLD]: "tree-old", [SNAPSHOT]: o.unchangedTree ? "tree-old" : "tree-task", [NEW]: "tree-new" };
  return {
    calls,
    pushed,
    stage: async () => ({ skipped: [] }),
    commit: async (_m, _a, base) => {
      calls.push(`commit on ${base.slice(0, 1)}`);
      return { sha: STAGED, changed: true };
    },
    diff: async () => undefined,
    addedText: async (base, head, onText) => {
      calls.push(`scan ${base.slice(0, 1)}..${head.slice(0, 1)}`);
      onText("a line\n");
    },
    commitMessage: async () => "",
    remoteBranch: async () => undefined,
    fetchBranch: async () => undefined,
    push: async (_url, sha, branch) => {
      pushed.push(`${sha.slice(0, 1)}:${branch}`);
    },
    baseTip: async (_url, branch) => {
      calls.push(`tip ${branch}`);
      return o.tip ?? OLD;
    },
    treeOf: async (c) => trees[c] ?? "tree-?",
    importPack: async (produce, max) => {
      const got: Buffer[] = [];
      await produce((chunk) => {
        got.push(chunk);
        return true;
      });
      o.pack?.push(...got);
      calls.push(`pack ≤${max}`);
    },
    mergeOnto: async (head, from, onto) => {
      calls.push(`merge ${head.slice(0, 1)} ${from.slice(0, 1)}→${onto.slice(0, 1)}`);
      return o.merge ?? { clean: true, tree: "tree-merged" };
    },
    treeDiff: async (a, b) => {
      calls.push(`diff ${a}..${b}`);
      return Buffer.from("diff --git a/f.txt b/f.txt\n...\ndiff --git a/g.txt b/g.txt\n");
    },
    rebase: async (head, from, onto) => {
      calls.push(`rebase ${head.slice(0, 1)} ${from.slice(0, 1)}→${onto.slice(0, 1)}`);
      return o.rebase ?? { kind: "rebased", sha: REBASED, changed: true };
    },
    moveOnto: async (head, onto) => {
      calls.push(`move ${head.slice(0, 1)}→${onto.slice(0, 1)}`);
      return { sha: MOVED, changed: true };
    },
  };
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function context(
  o: { spec?: Partial<TaskSpec>; run?: FakeRun; ws?: WorkspaceReader; ref?: string; secrets?: Record<string, string> } = {},
): PhaseContext & { run: FakeRun } {
  const dir = mkdtempSync(join(tmpdir(), "rebase-"));
  dirs.push(dir);
  const masker = new SecretMasker(Object.values(o.secrets ?? {}));
  const spec = resolveTaskSpec(
    {
      repo: { url: "https://example.com/r.git" },
      title: "t",
      prompt: "p",
      agent: { kind: "script", steps: [{ run: "true" }] },
      test: { command: "npm test" },
      ...o.spec,
    },
    "tsk_rebase",
  );
  const slot: AllocateResult = {
    slotId: "slot_X",
    path: dir,
    hostPath: dir,
    ref: o.ref ?? "main",
    commitSha: OLD,
    remoteUrl: "https://example.com/r.git",
    warm: true,
    leaseExpiresAt: new Date().toISOString(),
  };
  const run = o.run ?? new FakeRun();
  const ws = o.ws ?? fakeWorkspace();
  return {
    taskId: "tsk_rebase",
    attempt: 1,
    turn: { number: 1, firstAttempt: 1, causationId: "evt_submitted" },
    spec,
    slot,
    run,
    agentGitReady: true,
    env: {},
    secrets: o.secrets ?? {},
    log: new LogStream({
      taskId: "tsk_rebase",
      attempt: 1,
      masker,
      sink: async () => undefined,
      filePath: join(dir, "log"),
      maxBytes: 1 << 20,
    }),
    masker,
    signal: new AbortController().signal,
    remainingMs: () => 60_000,
    workspaceFull: async () => undefined,
    record: { baseSha: OLD },
    agents: agentRegistry,
    images: { default: "i", opencode: "o", claudeCode: "c" },
    settings: { agentIdleTimeoutMs: 60_000, commitAuthor: { name: "n", email: "e@x" }, defaults: { openaiBaseUrl: "http://x" } },
    removeContainer: () => run.remove(),
    openWorkspace: async () => ws,
    credentialsFor: () => undefined,
    fenceForPush: async () => true,
  };
}

function pipeline(ctx: PhaseContext) {
  const events: string[] = [];
  const end = runPipeline([testPhase, rebasePhase, pushPhase], ctx, {
    publish: async (type, data) => {
      const d = data as { phase: string; outcome?: string; facts?: Record<string, unknown> };
      events.push(`${type === "phase.started" ? "start" : "end"} ${d.phase}${d.outcome ? ` ${d.outcome}` : ""}`);
      if (d.facts) facts[d.phase] = d.facts;
    },
    stoppedBy: () => undefined,
    traceContext: otelContext.active(),
    log: createLogger({ service: "test", level: "silent" }),
  });
  const facts: Record<string, Record<string, unknown>> = {};
  return end.then((e) => ({ end: e, events, facts }));
}

describe("the base branch", () => {
  it("is a branch when the ref names one; a commit id, a tag or another full ref does not move", () => {
    expect(baseBranchOf("main")).toEqual({ branch: "main" });
    expect(baseBranchOf("release/1.x")).toEqual({ branch: "release/1.x" });
    expect(baseBranchOf("refs/heads/dev")).toEqual({ branch: "dev" });
    expect(baseBranchOf(OLD)).toHaveProperty("fixed");
    expect(baseBranchOf("refs/tags/v1")).toHaveProperty("fixed");
    expect(baseBranchOf("refs/pull/1/head")).toHaveProperty("fixed");
    expect(baseBranchOf("")).toHaveProperty("fixed");
  });

  it("is checked only for a task that pushes and did not opt out", () => {
    expect(rebasePhase.appliesTo?.(context().spec)).toBe(true);
    expect(rebasePhase.appliesTo?.(context({ spec: { push: { enabled: true, rebase: false } } }).spec)).toBe(false);
    expect(rebasePhase.appliesTo?.(context({ spec: { push: { enabled: false } } }).spec)).toBe(false);
  });

  it("finds the rebase methods on the git reader only", () => {
    expect(rebaserOf(fakeWorkspace())).toBeDefined();
    const { baseTip: _, ...without } = fakeWorkspace();
    expect(rebaserOf(without as WorkspaceReader)).toBeUndefined();
  });
});

describe("rebase in the pipeline", () => {
  it("moved and clean: the container takes the new base, the tests run again, push commits the tested tree on the new base", async () => {
    const pack: Buffer[] = [];
    const ws = fakeWorkspace({ tip: NEW, pack });
    const run = new FakeRun();
    // with a secret, push scans what the commit adds to the new base
    const ctx = context({ ws, run, secrets: { TOKEN: "tok-0123456789" } });
    const { end, events, facts } = await pipeline(ctx);
    expect(end).toEqual({ status: "succeeded", commitSha: MOVED });
    expect(events).toEqual([
      "start test",
      "end test succeeded",
      "start rebase",
      "end rebase succeeded",
      "start push",
      "end push succeeded",
    ]);
    // the tests ran twice, the second time after the patch was applied in the container
    expect(run.ran).toEqual(["sh:npm test", "snapshot", "pack", "apply", "sh:npm test", "drop", "remove"]);
    expect(run.stdin.map(String)).toEqual([expect.stringContaining("diff --git a/f.txt")]);
    expect(Buffer.concat(pack).toString()).toBe("PACK-bytes");
    expect(ws.calls).toEqual([
      "tip main",
      "pack ≤268435456",
      `merge d a→b`,
      "diff tree-task..tree-merged",
      "commit on a",
      "move c→b",
      "scan b..e",
    ]);
    expect(ws.pushed).toEqual(["e:codefleet/tsk_rebase"]);
    expect(facts.rebase).toMatchObject({ baseSha: OLD, newBaseSha: NEW, moved: true, retested: true, filesChanged: 2 });
    expect(facts.push).toMatchObject({ commitSha: MOVED, baseSha: NEW, rebasedFrom: OLD });
    expect(ctx.record).toMatchObject({ baseSha: NEW, head: { sha: MOVED }, pushedSha: MOVED });
  });

  it("conflict: rebase_conflict with the files, and no push", async () => {
    const ws = fakeWorkspace({ tip: NEW, merge: { clean: false, files: ["src/a.ts", "b\u0007.txt"], count: 2 } });
    const ctx = context({ ws });
    const { end, events, facts } = await pipeline(ctx);
    expect(end).toMatchObject({ status: "failed", reasonCode: "rebase_conflict" });
    expect(end.reason).toContain("src/a.ts, b?.txt");
    expect(end.reason).toContain(`${OLD.slice(0, 12)} → ${NEW.slice(0, 12)}`);
    expect(events.at(-1)).toBe("end rebase failed");
    expect(events).not.toContain("start push");
    expect(facts.rebase).toMatchObject({ conflicts: 2, conflictingFiles: "src/a.ts, b?.txt", newBaseSha: NEW });
    expect(ws.pushed).toEqual([]);
    expect(ctx.run.ran).not.toContain("apply");
    expect(ctx.run.ran.filter((r) => r === "sh:npm test")).toHaveLength(1);
  });

  it("not moved: nothing runs in the container and push commits on the base it ran on", async () => {
    const ws = fakeWorkspace({ tip: OLD });
    const ctx = context({ ws });
    const { end, events, facts } = await pipeline(ctx);
    expect(end).toEqual({ status: "succeeded", commitSha: STAGED });
    expect(events).toContain("end rebase skipped");
    expect(facts.rebase).toEqual({ baseSha: OLD, baseBranch: "main", newBaseSha: OLD, moved: false });
    expect(ctx.run.ran).toEqual(["sh:npm test", "remove"]);
    expect(ws.calls).toEqual(["tip main", "commit on a"]);
  });

  it("a fixed base (a commit id) is not looked up", async () => {
    const ws = fakeWorkspace({ tip: NEW });
    const { events } = await pipeline(context({ ws, ref: OLD }));
    expect(events).toContain("end rebase skipped");
    expect(ws.calls).not.toContain("tip main");
  });

  it("tests that fail on the rebased tree end the attempt as test_failed, said to be after the rebase", async () => {
    const ws = fakeWorkspace({ tip: NEW });
    const ctx = context({ ws, run: new FakeRun({ tests: [0, 1] }) });
    const { end, events } = await pipeline(ctx);
    expect(end).toMatchObject({ status: "failed", reasonCode: "test_failed" });
    expect(end.reason).toMatch(/^after rebasing onto main at b{12}: /);
    expect(events.at(-1)).toBe("end rebase failed");
    expect(ws.pushed).toEqual([]);
  });

  it("a container without git: not rebased, pushed on the base it ran on", async () => {
    const ws = fakeWorkspace({ tip: NEW });
    const ctx = context({ ws, run: new FakeRun({ snapshot: "no-git" }) });
    const { end, facts } = await pipeline(ctx);
    expect(end).toEqual({ status: "succeeded", commitSha: STAGED });
    expect(facts.rebase).toMatchObject({ rebased: false, moved: true });
    expect(ws.calls).not.toContain("move c→b");
    expect(ctx.record.baseSha).toBe(OLD);
  });

  it("a patch the container cannot apply ends the attempt (its tree may be half changed)", async () => {
    const ws = fakeWorkspace({ tip: NEW });
    const { end } = await pipeline(context({ ws, run: new FakeRun({ apply: false }) }));
    expect(end).toMatchObject({ status: "failed", reasonCode: "rebase_conflict" });
    expect(end.reason).toContain("patch failed: f.txt:2");
    expect(ws.pushed).toEqual([]);
  });

  it("a task that changed nothing has nothing to rebase", async () => {
    const ws = fakeWorkspace({ tip: NEW, unchangedTree: true });
    const ctx = context({ ws });
    const { events } = await pipeline(ctx);
    expect(events).toContain("end rebase skipped");
    expect(ws.calls).not.toContain("merge d a→b");
    expect(ctx.record.rebase).toBeUndefined();
  });

  it("without tests: push merges the change onto the new base, and a conflict there is rebase_conflict", async () => {
    const clean = fakeWorkspace({ tip: NEW });
    const ctx = context({ ws: clean, spec: { test: undefined } });
    const first = await runPipeline([rebasePhase, pushPhase], ctx, {
      publish: async () => undefined,
      stoppedBy: () => undefined,
      traceContext: otelContext.active(),
      log: createLogger({ service: "test", level: "silent" }),
    });
    expect(first).toEqual({ status: "succeeded", commitSha: REBASED });
    expect(ctx.run.ran).toEqual(["remove"]);
    expect(clean.calls).toEqual(["tip main", "commit on a", "rebase c a→b"]);

    const conflicting = fakeWorkspace({ tip: NEW, rebase: { kind: "conflict", files: ["x.txt"], count: 1 } });
    const c2 = context({ ws: conflicting, spec: { test: undefined } });
    const second = await runPipeline([rebasePhase, pushPhase], c2, {
      publish: async () => undefined,
      stoppedBy: () => undefined,
      traceContext: otelContext.active(),
      log: createLogger({ service: "test", level: "silent" }),
    });
    expect(second).toMatchObject({ status: "failed", reasonCode: "rebase_conflict" });
    expect(second.reason).toContain("x.txt");
    expect(conflicting.pushed).toEqual([]);
    // the attempt's diff is still the change on the base it ran on
    expect(c2.record).toMatchObject({ baseSha: OLD, head: { sha: STAGED } });
  });

  it("opting out leaves the phase out: pushed on the base it ran on", async () => {
    const ws = fakeWorkspace({ tip: NEW });
    const { end, events } = await pipeline(context({ ws, spec: { push: { enabled: true, rebase: false } } }));
    expect(end).toEqual({ status: "succeeded", commitSha: STAGED });
    expect(events.some((e) => e.includes("rebase"))).toBe(false);
  });
});

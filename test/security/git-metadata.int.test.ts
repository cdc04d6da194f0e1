import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { commitFile, git } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Platform, PROBE_STEPS, type RemoteState, scriptTask, startPlatform } from "./platform.js";

/**
 * Everything an agent writes into its workspace, `.git` included, is hostile. Each vector is a
 * task submitted through the public API as an attacker would; after it: no marker on the host
 * (nothing ran outside the container), the remote changed only by the task's own branch (and the
 * probe's), the pushed commit holds what the tree held and nothing more, and the next task on the
 * same slot finds a clean tree and a fresh git of its own.
 */

let p: Platform;

beforeAll(async () => {
  p = await startPlatform({ databaseUrl: inject("databaseUrl"), natsUrl: inject("natsUrl") });
}, 240_000);

afterAll(async () => {
  await p?.stop();
});

/** A hook script that leaves a marker (and who ran it) if it ever runs on the host. */
const hook = (name: string) => `#!/bin/sh\nid > ${join("MARKERS", name)}\n`;

type Vector = {
  name: string;
  /** Shell steps in /workspace; MARKERS is replaced by the marker directory's host path. */
  steps: string[];
  /** Extra checks of the finished task. */
  check?: (ctx: { taskId: string; status: string; reasonCode?: string; commit?: string }) => Promise<void>;
  /** Host-side preparation (e.g. a git dir a `gitdir:` file points to). */
  prepare?: () => void;
};

const CHANGE = "echo changed by the task > CHANGED.txt";
const hookInstall = (names: string[], dir = ".git/hooks") =>
  names.map((n) => `mkdir -p ${dir} && printf '%s' '${hook(n)}' > ${dir}/${n} && chmod +x ${dir}/${n}`).join("\n");
const ALL_HOOKS = [
  "pre-push",
  "post-checkout",
  "prepare-commit-msg",
  "reference-transaction",
  "pre-commit",
  "commit-msg",
  "post-commit",
  "post-index-change",
  "pre-auto-gc",
  "post-rewrite",
  "push-to-checkout",
];

const vectors: Vector[] = [
  { name: "a pre-push hook", steps: [hookInstall(["pre-push"]), CHANGE] },
  { name: "a post-checkout hook", steps: [hookInstall(["post-checkout"]), CHANGE] },
  { name: "a prepare-commit-msg hook", steps: [hookInstall(["prepare-commit-msg"]), CHANGE] },
  { name: "a reference-transaction hook", steps: [hookInstall(["reference-transaction"]), CHANGE] },
  {
    name: "core.hooksPath pointing at hooks in the tree",
    steps: [hookInstall(ALL_HOOKS, "/workspace/.hooks"), "git config core.hooksPath /workspace/.hooks", CHANGE],
  },
  { name: "core.fsmonitor", steps: ["git config core.fsmonitor 'id > MARKERS/fsmonitor'", CHANGE] },
  {
    name: "a filter driver through .gitattributes and config",
    steps: [
      "printf '* filter=evil\\n' > .gitattributes",
      "git config filter.evil.clean 'sh -c \"id > MARKERS/filter-clean; cat\"'",
      "git config filter.evil.smudge 'sh -c \"id > MARKERS/filter-smudge; cat\"'",
      "git config filter.evil.required true",
      "git config diff.evil.textconv 'sh -c \"id > MARKERS/textconv; cat\"'",
      "printf '* diff=evil\\n' >> .gitattributes",
      CHANGE,
    ],
    // the attributes file is the task's content: committed as data, never acted on
    check: async ({ commit }) => {
      expect(await git(p.repo.bare, "show", `${commit}:.gitattributes`)).toContain("filter=evil");
    },
  },
  {
    name: "url.*.insteadOf redirecting the push",
    steps: [
      `git config url.file://MARKERS/stolen.git.insteadOf ${"GITURL"}`,
      "git config --add url.file://MARKERS/stolen.git.pushInsteadOf git://",
      CHANGE,
    ],
  },
  {
    name: "remote.origin.pushurl",
    steps: ["git remote add origin GITURL 2>/dev/null || true", "git config remote.origin.pushurl file://MARKERS/stolen.git", CHANGE],
  },
  {
    name: "include.path and includeIf",
    steps: [
      `printf '[core]\\n\\tfsmonitor = id > MARKERS/include\\n\\thooksPath = /workspace/.hooks\\n' > /workspace/evil.cfg`,
      hookInstall(ALL_HOOKS, "/workspace/.hooks"),
      "git config include.path /workspace/evil.cfg",
      "git config includeIf.gitdir:/.path /workspace/evil.cfg",
      CHANGE,
    ],
  },
  {
    name: "git metadata files replaced by symlinks to host paths",
    steps: [
      "ln -sf MARKERS/commit-msg-written .git/CODEFLEET_COMMIT_MSG",
      "ln -sf MARKERS/config-read .git/config.lock",
      "rm -f .git/index && ln -s MARKERS/index-written .git/index",
      "ln -sf MARKERS/head-written .git/ORIG_HEAD",
      "rm -f .git/HEAD && ln -s /etc/shadow .git/HEAD",
      CHANGE,
    ],
  },
  {
    name: ".git replaced by a symlink",
    prepare: () => {
      // a git directory on the host the symlink points to, with a hook that leaves a marker
      const evil = join(p.markers, "..", "evil-gitdir");
      mkdirSync(join(evil, "hooks"), { recursive: true });
      writeFileSync(join(evil, "hooks", "pre-push"), hook("symlinked-gitdir"), { mode: 0o755 });
    },
    steps: ["rm -rf .git", "ln -s MARKERS/../evil-gitdir .git", CHANGE],
  },
  {
    name: "a .git file with gitdir: pointing at another repository",
    steps: ["rm -rf .git", "printf 'gitdir: MARKERS/../evil-gitdir\\n' > .git", CHANGE],
  },
  {
    name: "a nested repository with hooks, fsmonitor and a HEAD symlinked to /dev/zero",
    steps: [
      "mkdir -p sub && cd sub && git init -q && git config core.fsmonitor 'id > MARKERS/nested-fsmonitor'",
      `cd sub && ${hookInstall(ALL_HOOKS)}`,
      "cd sub && rm -f .git/HEAD && ln -s /dev/zero .git/HEAD",
      "echo nested > sub/file.txt",
      CHANGE,
    ],
    // never a .git in the commit (and the runner did not hang reading /dev/zero)
    check: async ({ status, commit }) => {
      expect(status).toBe("succeeded");
      expect(await git(p.repo.bare, "ls-tree", "-r", "--name-only", commit as string)).not.toContain(".git");
    },
  },
  {
    name: "symlinks in the tree to host files (committed as links, never followed)",
    steps: ["ln -s /etc/shadow shadow-link", "rm -rf src && ln -s /etc src", CHANGE],
    check: async ({ commit }) => {
      expect(await git(p.repo.bare, "cat-file", "-p", `${commit}:shadow-link`)).toBe("/etc/shadow");
      expect(await git(p.repo.bare, "cat-file", "-p", `${commit}:src`)).toBe("/etc");
      const files = await git(p.repo.bare, "ls-tree", "-r", "--name-only", commit as string);
      expect(files).not.toContain("src/app.sh");
      expect(files).not.toContain("passwd");
    },
  },
];

describe("nothing an agent writes in its workspace runs or is trusted outside its container", () => {
  for (const v of vectors) {
    it(`${v.name}`, async () => {
      v.prepare?.();
      const before = await p.remoteState();
      const url = p.daemon.url("sample.git");
      const steps = v.steps.map((s) => s.replaceAll("MARKERS", p.markers).replaceAll("GITURL", url));
      const taskId = await p.submitOk(scriptTask(p, steps, { test: { command: "test -f CHANGED.txt" } }));
      const view = await p.finished(taskId);
      const commit = view.commitSha;
      if (!v.check) expect(view.status, `${view.failureReason ?? ""}\n${await p.artifactText(view, "task.log")}`).toBe("succeeded");
      await v.check?.({
        taskId,
        status: view.status,
        ...(view.reasonCode ? { reasonCode: view.reasonCode } : {}),
        ...(commit ? { commit } : {}),
      });
      if (commit) expect(await git(p.repo.bare, "show", `${commit}:CHANGED.txt`)).toBe("changed by the task");

      // the next task on the same slot: a clean tree, a fresh git
      const probeId = await p.submitOk(scriptTask(p, PROBE_STEPS));
      const probe = await p.finished(probeId);
      expect(probe.status, `${probe.failureReason ?? ""}\n${await p.artifactText(probe, "task.log")}`).toBe("succeeded");

      expect(p.markersFound()).toEqual([]);
      expectOnlyOwnBranches(before, await p.remoteState(), [taskId, probeId]);
    }, 120_000);
  }
});

describe("a rebase onto a moved base reads the agent's work only as data", () => {
  it("rebases past planted hooks, fsmonitor, a host symlink and a process still rewriting the tree: nothing runs on the host", async () => {
    const steps = [
      hookInstall(ALL_HOOKS),
      "git config core.fsmonitor 'id > MARKERS/rebase-fsmonitor'",
      "printf '* filter=evil\\n' > .gitattributes && git config filter.evil.clean 'sh -c \"id > MARKERS/rebase-filter; cat\"'",
      "ln -s /etc/shadow shadow-link",
      CHANGE,
      // still running while the tests, the snapshot and the patch happen
      "(while true; do echo rewritten > REWRITTEN.txt; sleep 0.05; done) > /dev/null 2>&1 &",
      "sleep 4",
    ].map((step) => step.replaceAll("MARKERS", p.markers));
    const taskId = await p.submitOk(scriptTask(p, steps, { test: { command: "test -f CHANGED.txt" } }));
    const phase = async () =>
      (
        (await (await fetch(`${p.registryUrl}/v1/tasks/${taskId}`, { headers: { authorization: `Bearer ${p.token}` } })).json()) as {
          currentPhase?: string;
        }
      ).currentPhase;
    for (let i = 0; i < 300 && (await phase()) !== "implement"; i++) await new Promise((r) => setTimeout(r, 100));
    const moved = await commitFile(p.repo, "UPSTREAM.txt", "upstream\n", "the base moves on");
    const view = await p.finished(taskId);
    expect(["succeeded", "failed"]).toContain(view.status);
    if (view.status === "failed") expect(view.reasonCode).toBe("rebase_conflict");
    else {
      const commit = view.commitSha as string;
      expect(await git(p.repo.bare, "rev-parse", `${commit}^`)).toBe(moved);
      expect(await git(p.repo.bare, "show", `${commit}:UPSTREAM.txt`)).toBe("upstream");
      expect(await git(p.repo.bare, "show", `${commit}:CHANGED.txt`)).toBe("changed by the task");
      expect(await git(p.repo.bare, "cat-file", "-p", `${commit}:shadow-link`)).toBe("/etc/shadow");
      expect(await git(p.repo.bare, "ls-tree", "-r", "--name-only", commit)).not.toMatch(/(^|\/)\.git(\/|$)/m);
    }
    expect(p.markersFound()).toEqual([]);
  }, 120_000);
});

function expectOnlyOwnBranches(before: RemoteState, after: RemoteState, taskIds: string[]): void {
  expect(after.configHash).toBe(before.configHash);
  expect(after.hooks).toEqual(before.hooks);
  const added = [...after.refs.keys()].filter((r) => !before.refs.has(r));
  const changed = [...before.refs].filter(([r, sha]) => after.refs.get(r) !== sha).map(([r]) => r);
  expect(changed).toEqual([]);
  for (const ref of added) expect(taskIds.map((id) => `refs/heads/codefleet/${id}`)).toContain(ref);
}

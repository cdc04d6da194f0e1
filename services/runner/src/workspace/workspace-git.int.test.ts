import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type SlotLayout, slotLayout } from "@codefleet/contracts";
import { SecretMasker } from "@codefleet/platform/runtime";
import { ASKPASS_SCRIPT, createGitRunner, GitError, type GitRunner, GLOBAL_GIT_CONFIG } from "@codefleet/repo-pool/git";
import { commitFile, createTestRepo, git, type TestRepo } from "@codefleet/test/support";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ExecOptions, ExecResult, RunHandle } from "../execution/driver.js";
import { applyInContainer, type ContainerPaths, dropSnapshot, packFromContainer, snapshotInContainer } from "./container-rebase.js";
import { WorkspaceGit } from "./workspace-git.js";

/**
 * The runner's rebase on real repositories: a bare remote whose main moves while the "task" works
 * in a slot laid out as repo-pool lays it out; the runner's hardened git reads the tree as data.
 * The container's half (container-rebase.ts) runs here as host processes with the slot's paths
 * in place of the container's (the scripts take them as arguments).
 */

const LINES = `${Array.from({ length: 12 }, (_, i) => `line ${i + 1}`).join("\n")}\n`;
const edit = (n: number, to: string) =>
  LINES.split("\n")
    .map((l, i) => (i === n - 1 ? to : l))
    .join("\n");
const author = { name: "Codefleet Bot", email: "bot@codefleet.test" };
const message = "Fix the thing\n\nCodefleet-Task: tsk_rebase\nCodefleet-Attempt: 1\n";

let runner: GitRunner;
let support: string;
beforeAll(() => {
  support = mkdtempSync(join(tmpdir(), "cf-wsgit-support-"));
  writeFileSync(join(support, "askpass"), ASKPASS_SCRIPT, { mode: 0o700 });
  writeFileSync(join(support, "gitconfig"), GLOBAL_GIT_CONFIG);
  runner = createGitRunner({
    askPassPath: join(support, "askpass"),
    masker: new SecretMasker([]),
    globalConfigPath: join(support, "gitconfig"),
  });
});

type Slot = { remote: TestRepo; layout: SlotLayout; base: string; ws: WorkspaceGit; scratch: string; paths: ContainerPaths };
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A remote with `files` on main, and a slot at its tip: bare git dir, tree, the tree's index. */
async function slot(files: Record<string, string> = { "f.txt": LINES, "README.md": "# sample\n" }): Promise<Slot> {
  const remote = await createTestRepo(files);
  const root = mkdtempSync(join(tmpdir(), "cf-wsgit-"));
  cleanups.push(
    () => remote.cleanup(),
    () => rmSync(root, { recursive: true, force: true }),
  );
  const layout = slotLayout(join(root, "slot"));
  mkdirSync(layout.tree, { recursive: true });
  mkdirSync(layout.indexDir, { recursive: true });
  await git(root, "clone", "--quiet", "--bare", remote.bare, layout.gitDir);
  const base = await git(layout.gitDir, "rev-parse", "main");
  await git(layout.gitDir, "update-ref", "--no-deref", "HEAD", base);
  await gitEnv({ GIT_DIR: layout.gitDir, GIT_WORK_TREE: layout.tree, GIT_INDEX_FILE: layout.index }, "read-tree", "-u", "--reset", base);
  const scratch = join(root, "scratch");
  const ws = await WorkspaceGit.open(runner, layout, scratch);
  const paths = { workspace: layout.tree, baseObjects: join(layout.gitDir, "objects"), baseIndex: layout.index };
  return { remote, layout, base, ws, scratch, paths };
}

async function gitEnv(env: Record<string, string>, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", ["-c", "safe.directory=*", ...args], { env: { ...process.env, ...env } });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c;
    });
    child.stderr.on("data", (c: Buffer) => {
      err += c;
    });
    child.on("close", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`git ${args.join(" ")}: ${err}`))));
  });
}

/** git with `input` on stdin (in `cwd`, its objects with the slot's as alternates when given). */
function pipeGitBuffer(cwd: string, input: string, ...args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", ["-c", "safe.directory=*", ...args], {
      cwd,
      env: { ...process.env, GIT_AUTHOR_NAME: "f", GIT_AUTHOR_EMAIL: "f@x", GIT_COMMITTER_NAME: "f", GIT_COMMITTER_EMAIL: "f@x" },
    });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => {
      err += c;
    });
    child.stdin.end(input);
    child.on("close", (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`git ${args.join(" ")}: ${err}`))));
  });
}
const pipeGit = async (cwd: string, input: string, ...args: string[]) => (await pipeGitBuffer(cwd, input, ...args)).toString().trim();

/** Reads an object of the attempt's store (the scratch objects, the slot's as an alternate). */
const show = (s: Slot, ...args: string[]) =>
  gitEnv(
    {
      GIT_DIR: s.layout.gitDir,
      GIT_OBJECT_DIRECTORY: join(s.scratch, "objects"),
      GIT_ALTERNATE_OBJECT_DIRECTORIES: join(s.layout.gitDir, "objects"),
    },
    ...args,
  );

function write(s: Slot, path: string, content: string): void {
  mkdirSync(dirname(join(s.layout.tree, path)), { recursive: true });
  writeFileSync(join(s.layout.tree, path), content);
}

/** The task's commit of the tree on the slot's base, as push makes it. */
async function taskCommit(s: Slot): Promise<string> {
  await s.ws.stage();
  const c = await s.ws.commit(message, author, s.base);
  expect(c.changed).toBe(true);
  return c.sha;
}

describe("WorkspaceGit: the base branch's tip", () => {
  it("is the slot's base while main has not moved, and nothing when the branch is not there", async () => {
    const s = await slot();
    expect(await s.ws.baseTip(s.remote.fileUrl, "main")).toBe(s.base);
    expect(await s.ws.baseTip(s.remote.fileUrl, "no-such-branch")).toBeUndefined();
    // a branch whose name ends like another's is not it
    await git(s.remote.work, "push", "--quiet", "origin", "HEAD:refs/heads/x/main");
    expect(await s.ws.baseTip(s.remote.fileUrl, "main")).toBe(s.base);
  });

  it("is fetched into the attempt's store when main moved, writing nothing into the slot's git", async () => {
    const s = await slot();
    const refsBefore = await git(s.layout.gitDir, "for-each-ref");
    const moved = await commitFile(s.remote, "upstream.txt", "from upstream\n");
    expect(await s.ws.baseTip(s.remote.fileUrl, "main")).toBe(moved);
    expect(await show(s, "cat-file", "-t", moved)).toBe("commit");
    expect(await git(s.layout.gitDir, "for-each-ref")).toBe(refsBefore);
    expect(existsSync(join(s.layout.gitDir, "FETCH_HEAD"))).toBe(false);
    await expect(git(s.layout.gitDir, "cat-file", "-e", moved)).rejects.toThrow();
  });
});

describe("WorkspaceGit.rebase", () => {
  it("puts the change on top of the moved base: both changes in the tree, message, trailer and author kept", async () => {
    const s = await slot();
    write(s, "f.txt", edit(9, "line 9 by the task"));
    write(s, "src/new.ts", "export const x = 1;\n");
    const head = await taskCommit(s);
    await commitFile(s.remote, "f.txt", edit(2, "line 2 upstream"));
    const onto = await commitFile(s.remote, "docs/upstream.md", "upstream docs\n");
    expect(await s.ws.baseTip(s.remote.fileUrl, "main")).toBe(onto);

    const r = await s.ws.rebase(head, s.base, onto, { name: "Runner", email: "runner@codefleet.test" });
    expect(r).toMatchObject({ kind: "rebased", changed: true });
    const sha = (r as { sha: string }).sha;
    expect(await show(s, "rev-parse", `${sha}^`)).toBe(onto);
    expect(await show(s, "rev-list", "--count", `${onto}..${sha}`)).toBe("1");
    const f = await show(s, "show", `${sha}:f.txt`);
    expect(f).toContain("line 2 upstream");
    expect(f).toContain("line 9 by the task");
    expect(await show(s, "show", `${sha}:src/new.ts`)).toBe("export const x = 1;");
    expect(await show(s, "show", `${sha}:docs/upstream.md`)).toBe("upstream docs");
    expect(`${await show(s, "log", "-1", "--format=%B", sha)}\n`).toBe(message);
    expect(await show(s, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha)).toBe(
      "Codefleet Bot <bot@codefleet.test>|Runner <runner@codefleet.test>",
    );
    expect(await show(s, "log", "-1", "--format=%at", sha)).toBe(await show(s, "log", "-1", "--format=%at", head));

    // and it pushes: the remote's branch is one commit on top of the new main
    await s.ws.push(s.remote.fileUrl, sha, "codefleet/tsk_rebase");
    expect(await git(s.remote.bare, "rev-parse", "codefleet/tsk_rebase^")).toBe(onto);
  });

  it("lists the conflicting files, and writes nothing when it conflicts", async () => {
    const s = await slot({ "f.txt": LINES, "g.txt": "g\n", "README.md": "# sample\n" });
    write(s, "f.txt", edit(2, "line 2 by the task"));
    write(s, "g.txt", "g by the task\n");
    write(s, "both-added.txt", "the task's\n");
    write(s, "README.md", "# sample\n\nmore from the task\n");
    const head = await taskCommit(s);
    await commitFile(s.remote, "f.txt", edit(2, "line 2 upstream"));
    await commitFile(s.remote, "g.txt", "g upstream\n");
    const onto = await commitFile(s.remote, "both-added.txt", "upstream's\n");
    await s.ws.baseTip(s.remote.fileUrl, "main");
    const r = await s.ws.rebase(head, s.base, onto, author);
    expect(r).toEqual({ kind: "conflict", files: ["both-added.txt", "f.txt", "g.txt"], count: 3 });
    // README.md changed on one side only: not a conflict
  });

  it("changes nothing when the base has not moved, and knows when the base already has the change", async () => {
    const s = await slot();
    write(s, "f.txt", edit(5, "line 5 by the task"));
    const head = await taskCommit(s);
    const same = await s.ws.rebase(head, s.base, s.base, author);
    // the same tree on the same base: a new commit of the same change (push keeps its own commit then)
    expect(same).toMatchObject({ kind: "rebased", changed: true });
    expect(await show(s, "rev-parse", `${(same as { sha: string }).sha}^{tree}`)).toBe(await show(s, "rev-parse", `${head}^{tree}`));
    // upstream made the very same change: nothing is left to push
    const onto = await commitFile(s.remote, "f.txt", edit(5, "line 5 by the task"));
    await s.ws.baseTip(s.remote.fileUrl, "main");
    expect(await s.ws.rebase(head, s.base, onto, author)).toEqual({ kind: "rebased", sha: onto, changed: false });
  });

  it("takes a tree that already holds the new base's changes onto it as it is (push after the rebase phase)", async () => {
    const s = await slot();
    await commitFile(s.remote, "f.txt", edit(2, "line 2 upstream"));
    const onto = await commitFile(s.remote, "gone.txt", "x\n");
    await git(s.remote.work, "rm", "--quiet", "gone.txt");
    await git(s.remote.work, "commit", "--quiet", "-m", "rm");
    await git(s.remote.work, "push", "--quiet", "origin", "HEAD:main");
    const tip = await git(s.remote.work, "rev-parse", "HEAD");
    expect(onto).not.toBe(tip);
    await s.ws.baseTip(s.remote.fileUrl, "main");
    // the tree as the container left it: the task's change and main's, applied
    write(s, "f.txt", edit(5, "line 5 by the task").replace("line 2\n", "line 2 upstream\n"));
    const head = await taskCommit(s);
    const r = await s.ws.rebase(head, s.base, tip, author);
    expect(r).toMatchObject({ kind: "rebased", changed: true });
    expect(await show(s, "rev-parse", `${(r as { sha: string }).sha}^{tree}`)).toBe(await show(s, "rev-parse", `${head}^{tree}`));
    // what push does once the tests ran on that tree: the tree as it is, on the new tip
    const moved = await s.ws.moveOnto(head, tip, author);
    expect(moved.changed).toBe(true);
    expect(await show(s, "rev-parse", `${moved.sha}^`)).toBe(tip);
    expect(await show(s, "rev-parse", `${moved.sha}^{tree}`)).toBe(await show(s, "rev-parse", `${head}^{tree}`));
    expect(`${await show(s, "log", "-1", "--format=%B", moved.sha)}\n`).toBe(message);
  });

  it("works on a base branch that was force-pushed (the merge base is the old base, whatever the history)", async () => {
    const s = await slot();
    write(s, "f.txt", edit(10, "line 10 by the task"));
    const head = await taskCommit(s);
    // main rewritten: a new root commit with the old content and a change
    await git(s.remote.work, "checkout", "--quiet", "--orphan", "rewritten");
    writeFileSync(join(s.remote.work, "f.txt"), edit(1, "line 1 rewritten"));
    await git(s.remote.work, "add", "-A");
    await git(s.remote.work, "commit", "--quiet", "-m", "rewritten");
    await git(s.remote.work, "push", "--quiet", "--force", "origin", "HEAD:main");
    const onto = await git(s.remote.work, "rev-parse", "HEAD");
    expect(await s.ws.baseTip(s.remote.fileUrl, "main")).toBe(onto);
    const r = await s.ws.rebase(head, s.base, onto, author);
    const f = await show(s, "show", `${(r as { sha: string }).sha}:f.txt`);
    expect(f).toContain("line 1 rewritten");
    expect(f).toContain("line 10 by the task");
  });
});

describe("WorkspaceGit.rebase on a hostile tree: data only", () => {
  it("keeps symlinks as links, never reads a .git of the agent's, and takes huge names as they are", async () => {
    const s = await slot();
    const marker = join(support, `marker-${Date.now()}`);
    // the agent's own .git, with a hook and fsmonitor that would leave a marker if they ever ran
    mkdirSync(join(s.layout.tree, ".git", "hooks"), { recursive: true });
    writeFileSync(join(s.layout.tree, ".git", "config"), `[core]\n\tfsmonitor = touch ${marker}\n\thooksPath = .git/hooks\n`);
    for (const h of ["pre-commit", "post-merge", "reference-transaction", "post-rewrite"])
      writeFileSync(join(s.layout.tree, ".git", "hooks", h), `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
    // a nested repository, a gitdir file, symlinks out of the tree and a directory replaced by one
    mkdirSync(join(s.layout.tree, "vendor", "nested"), { recursive: true });
    await git(join(s.layout.tree, "vendor", "nested"), "init", "--quiet");
    writeFileSync(join(s.layout.tree, "vendor", "nested", ".git", "config"), `[core]\n\tfsmonitor = touch ${marker}\n`);
    writeFileSync(join(s.layout.tree, "vendor", "nested", "x"), "x\n");
    mkdirSync(join(s.layout.tree, "sub"));
    writeFileSync(join(s.layout.tree, "sub", ".git"), "gitdir: /etc\n");
    symlinkSync("/etc/passwd", join(s.layout.tree, "passwd-link"));
    symlinkSync("/etc", join(s.layout.tree, "etc-link"));
    // a name of 255 bytes, three levels deep (~770 bytes of path)
    const long = "n".repeat(250);
    const longPath = `${long}.d/${long}.d/${long}.txt`;
    write(s, longPath, "long\n");
    write(s, "f.txt", edit(11, "line 11 by the task"));
    const head = await taskCommit(s);

    await commitFile(s.remote, "f.txt", edit(1, "line 1 upstream"));
    const onto = await commitFile(s.remote, "passwd-link", "upstream made a file of this name\n");
    await s.ws.baseTip(s.remote.fileUrl, "main");
    // the task's symlink and upstream's file of the same name conflict: listed, never followed
    const clash = await s.ws.rebase(head, s.base, onto, author);
    // merge-tree lists the path, and where it put the other side of the clash
    expect(clash).toMatchObject({ kind: "conflict", files: ["passwd-link", expect.stringMatching(/^passwd-link~[0-9a-f]{40}$/)] });

    // without that clash the rebase goes through, with the links as links
    rmSync(join(s.layout.tree, "passwd-link"));
    const head2 = await (async () => {
      await s.ws.stage();
      return (await s.ws.commit(message, author, s.base)).sha;
    })();
    const r = await s.ws.rebase(head2, s.base, onto, author);
    expect(r.kind).toBe("rebased");
    const sha = (r as { sha: string }).sha;
    const entries = await show(s, "ls-tree", "-r", "--full-tree", sha);
    expect(entries).toMatch(/^120000 blob \w+\tetc-link$/m);
    expect(await show(s, "cat-file", "-p", `${sha}:etc-link`)).toBe("/etc");
    expect(await show(s, "show", `${sha}:${longPath}`)).toBe("long");
    expect(entries).not.toMatch(/(^|\/)\.git(\/|$)/m);
    expect(entries).not.toContain("vendor/nested");
    expect(await show(s, "show", `${sha}:passwd-link`)).toBe("upstream made a file of this name");
    expect(existsSync(marker)).toBe(false);
  });

  it("lists a conflict on a huge name, bounded", async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 300; i++) files[`${"d".repeat(200)}/${String(i).padStart(3, "0")}-${"x".repeat(240)}`] = "base\n";
    const s = await slot(files);
    for (const p of Object.keys(files)) write(s, p, "task\n");
    const head = await taskCommit(s);
    for (const p of Object.keys(files)) writeFileSync(join(s.remote.work, p), "upstream\n");
    await git(s.remote.work, "commit", "--quiet", "-am", "upstream");
    await git(s.remote.work, "push", "--quiet", "origin", "HEAD:main");
    const onto = await git(s.remote.work, "rev-parse", "HEAD");
    await s.ws.baseTip(s.remote.fileUrl, "main");
    const r = await s.ws.rebase(head, s.base, onto, author);
    expect(r.kind).toBe("conflict");
    const c = r as { files: string[]; count: number };
    expect(c.count).toBe(300);
    expect(c.files.length).toBe(200);
    expect(c.files[0]).toBe(Object.keys(files).sort()[0]);
  });
});

/** The container's side, run on the host: the scripts with the slot's paths for the container's. */
class HostRun implements Pick<RunHandle, "exec"> {
  readonly ran: string[][] = [];
  async exec(cmd: string[], opts: ExecOptions): Promise<ExecResult> {
    this.ran.push(cmd);
    const t0 = Date.now();
    return new Promise((resolve) => {
      const child = spawn(cmd[0] as string, cmd.slice(1), { env: { PATH: process.env.PATH, HOME: support, ...opts.env } });
      const kill = () => child.kill("SIGKILL");
      opts.signal?.addEventListener("abort", kill, { once: true });
      child.stdout.on("data", (c: Buffer) => opts.onOutput?.("stdout", c));
      child.stderr.on("data", (c: Buffer) => opts.onOutput?.("stderr", c));
      child.stdin.on("error", () => undefined);
      child.on("error", () => undefined);
      child.stdin.end(opts.stdin ?? "");
      child.on("close", (code) => {
        opts.signal?.removeEventListener("abort", kill);
        resolve({
          exitCode: code ?? 137,
          timedOut: false,
          idleTimedOut: false,
          canceled: opts.signal?.aborted ?? false,
          durationMs: Date.now() - t0,
        });
      });
    });
  }
}

describe("the container's half: snapshot, pack, merge, apply", () => {
  const o = (s: Slot, signal = new AbortController().signal) => ({ signal, timeoutMs: 60_000, paths: s.paths });

  it("brings the tree to the rebased one: the runner merges the container's snapshot, the container applies the patch", async () => {
    const s = await slot();
    write(s, "f.txt", edit(8, "line 8 by the task"));
    write(s, "bin.dat", "\u0000\u0001binary from the task\u0000");
    write(s, "ignored.log", "not staged\n");
    write(s, ".gitignore", "*.log\n");
    await commitFile(s.remote, "f.txt", edit(3, "line 3 upstream"));
    await git(s.remote.work, "rm", "--quiet", "README.md");
    await git(s.remote.work, "commit", "--quiet", "-m", "rm readme");
    await git(s.remote.work, "push", "--quiet", "origin", "HEAD:main");
    const onto = await commitFile(s.remote, "assets/logo.bin", "\u0000\u00ffupstream binary");
    expect(await s.ws.baseTip(s.remote.fileUrl, "main")).toBe(onto);

    const run = new HostRun();
    const snap = await snapshotInContainer(run, s.base, o(s));
    if (!snap.ok) throw new Error(snap.detail);
    await s.ws.importPack((w) => packFromContainer(run, snap.snapshot, s.base, w, o(s)), 64 * 1024 * 1024);
    const headTree = await s.ws.treeOf(snap.snapshot.commit);
    expect(await show(s, "ls-tree", "--name-only", headTree)).toBe([".gitignore", "README.md", "bin.dat", "f.txt"].join("\n"));
    const merged = await s.ws.mergeOnto(snap.snapshot.commit, s.base, onto);
    if (!merged.clean) throw new Error("conflict");
    const patch = await s.ws.treeDiff(headTree, merged.tree, 1024 * 1024);
    expect(patch).toBeDefined();
    expect(await applyInContainer(run, snap.snapshot, patch as Buffer, o(s))).toEqual({ ok: true, detail: "" });
    await dropSnapshot(run, snap.snapshot, o(s));
    expect(existsSync(snap.snapshot.dir)).toBe(false);

    const f = readFileSync(join(s.layout.tree, "f.txt"), "utf8");
    expect(f).toContain("line 3 upstream");
    expect(f).toContain("line 8 by the task");
    expect(existsSync(join(s.layout.tree, "README.md"))).toBe(false);
    expect(readFileSync(join(s.layout.tree, "assets/logo.bin"))).toEqual(Buffer.from("\u0000\u00ffupstream binary"));
    expect(readFileSync(join(s.layout.tree, "ignored.log"), "utf8")).toBe("not staged\n");
    // push's own staging and rebase of that tree: the same tree, one commit on top of main
    const head = await taskCommit(s);
    const r = await s.ws.rebase(head, s.base, onto, author);
    expect(await show(s, "rev-parse", `${(r as { sha: string }).sha}^{tree}`)).toBe(merged.tree);
  });

  it("applies all of the patch or nothing when the tree changed after the snapshot", async () => {
    const s = await slot({ "a.txt": "a\n", "b.txt": "b\n" });
    await commitFile(s.remote, "a.txt", "a upstream\n");
    const onto = await commitFile(s.remote, "b.txt", "b upstream\n");
    await s.ws.baseTip(s.remote.fileUrl, "main");
    write(s, "c.txt", "c\n");
    const run = new HostRun();
    const snap = await snapshotInContainer(run, s.base, o(s));
    if (!snap.ok) throw new Error(snap.detail);
    await s.ws.importPack((w) => packFromContainer(run, snap.snapshot, s.base, w, o(s)), 1 << 20);
    const merged = await s.ws.mergeOnto(snap.snapshot.commit, s.base, onto);
    if (!merged.clean) throw new Error("conflict");
    const patch = await s.ws.treeDiff(await s.ws.treeOf(snap.snapshot.commit), merged.tree, 1 << 20);
    write(s, "b.txt", "changed after the snapshot\n");
    const applied = await applyInContainer(run, snap.snapshot, patch as Buffer, o(s));
    expect(applied.ok).toBe(false);
    expect(applied.detail).toContain("b.txt");
    expect(readFileSync(join(s.layout.tree, "a.txt"), "utf8")).toBe("a\n");
  });

  it("stops a snapshot over the cap, refuses what is not a pack, and leaves nothing behind", async () => {
    const s = await slot();
    write(s, "big.bin", Buffer.alloc(300_000, 7).toString("binary") + Math.random());
    const run = new HostRun();
    const snap = await snapshotInContainer(run, s.base, o(s));
    if (!snap.ok) throw new Error(snap.detail);
    const tooLarge = s.ws.importPack((w) => packFromContainer(run, snap.snapshot, s.base, w, o(s)), 100);
    await expect(tooLarge).rejects.toMatchObject({ code: "snapshot_too_large" });
    for (const junk of [Buffer.from("PACK not really"), Buffer.alloc(4096, 0), Buffer.from("")]) {
      const bad = s.ws.importPack(async (w) => void w(junk), 1 << 20);
      await expect(bad).rejects.toBeInstanceOf(GitError);
    }
    const packs = join(s.scratch, "objects", "pack");
    expect(existsSync(packs) ? readdirSync(packs) : []).toEqual([]);
    await dropSnapshot(run, snap.snapshot, o(s));
  });

  it("refuses a snapshot whose trees hold .git or .. entries (index-pack --strict), whatever the container says", async () => {
    const s = await slot();
    const forge = mkdtempSync(join(tmpdir(), "cf-forge-"));
    cleanups.push(() => rmSync(forge, { recursive: true, force: true }));
    await git(forge, "init", "--quiet");
    writeFileSync(join(forge, ".git", "objects", "info", "alternates"), `${join(s.layout.gitDir, "objects")}\n`);
    for (const name of [".git", "..", ".GIT"]) {
      const blob = await pipeGit(forge, "#!/bin/sh\ntouch /tmp/pwned\n", "hash-object", "-w", "--stdin");
      const hooks = await pipeGit(forge, `100644 blob ${blob}\tpre-commit\n`, "mktree");
      const tree = await pipeGit(forge, `040000 tree ${hooks}\t${name}\n`, "mktree", "--missing");
      const commit = await pipeGit(forge, "forged\n", "commit-tree", tree, "-p", s.base);
      // the slot's objects are the forger's too (the pack is thin against them, as the container's is)
      const pack = await pipeGitBuffer(forge, `${commit}\n^${s.base}\n`, "pack-objects", "--revs", "--stdout", "-q");
      await expect(
        s.ws.importPack(async (w) => void w(pack), 1 << 20),
        name,
      ).rejects.toMatchObject({ code: "snapshot_invalid" });
    }
  });

  it("answers no snapshot where the container has no git", async () => {
    const s = await slot();
    // a PATH with a shell and no git
    const bin = join(support, "bin-without-git");
    mkdirSync(bin, { recursive: true });
    if (!existsSync(join(bin, "sh"))) symlinkSync("/bin/sh", join(bin, "sh"));
    const run: Pick<RunHandle, "exec"> = {
      exec: (cmd, opts) => new HostRun().exec([join(bin, "sh"), ...cmd.slice(1)], { ...opts, env: { ...opts.env, PATH: bin } }),
    };
    expect(await snapshotInContainer(run, s.base, o(s))).toEqual({ ok: false, detail: "git is not installed" });
  });

  it("refuses a tree diff over its cap", async () => {
    const s = await slot();
    const onto = await commitFile(s.remote, "big.txt", "x".repeat(10_000));
    await s.ws.baseTip(s.remote.fileUrl, "main");
    expect(await s.ws.treeDiff(await s.ws.treeOf(s.base), await s.ws.treeOf(onto), 1000)).toBeUndefined();
    expect((await s.ws.treeDiff(await s.ws.treeOf(s.base), await s.ws.treeOf(onto), 100_000))?.length).toBeGreaterThan(10_000);
  });
});

import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { chown, copyFile, lstat, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import type { SlotLayout } from "@codefleet/contracts";
import { type GitCredentials, GitError, type GitRunner } from "@codefleet/repo-pool/git";
import { AddedLines } from "./added-lines.js";

export type CommitAuthor = { name: string; email: string };

/** What staging left out of the commit, and why (said in the task's log). */
export type StagingNotes = { skipped: { path: string; why: string }[] };

/**
 * The runner's git on one attempt's workspace. The agent's working tree is data: it is read
 * (never written, never trusted), and only after the task's container is gone, so nothing changes
 * under the runner's feet. The slot's git directory is read only: staging, commits and fetched
 * objects go to a scratch index and object store of the attempt's own (the slot's objects as an
 * alternate), so an attempt leaves nothing in the slot's git metadata, and the push names the
 * commit by its sha. Every call carries the hardened configuration of the git adapter (no hooks,
 * no fsmonitor, no filters or external drivers, no URL rewriting, transports by allow-list).
 */
export class WorkspaceGit {
  private constructor(
    private readonly git: GitRunner,
    private readonly layout: SlotLayout,
    private readonly scratch: string,
    private readonly owner?: { uid: number; gid: number },
  ) {}

  /**
   * @param scratchDir a directory of the runner's own for this attempt (index and objects go there).
   */
  static async open(git: GitRunner, layout: SlotLayout, scratchDir: string, owner?: { uid: number; gid: number }): Promise<WorkspaceGit> {
    const objects = join(scratchDir, "objects");
    const index = join(scratchDir, "index");
    await mkdir(objects, { recursive: true });
    // The tree's own index (written by repo-pool as the agents' uid, outside every container
    // mount) holds the stat data of the tree as checked out: staging from a copy of it hashes
    // only what changed.
    await copyFile(layout.index, index);
    // the runner's git (never root) writes both
    if (owner && process.getuid?.() === 0) for (const p of [objects, index]) await chown(p, owner.uid, owner.gid);
    return new WorkspaceGit(git, layout, scratchDir, owner);
  }

  /** Environment of commands that read the tree. */
  private get treeEnv(): Record<string, string> {
    return { ...this.objectsEnv, GIT_WORK_TREE: this.layout.tree, GIT_INDEX_FILE: join(this.scratch, "index") };
  }

  /** Environment of commands that need no tree: objects of the slot plus the attempt's own. */
  private get objectsEnv(): Record<string, string> {
    return {
      GIT_DIR: this.layout.gitDir,
      GIT_OBJECT_DIRECTORY: join(this.scratch, "objects"),
      GIT_ALTERNATE_OBJECT_DIRECTORIES: join(this.layout.gitDir, "objects"),
    };
  }

  private run(args: string[], opts: { tree?: boolean; stdin?: string; credentials?: GitCredentials; allowFile?: boolean } = {}) {
    return this.git.run(args, {
      env: opts.tree ? this.treeEnv : this.objectsEnv,
      cwd: opts.tree ? this.layout.tree : this.scratch,
      ...(opts.stdin === undefined ? {} : { stdin: opts.stdin }),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      ...(opts.allowFile ? { allowFileProtocol: true } : {}),
    });
  }

  /**
   * Stages the tree into the scratch index, as data: the paths come from git's own listing
   * (tracked, and untracked minus ignored), each is checked with lstat component by component,
   * and only regular files and symlinks (as links) are added. Nested repositories, paths below a
   * symlink, FIFOs, sockets and devices are left out and reported; git never opens a `.git`
   * the agent made.
   */
  async stage(): Promise<StagingNotes> {
    const split = (out: string) => out.split("\0").filter(Boolean);
    const tracked = split(await this.run(["ls-files", "-z", "--cached"], { tree: true }));
    const untracked = split(await this.run(["ls-files", "-z", "--others", "--exclude-standard"], { tree: true }));
    const kinds = new PathKinds(this.layout.tree);
    const add: string[] = [];
    const remove: string[] = [];
    const notes: StagingNotes = { skipped: [] };
    const trackedKinds = await kinds.ofAll(tracked);
    tracked.forEach((path, i) => {
      const kind = trackedKinds[i];
      if (kind === "file" || kind === "symlink") add.push(path);
      else remove.push(path);
    });
    const nested = untracked.filter((p) => p.endsWith("/"));
    for (const path of nested) notes.skipped.push({ path, why: "a nested git repository" });
    const loose = untracked.filter((p) => !p.endsWith("/"));
    const looseKinds = await kinds.ofAll(loose);
    loose.forEach((path, i) => {
      const kind = looseKinds[i];
      if (kind === "file" || kind === "symlink") add.push(path);
      else if (kind !== "missing") notes.skipped.push({ path, why: kind === "beyond-symlink" ? "below a symlink" : `a ${kind}` });
    });
    if (remove.length) await this.run(["update-index", "-z", "--force-remove", "--stdin"], { tree: true, stdin: zlist(remove) });
    if (add.length) await this.run(["update-index", "-z", "--add", "--stdin"], { tree: true, stdin: zlist(add) });
    return notes;
  }

  /**
   * Commits the staged tree on top of `baseSha` (the message goes in on stdin; no hook can run:
   * `commit-tree` has none). Returns the new commit, or the base when nothing changed.
   */
  async commit(message: string, author: CommitAuthor, baseSha: string): Promise<{ sha: string; changed: boolean }> {
    const tree = (await this.run(["write-tree"], { tree: true })).trim();
    const baseTree = (await this.run(["rev-parse", "--verify", `${baseSha}^{tree}`])).trim();
    if (tree === baseTree) return { sha: baseSha, changed: false };
    const sha = (
      await this.git.run(["commit-tree", tree, "-p", baseSha, "-F", "-"], {
        env: {
          ...this.objectsEnv,
          GIT_AUTHOR_NAME: author.name,
          GIT_AUTHOR_EMAIL: author.email,
          GIT_COMMITTER_NAME: author.name,
          GIT_COMMITTER_EMAIL: author.email,
        },
        cwd: this.scratch,
        stdin: message,
      })
    ).trim();
    return { sha, changed: true };
  }

  /** Streams the binary diff between two commits (objects only: the tree is not read). */
  diff(baseSha: string, headSha: string, onChunk: (chunk: Buffer) => void): Promise<void> {
    return this.git.stream(
      ["diff", "--binary", "--find-renames", "--no-ext-diff", "--no-textconv", "--no-color", baseSha, headSha, "--"],
      { env: this.objectsEnv, cwd: this.scratch },
      onChunk,
    );
  }

  /**
   * Streams every line the commit adds, as text (binary files included, uncompressed): what a
   * secret scan must read (see AddedLines).
   */
  async addedText(baseSha: string, headSha: string, onText: (text: string) => void): Promise<void> {
    const added = new AddedLines(onText);
    const utf8 = new StringDecoder("utf8");
    await this.git.stream(
      ["diff", "--text", "--unified=0", "--no-ext-diff", "--no-textconv", "--no-color", "--no-renames", baseSha, headSha, "--"],
      { env: this.objectsEnv, cwd: this.scratch },
      (chunk) => added.push(utf8.write(chunk)),
    );
    added.push(utf8.end());
    added.end();
  }

  async commitMessage(sha: string): Promise<string> {
    return this.run(["log", "-1", "--format=%B", sha, "--"]);
  }

  /** The commit a branch points to on the remote, if the branch exists. */
  async remoteBranch(remoteUrl: string, branch: string, credentials?: GitCredentials): Promise<string | undefined> {
    const out = await this.run(["ls-remote", "--heads", "--", remoteUrl, `refs/heads/${branch}`], {
      ...(credentials ? { credentials } : {}),
      allowFile: isLocal(remoteUrl),
    });
    return out.split("\t")[0]?.trim() || undefined;
  }

  /** Fetches a remote branch's commit into the attempt's object store (no ref is written anywhere). */
  async fetchBranch(remoteUrl: string, branch: string, credentials?: GitCredentials): Promise<void> {
    await this.run(["fetch", "--quiet", "--no-write-fetch-head", "--no-tags", "--", remoteUrl, `refs/heads/${branch}`], {
      ...(credentials ? { credentials } : {}),
      allowFile: isLocal(remoteUrl),
    });
  }

  /**
   * The tip of a branch of the remote, fetched into the attempt's object store (no ref written
   * anywhere); undefined when the remote has no such branch. The tip is read first and then
   * fetched: a branch that moves in between still brings it (an ancestor of the newer tip) unless
   * it was force-pushed, and then it is read once more.
   */
  async baseTip(remoteUrl: string, branch: string, credentials?: GitCredentials): Promise<string | undefined> {
    for (let round = 0; ; round++) {
      const tip = await this.exactRemoteBranch(remoteUrl, branch, credentials);
      if (!tip) return undefined;
      if (!(await this.hasCommit(tip))) await this.fetchBranch(remoteUrl, branch, credentials);
      if (await this.hasCommit(tip)) return tip;
      if (round > 0) throw new GitError("base_unavailable", `branch ${branch} moved while it was fetched`, "", true);
    }
  }

  private async exactRemoteBranch(remoteUrl: string, branch: string, credentials?: GitCredentials): Promise<string | undefined> {
    const ref = `refs/heads/${branch}`;
    const out = await this.run(["ls-remote", "--heads", "--", remoteUrl, ref], {
      ...(credentials ? { credentials } : {}),
      allowFile: isLocal(remoteUrl),
    });
    for (const line of out.split("\n")) {
      const [sha, name] = line.split("\t");
      if (name === ref && sha && OBJECT_ID.test(sha)) return sha;
    }
    return undefined;
  }

  private hasCommit(sha: string): Promise<boolean> {
    return this.run(["cat-file", "-e", `${sha}^{commit}`]).then(
      () => true,
      () => false,
    );
  }

  /** The tree of a commit. */
  async treeOf(commit: string): Promise<string> {
    return (await this.run(["rev-parse", "--verify", "--end-of-options", `${commit}^{tree}`])).trim();
  }

  /**
   * Takes a pack of objects from an untrusted producer (the task's container) into the attempt's
   * object store: written to a file of the runner's own as it comes, never more than `maxBytes`,
   * then indexed by `index-pack --strict` (what a server runs on a push from anyone: every object
   * is hashed and checked, every link must resolve). Nothing in it is run or checked out: its
   * objects are data for `merge-tree` and `diff`. Throws `snapshot_too_large` past the cap and
   * `snapshot_invalid` when git refuses the pack.
   */
  async importPack(produce: (write: (chunk: Buffer) => boolean) => Promise<void>, maxBytes: number): Promise<void> {
    const dir = join(this.scratch, "objects", "pack");
    await mkdir(dir, { recursive: true });
    const file = join(dir, `snapshot-${randomBytes(8).toString("hex")}.pack`);
    const out = createWriteStream(file, { flags: "wx", mode: 0o600 });
    // the runner's git (never root) reads the pack and writes its index beside it
    if (this.owner && process.getuid?.() === 0) {
      await new Promise<void>((resolve, reject) => out.once("open", () => resolve()).once("error", reject));
      for (const p of [dir, file]) await chown(p, this.owner.uid, this.owner.gid);
    }
    const written = new Promise<void>((resolve, reject) => {
      out.on("finish", resolve);
      out.on("error", reject);
    });
    let bytes = 0;
    let over = false;
    try {
      await produce((chunk) => {
        if (over) return false;
        bytes += chunk.length;
        if (bytes > maxBytes) {
          over = true;
          return false;
        }
        out.write(chunk);
        return true;
      });
    } finally {
      out.end();
      await written.catch(() => undefined);
    }
    try {
      if (over) throw new GitError("snapshot_too_large", `the workspace's snapshot is over ${maxBytes} bytes`, "");
      if (bytes === 0) throw new GitError("snapshot_invalid", "the workspace's snapshot is empty", "");
      await this.run(["index-pack", "--strict", file]).catch((err: unknown) => {
        throw new GitError("snapshot_invalid", "the workspace's snapshot is not a valid pack", err instanceof GitError ? err.stderr : "");
      });
    } catch (err) {
      await rm(file, { force: true });
      await rm(file.replace(/\.pack$/, ".idx"), { force: true });
      throw err;
    }
  }

  /**
   * Merges the change `head` made on `oldBase` into `newBase`, as a rebase (cherry-pick) does: a
   * three-way merge of the trees whose base is `oldBase`, whatever the commits' ancestry (the base
   * branch may have been force-pushed; `head` may come from the container). git 2.39 has no
   * `merge-tree --merge-base`, so both sides are first made children of `oldBase` in the scratch
   * store (commits of the trees of `newBase` and `head`): their one merge base is then `oldBase`.
   * Objects only: no work tree, no index, no hook; results and synthetic commits stay in the
   * attempt's store. Returns the merged tree, or the conflicting paths (at most `MAX_CONFLICTS_LISTED`
   * of them; `count` says how many there were).
   */
  async mergeOnto(head: string, oldBase: string, newBase: string): Promise<MergeResult> {
    const [oldCommit, newTree, headTree] = await Promise.all([
      this.run(["rev-parse", "--verify", "--end-of-options", `${oldBase}^{commit}`]).then((s) => s.trim()),
      this.treeOf(newBase),
      this.treeOf(head),
    ]);
    const child = async (tree: string, what: string) =>
      (await this.run(["commit-tree", tree, "-p", oldCommit, "-F", "-"], { stdin: `codefleet: ${what}\n` })).trim();
    const [ours, theirs] = await Promise.all([child(newTree, "the new base"), child(headTree, "the task's change")]);
    const out = new BoundedText(MAX_MERGE_OUTPUT_BYTES);
    let failed: unknown;
    await this.git
      .stream(
        ["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs],
        { env: this.objectsEnv, cwd: this.scratch },
        (c) => out.push(c),
      )
      .catch((err: unknown) => {
        failed = err;
      });
    // exit 1 with a tree and the conflicting paths is a conflict; anything else an error
    const [tree = "", ...rest] = out.text().split("\0");
    if (!OBJECT_ID.test(tree)) throw failed ?? new GitError("git_failed", "git merge-tree gave no tree", "");
    const paths = rest.filter(Boolean);
    if (!failed && paths.length === 0) return { clean: true, tree };
    if (!failed) throw new GitError("git_failed", "git merge-tree listed conflicts but succeeded", "");
    // a path cut by the bound is not listed; the count is of the paths seen
    const listed = out.truncated ? paths.slice(0, -1) : paths;
    return {
      clean: false,
      files: listed.slice(0, MAX_CONFLICTS_LISTED),
      count: out.truncated ? Math.max(listed.length, out.nulCount - 1) : listed.length,
    };
  }

  /**
   * Rebases `head` (the task's commit on `oldBase`) onto `newBase`: the merged tree (mergeOnto)
   * committed with `newBase` as its parent, `head`'s message (so its `Codefleet-Task:` trailer)
   * and author kept, the runner's committer. `changed` is false when the result is `newBase`'s tree.
   */
  async rebase(head: string, oldBase: string, newBase: string, committer: CommitAuthor): Promise<RebaseResult> {
    const merged = await this.mergeOnto(head, oldBase, newBase);
    if (!merged.clean) return { kind: "conflict", files: merged.files, count: merged.count };
    return { kind: "rebased", ...(await this.recommit(head, merged.tree, newBase, committer)) };
  }

  /**
   * `head`'s tree as it is, committed on `newBase` (message and author kept): for a tree that
   * already holds the new base's changes (the container applied them and the tests ran on it).
   */
  async moveOnto(head: string, newBase: string, committer: CommitAuthor): Promise<{ sha: string; changed: boolean }> {
    return this.recommit(head, await this.treeOf(head), newBase, committer);
  }

  private async recommit(head: string, tree: string, newBase: string, committer: CommitAuthor): Promise<{ sha: string; changed: boolean }> {
    const base = (await this.run(["rev-parse", "--verify", "--end-of-options", `${newBase}^{commit}`])).trim();
    if (tree === (await this.treeOf(base))) return { sha: base, changed: false };
    const { message, author } = parseCommit(
      await this.git.run(["cat-file", "commit", head], { env: this.objectsEnv, cwd: this.scratch, maxOutputBytes: MAX_COMMIT_BYTES }),
    );
    const sha = (
      await this.git.run(["commit-tree", tree, "-p", base, "-F", "-"], {
        env: {
          ...this.objectsEnv,
          ...(author
            ? { GIT_AUTHOR_NAME: author.name, GIT_AUTHOR_EMAIL: author.email, GIT_AUTHOR_DATE: author.date }
            : { GIT_AUTHOR_NAME: committer.name, GIT_AUTHOR_EMAIL: committer.email }),
          GIT_COMMITTER_NAME: committer.name,
          GIT_COMMITTER_EMAIL: committer.email,
        },
        cwd: this.scratch,
        stdin: message,
      })
    ).trim();
    return { sha, changed: true };
  }

  /**
   * The binary patch from one tree to another (objects only), or undefined when it is over
   * `maxBytes`: what the task's container applies to bring its tree to the rebased one.
   */
  async treeDiff(fromTree: string, toTree: string, maxBytes: number): Promise<Buffer | undefined> {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let over = false;
    await this.git.stream(
      ["diff", "--binary", "--full-index", "--no-renames", "--no-ext-diff", "--no-textconv", "--no-color", fromTree, toTree, "--"],
      { env: this.objectsEnv, cwd: this.scratch },
      (chunk) => {
        if (over) return;
        bytes += chunk.length;
        if (bytes > maxBytes) over = true;
        else chunks.push(chunk);
      },
    );
    return over ? undefined : Buffer.concat(chunks);
  }

  /** Pushes `sha` as a new branch: refused when the branch exists (whatever it holds, an ancestor included). */
  /**
   * Pushes `sha` to the branch: as a new branch (refused when it exists), or, with `from`, only
   * when the remote branch is still at `from` (a follow-up turn moving its branch on).
   */
  async push(remoteUrl: string, sha: string, branch: string, credentials?: GitCredentials, from?: string): Promise<void> {
    for (const id of [sha, ...(from === undefined ? [] : [from])])
      if (!OBJECT_ID.test(id)) throw new GitError("invalid_commit", `not a commit id: ${id.slice(0, 50)}`, "");
    const ref = `refs/heads/${branch}`;
    // an empty lease: the ref must not exist on the remote
    await this.run(
      ["push", "--quiet", "--porcelain", "--no-verify", `--force-with-lease=${ref}:${from ?? ""}`, "--", remoteUrl, `${sha}:${ref}`],
      {
        ...(credentials ? { credentials } : {}),
        allowFile: isLocal(remoteUrl),
      },
    );
  }
}

/** What the runner's rebase methods need of a workspace (the phases find them on the driver's reader). */
export type WorkspaceRebaser = Pick<WorkspaceGit, "baseTip" | "treeOf" | "importPack" | "mergeOnto" | "rebase" | "moveOnto" | "treeDiff">;

export type MergeResult = { clean: true; tree: string } | { clean: false; files: string[]; count: number };
export type RebaseResult = { kind: "rebased"; sha: string; changed: boolean } | { kind: "conflict"; files: string[]; count: number };

/** Conflicting paths a merge reports by name (the rest are counted). */
export const MAX_CONFLICTS_LISTED = 200;
/** What the runner reads of merge-tree's output (the tree and the conflicting paths). */
const MAX_MERGE_OUTPUT_BYTES = 1024 * 1024;
/** A commit object the runner reads back (its own: the message is the spec's, at most 10,000 characters). */
const MAX_COMMIT_BYTES = 1024 * 1024;
const OBJECT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Text from a stream, kept up to a bound (NULs counted past it). */
class BoundedText {
  private readonly chunks: Buffer[] = [];
  private bytes = 0;
  truncated = false;
  nulCount = 0;
  constructor(private readonly max: number) {}
  push(chunk: Buffer): void {
    for (const b of chunk) if (b === 0) this.nulCount++;
    if (this.bytes >= this.max) {
      this.truncated = true;
      return;
    }
    const part = chunk.subarray(0, this.max - this.bytes);
    if (part.length < chunk.length) this.truncated = true;
    this.chunks.push(part);
    this.bytes += part.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

/** The message (exact bytes after the headers) and author of a raw commit object. */
function parseCommit(raw: string): { message: string; author?: { name: string; email: string; date: string } } {
  const end = raw.indexOf("\n\n");
  const headers = end < 0 ? raw : raw.slice(0, end);
  const message = end < 0 ? "" : raw.slice(end + 2);
  const m = /^author (.*) <([^<>]*)> (\d+) ([+-]\d{4})$/m.exec(headers);
  return { message, ...(m ? { author: { name: m[1] as string, email: m[2] as string, date: `@${m[3]} ${m[4]}` } } : {}) };
}

function zlist(paths: string[]): string {
  return `${paths.join("\0")}\0`;
}

function isLocal(url: string): boolean {
  return url.startsWith("file:") || url.startsWith("/");
}

type PathKind = "file" | "symlink" | "directory" | "missing" | "beyond-symlink" | "special file";

/** lstat of a tree path, component by component: nothing is followed, parents are cached. */
class PathKinds {
  private readonly dirs = new Map<string, Promise<PathKind>>();
  constructor(private readonly root: string) {}

  private lstatKind(rel: string): Promise<PathKind> {
    return lstat(join(this.root, rel)).then(
      (st) => (st.isFile() ? "file" : st.isSymbolicLink() ? "symlink" : st.isDirectory() ? "directory" : "special file"),
      (err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT" || err.code === "ENOTDIR") return "missing";
        throw new GitError("workspace_unreadable", `cannot read ${rel} in the workspace: ${err.code ?? err.message}`, "");
      },
    );
  }

  private parent(rel: string): Promise<PathKind> {
    let p = this.dirs.get(rel);
    if (!p) {
      const slash = rel.lastIndexOf("/");
      p = (slash < 0 ? Promise.resolve<PathKind>("directory") : this.parent(rel.slice(0, slash))).then((up) =>
        up === "directory" ? this.lstatKind(rel) : up === "symlink" || up === "beyond-symlink" ? "beyond-symlink" : "missing",
      );
      this.dirs.set(rel, p);
    }
    return p;
  }

  /** Kinds of many paths, a few hundred lstat calls at a time. */
  async ofAll(paths: string[]): Promise<PathKind[]> {
    const out: PathKind[] = [];
    for (let i = 0; i < paths.length; i += 256) out.push(...(await Promise.all(paths.slice(i, i + 256).map((p) => this.of(p)))));
    return out;
  }

  async of(rel: string): Promise<PathKind> {
    const slash = rel.lastIndexOf("/");
    const up = slash < 0 ? "directory" : await this.parent(rel.slice(0, slash));
    if (up === "directory") return this.lstatKind(rel);
    return up === "symlink" || up === "beyond-symlink" ? "beyond-symlink" : "missing";
  }
}

import { chown, copyFile, lstat, mkdir } from "node:fs/promises";
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
    return new WorkspaceGit(git, layout, scratchDir);
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

  /** Pushes `sha` as a new branch: refused when the branch exists (whatever it holds, an ancestor included). */
  async push(remoteUrl: string, sha: string, branch: string, credentials?: GitCredentials): Promise<void> {
    if (!/^[0-9a-f]{40}$/.test(sha)) throw new GitError("invalid_commit", `not a commit id: ${sha.slice(0, 50)}`, "");
    const ref = `refs/heads/${branch}`;
    // an empty lease: the ref must not exist on the remote
    await this.run(["push", "--quiet", "--porcelain", "--no-verify", `--force-with-lease=${ref}:`, "--", remoteUrl, `${sha}:${ref}`], {
      ...(credentials ? { credentials } : {}),
      allowFile: isLocal(remoteUrl),
    });
  }
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

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage } from "@codefleet/contracts";
import { type GitCredentials, GitError, type GitRunner } from "@codefleet/repo-pool/git";

export type CommitAuthor = { name: string; email: string };

/**
 * Git on the task's workspace, run by the runner itself (as the workspace's owner), never inside
 * the agent container: fetch and push are the only steps that see git credentials, and the
 * agent's container never does.
 */
export type WorkspaceGitRunners = {
  /** Runs as the workspace's owner: everything that writes the working tree or the index. */
  local: GitRunner;
  /** Runs as the runner itself: talking to remotes (the runner's network and credentials). */
  remote: GitRunner;
  /** Hands files a remote operation wrote back to the workspace's owner. */
  restoreOwnership: (path: string) => Promise<void>;
};

export class WorkspaceGit {
  constructor(
    private readonly git: WorkspaceGitRunners,
    readonly path: string,
  ) {}

  private run(args: string[], opts: { credentials?: GitCredentials; timeoutMs?: number } = {}): Promise<string> {
    return this.git.local.run(["-C", this.path, ...args], opts);
  }

  private runRemote(args: string[], credentials?: GitCredentials): Promise<string> {
    return this.git.remote.run(["-C", this.path, ...args], credentials ? { credentials } : {});
  }

  async head(): Promise<string> {
    return (await this.run(["rev-parse", "HEAD"])).trim();
  }

  /** Fetches the ref from the remote when the slot is not already at the expected commit. */
  async ensureCommit(remoteUrl: string, ref: string, sha: string, credentials?: GitCredentials): Promise<"present" | "fetched"> {
    const present = await this.run(["cat-file", "-e", `${sha}^{commit}`]).then(
      () => true,
      () => false,
    );
    if (present) return "present";
    await this.runRemote(["fetch", "--quiet", "--no-write-fetch-head", "--", remoteUrl, ref], credentials);
    await this.git.restoreOwnership(join(this.path, ".git"));
    return "fetched";
  }

  async createBranch(branch: string, sha: string): Promise<void> {
    await this.run(["checkout", "--quiet", "--force", "-B", branch, sha]);
  }

  async rebaseOnto(upstreamSha: string): Promise<void> {
    try {
      await this.run(["rebase", "--quiet", upstreamSha]);
    } catch (err) {
      await this.run(["rebase", "--abort"]).catch(() => undefined);
      throw new GitError("rebase_conflict", `rebase onto ${upstreamSha.slice(0, 12)} failed: ${errorMessage(err)}`, "");
    }
  }

  /** Commits everything the agent left (if anything). Returns the new HEAD and whether it differs from base. */
  async commitAll(message: string, author: CommitAuthor, baseSha: string): Promise<{ sha: string; changed: boolean }> {
    await this.run(["add", "--all"]);
    const staged = await this.run(["diff", "--cached", "--quiet"]).then(
      () => false,
      () => true,
    );
    if (staged) {
      const msgFile = join(this.path, ".git", "CODEFLEET_COMMIT_MSG");
      await writeFile(msgFile, message);
      await this.run([
        "-c",
        `user.name=${author.name}`,
        "-c",
        `user.email=${author.email}`,
        "commit",
        "--quiet",
        "--no-verify",
        "-F",
        msgFile,
      ]);
    }
    const sha = await this.head();
    return { sha, changed: sha !== baseSha };
  }

  async diff(baseSha: string): Promise<string> {
    return this.run(["diff", "--binary", "--find-renames", baseSha, "HEAD"]);
  }

  async diffStat(baseSha: string): Promise<string> {
    return (await this.run(["diff", "--shortstat", baseSha, "HEAD"])).trim();
  }

  async commitMessage(sha: string): Promise<string> {
    return this.run(["log", "-1", "--format=%B", sha]);
  }

  /** The commit a branch points to on the remote, if the branch exists. */
  async remoteBranch(remoteUrl: string, branch: string, credentials?: GitCredentials): Promise<string | undefined> {
    const out = await this.runRemote(["ls-remote", "--heads", "--", remoteUrl, `refs/heads/${branch}`], credentials);
    return out.split("\t")[0]?.trim() || undefined;
  }

  async fetchCommit(remoteUrl: string, branch: string, credentials?: GitCredentials): Promise<void> {
    await this.run(
      ["fetch", "--quiet", "--no-write-fetch-head", "--", remoteUrl, `refs/heads/${branch}`],
      credentials ? { credentials } : {},
    );
  }

  async push(remoteUrl: string, branch: string, credentials?: GitCredentials): Promise<void> {
    await this.runRemote(["push", "--quiet", "--porcelain", "--", remoteUrl, `HEAD:refs/heads/${branch}`], credentials);
  }
}

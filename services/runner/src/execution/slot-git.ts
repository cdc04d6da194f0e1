import { CodefleetError, slotLayout } from "@codefleet/contracts";
import type { GitRunner } from "@codefleet/repo-pool/git";
import { WorkspaceGit } from "../workspace/workspace-git.js";
import type { SlotMount, WorkspaceReader } from "./driver.js";

/** The runner's hardened git (never root), and who owns scratch dirs when the runner is root. */
export type SlotGit = { runner: GitRunner; owner?: { uid: number; gid: number } };

function required(git: SlotGit | undefined): SlotGit {
  if (!git)
    throw new CodefleetError("no_git", "this driver was made without a git runner: it cannot read workspaces", {
      retry: { kind: "never" },
    });
  return git;
}

/**
 * Blob ids of files at a commit of the slot's trusted git (lockfiles keying the environment cache);
 * a path that is not a file there has none. Every driver reads the slot where repo-pool keeps it.
 */
export async function slotBlobIds(
  git: SlotGit | undefined,
  slot: SlotMount,
  sha: string,
  paths: readonly string[],
): Promise<Record<string, string>> {
  const g = required(git);
  if (paths.length === 0) return {};
  const out = await g.runner.run(["--git-dir", slotLayout(slot.path).gitDir, "ls-tree", "-z", sha, "--", ...paths]);
  const ids: Record<string, string> = {};
  for (const entry of out.split("\0")) {
    const m = /^\d+ blob ([0-9a-f]+)\t(.+)$/s.exec(entry);
    if (m) ids[m[2] as string] = m[1] as string;
  }
  return ids;
}

/** Opens the slot's working tree for reading as data, into the attempt's scratch store. */
export function openSlotWorkspace(git: SlotGit | undefined, slot: SlotMount, scratchDir: string): Promise<WorkspaceReader> {
  const g = required(git);
  return WorkspaceGit.open(g.runner, slotLayout(slot.path), scratchDir, g.owner);
}

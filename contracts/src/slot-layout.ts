import { join } from "node:path";

/**
 * The layout of a workspace slot on disk. The working tree is the only part a task container
 * sees (mounted at /workspace). The git directory and the tree's index sit beside it, outside
 * every container mount: only codefleet's own git ever reads or writes them, so nothing an agent
 * writes (hooks, config, a `.git` of its own) is ever run or trusted on the host.
 *
 *   <slot>/git/          the trusted git directory (bare; HEAD detached at the slot's commit)
 *   <slot>/tree/         the working tree, owned by the agents' uid, mounted at /workspace
 *   <slot>/tree-index/   the index of the tree (written by repo-pool's tree git as the agents' uid)
 */
export type SlotLayout = {
  root: string;
  gitDir: string;
  tree: string;
  indexDir: string;
  index: string;
};

export function slotLayout(slotRoot: string): SlotLayout {
  const indexDir = join(slotRoot, "tree-index");
  return { root: slotRoot, gitDir: join(slotRoot, "git"), tree: join(slotRoot, "tree"), indexDir, index: join(indexDir, "index") };
}

/** Where a task container finds the slot's parts (read-only, except the tree). */
export const CONTAINER_WORKSPACE = "/workspace";
export const CONTAINER_BASE_OBJECTS = "/codefleet/base/objects";
export const CONTAINER_BASE_INDEX = "/codefleet/base/index";

import { CONTAINER_BASE_INDEX, CONTAINER_BASE_OBJECTS, CONTAINER_WORKSPACE } from "@codefleet/contracts";
import type { RunHandle } from "../execution/driver.js";

/** The branch of the agent's own repository in the container. */
export const AGENT_BRANCH = "codefleet/work";

/**
 * Gives the agent a git repository of its own inside the container: `/workspace/.git`, made by
 * the agent's uid in the container, with the slot's objects as a read-only alternate and the
 * tree's index copied in (so `git status` is instant and `git diff`/`git log` show the base).
 * Agents that use git (OpenCode, Claude Code, scripts) work as in any clone, on branch
 * AGENT_BRANCH whatever the task's push branch (a warm container makes it before its task is
 * known; the runner pushes its own commit of the tree to the task's branch). The runner never
 * reads this directory: it is the agent's scratch, removed with everything else when the slot is
 * recycled, and whatever is planted in it (hooks, config, filters) only ever runs in the container.
 */
export async function setUpAgentGit(
  run: Pick<RunHandle, "exec">,
  o: { baseSha: string; signal: AbortSignal },
): Promise<{ ok: boolean; detail: string }> {
  const script = [
    "set -e",
    'command -v git >/dev/null 2>&1 || { echo "git is not installed" >&2; exit 3; }',
    `cd ${CONTAINER_WORKSPACE}`,
    'git init --quiet --initial-branch="$1" .',
    `printf '%s\\n' ${CONTAINER_BASE_OBJECTS} > .git/objects/info/alternates`,
    'git update-ref "refs/heads/$1" "$2"',
    `cp ${CONTAINER_BASE_INDEX} .git/index 2>/dev/null || git read-tree "$2"`,
  ].join("\n");
  let err = "";
  const r = await run.exec(["sh", "-c", script, "sh", AGENT_BRANCH, o.baseSha], {
    timeoutMs: 60_000,
    signal: o.signal,
    onOutput: (stream, chunk) => {
      if (stream === "stderr" && err.length < 2000) err += chunk.toString();
    },
  });
  return r.exitCode === 0 ? { ok: true, detail: "" } : { ok: false, detail: err.trim().slice(0, 500) || `exit code ${r.exitCode}` };
}

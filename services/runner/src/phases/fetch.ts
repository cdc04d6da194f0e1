import { setUpAgentGit } from "../workspace/agent-git.js";
import type { AttemptPhase, PhaseReport } from "./phase.js";

/**
 * The slot is already at the task's commit (repo-pool fetched and checked it out); this phase gives
 * the agent its own disposable git in the container, unless the warm container already has it.
 */
export const fetchPhase: AttemptPhase = {
  name: "fetch",
  async run(ctx): Promise<PhaseReport> {
    const { baseSha } = ctx.record;
    if (!ctx.agentGitReady) {
      const agentGit = await setUpAgentGit(ctx.run, { baseSha, signal: ctx.signal });
      if (!agentGit.ok) ctx.log.system(`no git for the agent in this image (${agentGit.detail}); the tree is there without it`);
    }
    return {
      outcome: "succeeded",
      detail: `${ctx.slot.ref || "default branch"} at ${baseSha.slice(0, 12)}`,
      facts: { baseSha, branch: ctx.spec.push.branch, warm: ctx.slot.warm, warmContainer: ctx.agentGitReady },
    };
  },
};

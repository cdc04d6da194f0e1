import type { AgentContext, AgentDriver, AgentResult } from "./agent.js";
import { toLog } from "./agent.js";

/** Deterministic steps from the task spec: shell commands and unified diffs. No LLM; for demos and tests. */
export const scriptAgent: AgentDriver<"script"> = {
  kind: "script",
  needs: (_agent, images) => ({ image: images.default, network: "none" }),
  async run(agent, ctx: AgentContext): Promise<AgentResult> {
    const deadline = Date.now() + ctx.timeoutMs;
    for (const [i, step] of agent.steps.entries()) {
      const remaining = Math.max(1000, deadline - Date.now());
      const common = { env: ctx.env, timeoutMs: remaining, idleTimeoutMs: ctx.idleTimeoutMs, onOutput: toLog(ctx), signal: ctx.signal };
      let r: Awaited<ReturnType<typeof ctx.run.exec>>;
      if ("run" in step) {
        ctx.log.system(`step ${i + 1}/${agent.steps.length}: ${step.run.split("\n")[0]?.slice(0, 200)}`);
        r = await ctx.run.exec(["sh", "-c", step.run], common);
      } else {
        ctx.log.system(`step ${i + 1}/${agent.steps.length}: apply patch (${step.patch.length} bytes)`);
        r = await ctx.run.exec(["git", "apply", "--whitespace=nowarn", "-"], { ...common, stdin: step.patch });
      }
      if (r.exitCode !== 0 || r.timedOut || r.canceled || r.idleTimedOut) {
        return { ...r, summary: `step ${i + 1} failed with exit code ${r.exitCode}` };
      }
    }
    return { exitCode: 0, summary: `${agent.steps.length} step(s) ran` };
  },
};

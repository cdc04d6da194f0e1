import type { AgentContext, AgentDriver, AgentResult } from "./agent.js";
import { fullPrompt, toLog } from "./agent.js";

const PROMPT_FILE = "/tmp/codefleet/prompt.md";

/**
 * Any CLI agent (aider and the like): the prompt is written to a file and given in
 * CODEFLEET_PROMPT_FILE (and CODEFLEET_PROMPT when small); `{prompt_file}` in argv is replaced.
 * argv runs as is: never through a shell.
 */
export const commandAgent: AgentDriver<"command"> = {
  kind: "command",
  needs: (agent, images) => ({ image: agent.image ?? images.default, network: "bridge" }),
  async run(agent, ctx: AgentContext): Promise<AgentResult> {
    const prompt = fullPrompt(ctx.spec);
    const write = await ctx.run.exec(["sh", "-c", 'mkdir -p /tmp/codefleet && cat > "$1"', "sh", PROMPT_FILE], {
      timeoutMs: 30_000,
      stdin: prompt,
      signal: ctx.signal,
    });
    if (write.exitCode !== 0) return { ...write, summary: "could not write the prompt into the container" };
    const env = { ...ctx.env, CODEFLEET_PROMPT_FILE: PROMPT_FILE, ...(prompt.length < 64_000 ? { CODEFLEET_PROMPT: prompt } : {}) };
    const argv = agent.argv.map((a) => a.replaceAll("{prompt_file}", PROMPT_FILE));
    ctx.log.system(`running ${argv[0]}`);
    const r = await ctx.run.exec(argv, {
      env,
      timeoutMs: ctx.timeoutMs,
      idleTimeoutMs: ctx.idleTimeoutMs,
      onOutput: toLog(ctx),
      signal: ctx.signal,
    });
    return { ...r, summary: `${argv[0]} exited ${r.exitCode}` };
  },
};

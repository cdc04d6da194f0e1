import type { AgentResult } from "../agents/agent.js";
import { agentDriverFor } from "../agents/registry.js";
import type { ContainerState } from "../execution/driver.js";
import type { AttemptPhase, Facts, PhaseReport } from "./phase.js";
import { stopWith } from "./phase.js";

/** What is known after the agent stopped: the container's state and whether the workspace is full. */
export type AfterAgent = { container: ContainerState; workspaceFullBytes?: number };

/**
 * How an agent's run ends the phase. Pure: the order of the checks is the classification (a full
 * disk explains a failure better than the exit code; an OOM kill better than a timeout).
 */
export function classifyAgentRun(
  r: AgentResult,
  after: AfterAgent,
  limits: { memoryMb: number; idleTimeoutMs: number },
): Omit<PhaseReport, "facts"> {
  const outcome = r.canceled ? "canceled" : r.timedOut || r.idleTimedOut ? "timed_out" : r.exitCode === 0 ? "succeeded" : "failed";
  const base = { outcome, exitCode: r.exitCode, ...(r.summary ? { detail: r.summary } : {}) } as const;
  if (r.exitCode === 0 && !r.canceled && !r.timedOut && !r.idleTimedOut) return base;
  if (r.canceled) return { ...base, end: stopWith("canceled", "cancel requested", "canceled") };
  if (after.workspaceFullBytes !== undefined)
    return {
      ...base,
      end: stopWith("disk_limit", `the workspace is full: the task wrote past its disk limit (${after.workspaceFullBytes} bytes in use)`),
    };
  if (after.container.oomKilled || (r.exitCode === 137 && !r.timedOut && !r.idleTimedOut))
    return { ...base, end: stopWith("oom_killed", `the agent was killed for exceeding ${limits.memoryMb} MB of memory`) };
  if (r.idleTimedOut)
    return {
      ...base,
      end: stopWith("agent_stalled", `the agent printed nothing for ${Math.round(limits.idleTimeoutMs / 1000)} s and was stopped`),
    };
  if (r.timedOut) return { ...base, end: stopWith("task_timeout", "the agent ran out of time", "timed_out") };
  return { ...base, end: stopWith("agent_failed", `the agent failed: ${r.summary ?? `exit code ${r.exitCode}`}`) };
}

function usageFacts(r: AgentResult): Facts {
  const facts: Facts = {};
  if (r.usage?.inputTokens !== undefined) facts.inputTokens = r.usage.inputTokens;
  if (r.usage?.outputTokens !== undefined) facts.outputTokens = r.usage.outputTokens;
  if (r.usage?.costUsd !== undefined) facts.costUsd = r.usage.costUsd;
  if (r.usage?.turns !== undefined) facts.turns = r.usage.turns;
  if (r.usage?.sessionId !== undefined) facts.sessionId = r.usage.sessionId;
  return facts;
}

/** The task's agent, by its driver, in the task's container. */
export const implementPhase: AttemptPhase = {
  name: "implement",
  async run(ctx) {
    const driver = agentDriverFor(ctx.agents, ctx.spec.agent);
    const r = await driver.run(ctx.spec.agent as never, {
      taskId: ctx.taskId,
      attempt: ctx.attempt,
      spec: ctx.spec,
      run: ctx.run,
      env: ctx.env,
      secrets: ctx.secrets,
      log: ctx.log,
      masker: ctx.masker,
      signal: ctx.signal,
      timeoutMs: Math.max(1000, ctx.remainingMs()),
      idleTimeoutMs: ctx.settings.agentIdleTimeoutMs,
      defaults: ctx.settings.defaults,
    });
    ctx.record.agentResult = r;
    const failed = r.exitCode !== 0 || r.canceled || r.timedOut || r.idleTimedOut;
    const after: AfterAgent = failed
      ? { container: await ctx.run.state(), ...(await ctx.workspaceFull().then((b) => (b === undefined ? {} : { workspaceFullBytes: b }))) }
      : { container: { running: true, oomKilled: false } };
    return {
      ...classifyAgentRun(r, after, { memoryMb: ctx.spec.limits.memoryMb, idleTimeoutMs: ctx.settings.agentIdleTimeoutMs }),
      facts: usageFacts(r),
    };
  },
};

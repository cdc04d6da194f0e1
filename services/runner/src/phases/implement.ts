import type { AgentResult } from "../agents/agent.js";
import { agentDriverFor } from "../agents/registry.js";
import type { ContainerState } from "../execution/driver.js";
import type { UsageTotals } from "../gateway/index.js";
import type { AttemptPhase, Facts, PhaseContext, PhaseReport } from "./phase.js";
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
    const needs = driver.needs(ctx.spec.agent as never, ctx.images);
    const model = ctx.model && needs.modelApi ? openModelSession(ctx, needs.modelApi) : undefined;
    let r: AgentResult | undefined;
    let totals: UsageTotals | undefined;
    try {
      r = await driver.run(ctx.spec.agent as never, {
        taskId: ctx.taskId,
        attempt: ctx.attempt,
        spec: ctx.spec,
        run: ctx.run,
        env: ctx.env,
        secrets: ctx.secrets,
        log: ctx.log,
        masker: ctx.masker,
        signal: model ? AbortSignal.any([ctx.signal, model.stop.signal]) : ctx.signal,
        timeoutMs: Math.max(1000, ctx.remainingMs()),
        idleTimeoutMs: ctx.settings.agentIdleTimeoutMs,
        defaults: ctx.settings.defaults,
        ...(model ? { model: model.endpoint } : {}),
      });
    } catch (err) {
      // an agent stopped by its budget may fail on the abort (an aborted request): the budget is why
      if (!model?.session.budgetExceeded) throw err;
      r = { exitCode: 1, canceled: true, summary: "stopped: the model budget is spent" };
    } finally {
      if (model) {
        totals = await model.session.close();
        ctx.record.llmExchanges = model.session.exchangesJsonl();
      }
    }
    ctx.record.agentResult = r;
    const facts = { ...usageFacts(r), ...(totals ? gatewayFacts(totals) : {}) };
    const exceeded = model?.session.budgetExceeded;
    if (exceeded) {
      const what =
        exceeded.limit === "maxCostUsd" ? `$${exceeded.max}` : `${exceeded.max} ${exceeded.limit === "maxTokens" ? "tokens" : "requests"}`;
      ctx.log.system(`the model budget is spent (${what}): the agent was stopped`);
      return {
        outcome: "failed",
        exitCode: r.exitCode,
        end: stopWith("budget_exceeded", `the task's model budget of ${what} is spent (used ${round(exceeded.used)})`),
        facts,
      };
    }
    const failed = r.exitCode !== 0 || r.canceled || r.timedOut || r.idleTimedOut;
    const after: AfterAgent = failed
      ? { container: await ctx.run.state(), ...(await ctx.workspaceFull().then((b) => (b === undefined ? {} : { workspaceFullBytes: b }))) }
      : { container: { running: true, oomKilled: false } };
    return {
      ...classifyAgentRun(r, after, { memoryMb: ctx.spec.limits.memoryMb, idleTimeoutMs: ctx.settings.agentIdleTimeoutMs }),
      facts,
    };
  },
};

const round = (n: number) => Math.round(n * 10_000) / 10_000;

/** The attempt's session on the runner's LLM gateway: the agent gets its URL and token; spending the budget stops the agent. */
function openModelSession(ctx: PhaseContext, api: "openai" | "anthropic") {
  const { key, gateway, tenant, recordCall } = ctx.model as NonNullable<PhaseContext["model"]>;
  const agentBaseUrl = (ctx.spec.agent as { baseUrl?: string }).baseUrl;
  const upstreamBaseUrl =
    agentBaseUrl ?? (api === "openai" ? ctx.settings.defaults.openaiBaseUrl : (ctx.settings.defaults.anthropicBaseUrl ?? ANTHROPIC_API));
  const stop = new AbortController();
  const session = gateway.openSession({
    sessionId: `${ctx.taskId}.${ctx.attempt}`,
    tenant,
    upstream: { kind: api, baseUrl: upstreamBaseUrl, apiKey: key?.value ?? "" },
    ...(ctx.spec.budget ? { budget: ctx.spec.budget } : {}),
    secrets: Object.values(ctx.secrets),
    onBudgetExceeded: () => stop.abort(),
    onUsage: (u) =>
      recordCall({
        model: u.model.slice(0, 200),
        api,
        stream: u.stream,
        status: u.status,
        promptTokens: u.promptTokens,
        completionTokens: u.completionTokens,
        costUsd: u.costUsd,
        priced: u.priced,
        latencyMs: Math.round(u.latencyMs),
        attempts: u.attempts,
      }),
  });
  const endpoint = {
    // behind its egress proxy, the container reaches the gateway through the proxy
    baseUrl: ctx.run.gatewayUrl ? session.baseUrl.replace(gateway.url, ctx.run.gatewayUrl) : session.baseUrl,
    localBaseUrl: session.baseUrl.replace(gateway.url, gateway.localUrl),
    token: session.token,
  };
  ctx.masker.add(session.token);
  return { session, endpoint, stop };
}

const ANTHROPIC_API = "https://api.anthropic.com";

/** What the gateway counted: authoritative, whatever the agent reports of itself. */
function gatewayFacts(t: UsageTotals): Facts {
  return {
    modelCalls: t.requests,
    inputTokens: t.promptTokens,
    outputTokens: t.completionTokens,
    costUsd: round(t.costUsd),
    ...(t.unpricedCalls ? { unpricedCalls: t.unpricedCalls } : {}),
  };
}

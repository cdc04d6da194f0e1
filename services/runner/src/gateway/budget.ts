import type { TokenUsage } from "./prices.js";

/** What one session may spend. Absent fields are unlimited. */
export type Budget = {
  readonly maxTokens?: number;
  readonly maxCostUsd?: number;
  readonly maxRequests?: number;
};

export type BudgetLimit = keyof Budget;

/** A session's running totals. `requests` counts calls forwarded upstream, those still under way included. */
export type UsageTotals = {
  readonly requests: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cacheReadTokens: number;
  readonly cacheWriteTokens: number;
  readonly totalTokens: number;
  readonly costUsd: number;
  /** Calls whose model had no entry in the price table (counted at cost 0). */
  readonly unpricedCalls: number;
  /** Calls whose answer carried no usage the gateway could read (an error, a stream cut short). */
  readonly unknownUsageCalls: number;
};

export const EMPTY_TOTALS: UsageTotals = {
  requests: 0,
  promptTokens: 0,
  completionTokens: 0,
  cacheReadTokens: 0,
  cacheWriteTokens: 0,
  totalTokens: 0,
  costUsd: 0,
  unpricedCalls: 0,
  unknownUsageCalls: 0,
};

export type BudgetExceeded = {
  readonly limit: BudgetLimit;
  readonly max: number;
  /** The amount used when the limit was found reached (tokens, US dollars or requests). */
  readonly used: number;
  readonly totals: UsageTotals;
};

/**
 * The budget of a session: what the task asked for, else the operator's default, never above the
 * operator's ceiling (when one is set for that field).
 */
export function resolveBudget(requested: Budget | undefined, defaults: Budget = {}, ceiling: Budget = {}): Budget {
  const out: { -readonly [K in BudgetLimit]?: number } = {};
  for (const k of ["maxTokens", "maxCostUsd", "maxRequests"] as const) {
    const want = requested?.[k] ?? defaults[k];
    const cap = ceiling[k];
    const v = want === undefined ? cap : cap === undefined ? want : Math.min(want, cap);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** One more call, before it is made: refused when the requests are used up, or the tokens or dollars already reached. */
export function checkBeforeCall(budget: Budget, totals: UsageTotals): BudgetExceeded | undefined {
  if (budget.maxRequests !== undefined && totals.requests >= budget.maxRequests) {
    return { limit: "maxRequests", max: budget.maxRequests, used: totals.requests, totals };
  }
  if (budget.maxTokens !== undefined && totals.totalTokens >= budget.maxTokens) {
    return { limit: "maxTokens", max: budget.maxTokens, used: totals.totalTokens, totals };
  }
  if (budget.maxCostUsd !== undefined && totals.costUsd >= budget.maxCostUsd) {
    return { limit: "maxCostUsd", max: budget.maxCostUsd, used: totals.costUsd, totals };
  }
  return undefined;
}

/** After a call has been counted: exceeded when the tokens or dollars went past their limit. */
export function checkAfterCall(budget: Budget, totals: UsageTotals): BudgetExceeded | undefined {
  if (budget.maxTokens !== undefined && totals.totalTokens > budget.maxTokens) {
    return { limit: "maxTokens", max: budget.maxTokens, used: totals.totalTokens, totals };
  }
  if (budget.maxCostUsd !== undefined && totals.costUsd > budget.maxCostUsd) {
    return { limit: "maxCostUsd", max: budget.maxCostUsd, used: totals.costUsd, totals };
  }
  return undefined;
}

/** Totals with one more call started (a request counted before it goes upstream). */
export function addRequest(t: UsageTotals): UsageTotals {
  return { ...t, requests: t.requests + 1 };
}

/** Totals with one finished call's tokens and cost added. */
export function addUsage(t: UsageTotals, call: { usage: TokenUsage | undefined; costUsd: number; priced: boolean }): UsageTotals {
  const u = call.usage;
  if (!u) return { ...t, unknownUsageCalls: t.unknownUsageCalls + 1 };
  return {
    ...t,
    promptTokens: t.promptTokens + u.promptTokens,
    completionTokens: t.completionTokens + u.completionTokens,
    cacheReadTokens: t.cacheReadTokens + u.cacheReadTokens,
    cacheWriteTokens: t.cacheWriteTokens + u.cacheWriteTokens,
    totalTokens: t.totalTokens + u.promptTokens + u.completionTokens,
    costUsd: t.costUsd + call.costUsd,
    unpricedCalls: t.unpricedCalls + (call.priced || u.promptTokens + u.completionTokens === 0 ? 0 : 1),
  };
}

import type { Meter } from "@opentelemetry/api";
import type { BudgetLimit } from "./budget.js";
import type { CallUsage } from "./types.js";

/** What the gateway counts; `otelGatewayMetrics` puts it on the runner's meter (served at /metrics). */
export type GatewayMetrics = {
  call(u: CallUsage): void;
  retry(kind: string, reason: string): void;
  budgetExceeded(tenant: string, limit: BudgetLimit): void;
  /** Time the gateway itself added to a call: latency less upstream time and waits. */
  overhead(ms: number): void;
};

/** A model name as a metric label: bounded, printable (the agent chooses what it sends). */
export function modelLabel(model: string): string {
  const clean = model.replace(/[^\w.:/@-]/g, "_").slice(0, 80);
  return clean.length > 0 ? clean : "unknown";
}

/**
 * The gateway's metrics on an OpenTelemetry meter (the runner's, so that they appear in its
 * Prometheus exposition):
 * - `codefleet_gateway_calls_total{model,tenant,outcome,status}`
 * - `codefleet_gateway_tokens_total{model,tenant,type=prompt|completion|cache_read|cache_write}`
 * - `codefleet_gateway_cost_usd_total{model,tenant}`
 * - `codefleet_gateway_call_duration_ms{model,tenant}` (histogram)
 * - `codefleet_gateway_overhead_ms` (histogram)
 * - `codefleet_gateway_upstream_retries_total{kind,reason}`
 * - `codefleet_gateway_budget_exceeded_total{tenant,limit}`
 */
export function otelGatewayMetrics(meter: Meter): GatewayMetrics {
  const calls = meter.createCounter("codefleet_gateway_calls_total", { description: "LLM calls through the gateway" });
  const tokens = meter.createCounter("codefleet_gateway_tokens_total", { description: "tokens of LLM calls, by type" });
  const cost = meter.createCounter("codefleet_gateway_cost_usd_total", {
    description: "cost of LLM calls in US dollars, from the price table",
  });
  const duration = meter.createHistogram("codefleet_gateway_call_duration_ms", {
    description: "LLM call latency seen by the agent",
    unit: "ms",
  });
  const overhead = meter.createHistogram("codefleet_gateway_overhead_ms", {
    description: "time the gateway added to a call (latency less upstream time and waits)",
    unit: "ms",
    advice: { explicitBucketBoundaries: [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100] },
  });
  const retries = meter.createCounter("codefleet_gateway_upstream_retries_total", { description: "provider calls retried, by reason" });
  const exceeded = meter.createCounter("codefleet_gateway_budget_exceeded_total", { description: "sessions stopped by their budget" });
  return {
    call(u) {
      const labels = { model: modelLabel(u.model), tenant: u.tenant };
      calls.add(1, { ...labels, outcome: u.outcome, status: String(u.status) });
      if (u.promptTokens) tokens.add(u.promptTokens, { ...labels, type: "prompt" });
      if (u.completionTokens) tokens.add(u.completionTokens, { ...labels, type: "completion" });
      if (u.cacheReadTokens) tokens.add(u.cacheReadTokens, { ...labels, type: "cache_read" });
      if (u.cacheWriteTokens) tokens.add(u.cacheWriteTokens, { ...labels, type: "cache_write" });
      if (u.costUsd) cost.add(u.costUsd, labels);
      duration.record(u.latencyMs, labels);
    },
    retry(kind, reason) {
      retries.add(1, { kind, reason });
    },
    budgetExceeded(tenant, limit) {
      exceeded.add(1, { tenant, limit });
    },
    overhead(ms) {
      overhead.record(ms);
    },
  };
}

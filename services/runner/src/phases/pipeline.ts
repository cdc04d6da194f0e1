import type { EventData, Phase } from "@codefleet/contracts";
import { errorMessage, isCodefleetError, reasonOf } from "@codefleet/contracts";
import type { Logger } from "@codefleet/platform/runtime";
import { type Context, SpanStatusCode, trace } from "@opentelemetry/api";
import type { AttemptEnd, AttemptPhase, PhaseContext, PhaseReport } from "./phase.js";
import { Superseded } from "./phase.js";

const tracer = trace.getTracer("@codefleet/runner");

export type PipelineHooks = {
  /** Publishes a phase event. Not awaited by the pipeline: publishes are pipelined (one connection keeps their order). */
  publish(type: "phase.started" | "phase.finished", data: EventData<"phase.started"> | EventData<"phase.finished">): Promise<unknown>;
  /** Why the attempt was stopped from outside (cancel, timeout, lost lease, full disk), if it was. */
  stoppedBy(): AttemptEnd | undefined;
  traceContext: Context;
  log: Logger;
  metrics?: { phaseDuration(phase: Phase, outcome: string, ms: number): void };
};

/** The standard order. A phase that does not apply to a task (no test command) is left out. */
export async function runPipeline(phases: readonly AttemptPhase[], ctx: PhaseContext, hooks: PipelineHooks): Promise<AttemptEnd> {
  const published: Promise<unknown>[] = [];
  const publish: PipelineHooks["publish"] = (type, data) => {
    const p = hooks.publish(type, data).catch((err) => hooks.log.warn({ error: errorMessage(err) }, `${type} not published`));
    published.push(p);
    return p;
  };
  try {
    for (const phase of phases) {
      if (phase.appliesTo && !phase.appliesTo(ctx.spec)) continue;
      const stopped = hooks.stoppedBy();
      if (stopped) return stopped;
      const report = await runPhase(phase, ctx, { ...hooks, publish });
      if (report.end) return hooks.stoppedBy() ?? report.end;
    }
    return hooks.stoppedBy() ?? { status: "succeeded", ...(ctx.record.pushedSha ? { commitSha: ctx.record.pushedSha } : {}) };
  } finally {
    await Promise.all(published);
  }
}

/** One phase: its events, span, log lines and metric, and its failure turned into a report. */
async function runPhase(phase: AttemptPhase, ctx: PhaseContext, hooks: PipelineHooks): Promise<PhaseReport> {
  const name = phase.name;
  ctx.log.phase = name;
  ctx.log.system(`phase ${name} started`);
  void hooks.publish("phase.started", { phase: name });
  const t0 = Date.now();
  return tracer.startActiveSpan(
    `phase ${name}`,
    { attributes: { "codefleet.phase": name, "codefleet.task_id": ctx.taskId, "codefleet.attempt": ctx.attempt } },
    hooks.traceContext,
    async (span) => {
      let report: PhaseReport | undefined;
      try {
        report = await phase.run(ctx);
      } catch (err) {
        if (err instanceof Superseded) {
          report = { outcome: "failed", detail: "a newer attempt owns this task" };
          throw err;
        }
        const stopped = hooks.stoppedBy();
        if (!stopped && !isCodefleetError(err)) hooks.log.error({ err }, `phase ${name} failed unexpectedly`);
        const reason = ctx.masker.mask(errorMessage(err));
        report = {
          outcome: stopped?.status === "timed_out" ? "timed_out" : stopped?.status === "canceled" ? "canceled" : "failed",
          detail: reason,
          end: stopped ?? { status: "failed", ...reasonOf(err, reason) },
        };
      } finally {
        const durationMs = Date.now() - t0;
        const r = report ?? { outcome: "failed" };
        span.setAttribute("codefleet.outcome", r.outcome);
        if (r.exitCode !== undefined) span.setAttribute("process.exit.code", r.exitCode);
        if (r.outcome === "failed" || r.outcome === "timed_out")
          span.setStatus({ code: SpanStatusCode.ERROR, message: r.detail ?? r.outcome });
        span.end();
        hooks.metrics?.phaseDuration(name, r.outcome, durationMs);
        const detail = r.detail ? ctx.masker.mask(r.detail) : undefined;
        ctx.log.system(`phase ${name} ${r.outcome}${detail ? `: ${detail}` : ""} (${durationMs} ms)`);
        void hooks.publish("phase.finished", {
          phase: name,
          outcome: r.outcome,
          durationMs,
          ...(r.exitCode === undefined ? {} : { exitCode: r.exitCode }),
          ...(detail ? { detail: detail.slice(0, 4000) } : {}),
          ...(r.facts && Object.keys(r.facts).length ? { facts: r.facts } : {}),
        });
      }
      return report as PhaseReport;
    },
  );
}

import type { PlaybookStep, TestSpec } from "@codefleet/contracts";
import { workspacePath } from "../agents/openai.js";
import type { ContainerState, ExecResult, RunHandle } from "../execution/driver.js";
import type { LogStream } from "../logs/log-stream.js";
import type { AttemptPhase, PhaseContext, PhaseReport } from "./phase.js";
import { stopWith } from "./phase.js";
import { parseReport, type TestCounts } from "./test-report.js";

export type TestOutcome = {
  outcome: "succeeded" | "failed" | "timed_out" | "canceled";
  exitCode?: number;
  detail: string;
  counts?: TestCounts;
  report?: { content: string; format: "junit" | "tap"; path: string };
};

/** The most of a test report the runner reads (the rest is cut with a marker). */
export const MAX_REPORT_BYTES = 10 * 1024 * 1024;

type Ctx = { run: Pick<RunHandle, "exec">; env: Record<string, string>; log: LogStream; signal: AbortSignal; timeoutMs: number };

function settle(r: ExecResult): TestOutcome["outcome"] {
  if (r.canceled) return "canceled";
  if (r.timedOut || r.idleTimedOut) return "timed_out";
  return r.exitCode === 0 ? "succeeded" : "failed";
}

/** Runs the task's test command or playbook in the container and collects its report. */
export async function runTestPhase(test: TestSpec, ctx: Ctx): Promise<TestOutcome> {
  const deadline = Date.now() + ctx.timeoutMs;
  const exec = (command: string, timeoutMs: number) =>
    ctx.run.exec(["sh", "-c", command], {
      env: ctx.env,
      timeoutMs: Math.max(1000, Math.min(timeoutMs, deadline - Date.now())),
      signal: ctx.signal,
      onOutput: (s, c) => ctx.log.write(s, c),
    });
  let result: TestOutcome;
  if ("command" in test) {
    ctx.log.system(`test: ${test.command.split("\n")[0]?.slice(0, 200)}`);
    const r = await exec(test.command, ctx.timeoutMs);
    const outcome = settle(r);
    result = {
      outcome,
      exitCode: r.exitCode,
      detail: outcome === "succeeded" ? "tests passed" : `test command exited ${r.exitCode}${r.timedOut ? " (timed out)" : ""}`,
    };
  } else {
    result = await runPlaybook(test.playbook.steps, exec, ctx);
  }
  if (test.report) {
    // Read inside the container (whatever the path or a symlink there points to is the agent's own
    // sandbox) and never more than MAX_REPORT_BYTES: a report that is /dev/zero ends here.
    const path = workspacePath(test.report.path);
    const chunks: Buffer[] = [];
    let bytes = 0;
    const r = await ctx.run.exec(["head", "-c", String(MAX_REPORT_BYTES + 1), "--", path], {
      timeoutMs: 30_000,
      signal: ctx.signal,
      onOutput: (s, c) => {
        if (s !== "stdout" || bytes > MAX_REPORT_BYTES) return;
        chunks.push(c);
        bytes += c.length;
      },
    });
    let content = Buffer.concat(chunks).subarray(0, MAX_REPORT_BYTES).toString("utf8");
    if (bytes > MAX_REPORT_BYTES) {
      content += `\n<!-- codefleet: report truncated at ${MAX_REPORT_BYTES} bytes -->\n`;
      ctx.log.system(`test report at ${test.report.path} is over ${MAX_REPORT_BYTES} bytes: kept the first ${MAX_REPORT_BYTES}`);
    }
    if (r.exitCode === 0 && content) {
      const counts = parseReport(content, test.report.format);
      result = { ...result, report: { content, format: test.report.format, path: test.report.path }, ...(counts ? { counts } : {}) };
      if (counts) ctx.log.system(`test report: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
    } else {
      ctx.log.system(`no test report at ${test.report.path}`);
    }
  }
  return result;
}

/** NecroCode-style playbook: named steps with condition, timeout, retries and fail-fast. */
async function runPlaybook(
  steps: PlaybookStep[],
  exec: (cmd: string, timeoutMs: number) => Promise<ExecResult>,
  ctx: Ctx,
): Promise<TestOutcome> {
  const failures: string[] = [];
  for (const step of steps) {
    if (step.condition) {
      const c = await exec(step.condition, 60_000);
      if (c.canceled) return { outcome: "canceled", detail: `canceled at step '${step.name}'` };
      if (c.exitCode !== 0) {
        ctx.log.system(`step '${step.name}': skipped (condition not met)`);
        continue;
      }
    }
    const tries = (step.retry_count ?? 0) + 1;
    let last: ExecResult | undefined;
    for (let t = 1; t <= tries; t++) {
      ctx.log.system(`step '${step.name}'${tries > 1 ? ` (try ${t}/${tries})` : ""}: ${step.command.split("\n")[0]?.slice(0, 200)}`);
      last = await exec(step.command, (step.timeout_seconds ?? 1800) * 1000);
      if (last.exitCode === 0 || last.canceled) break;
    }
    const outcome = settle(last as ExecResult);
    if (outcome === "canceled") return { outcome, detail: `canceled at step '${step.name}'` };
    if (outcome !== "succeeded") {
      failures.push(`${step.name} (exit ${last?.exitCode}${outcome === "timed_out" ? ", timed out" : ""})`);
      if (step.fail_fast ?? true)
        return {
          outcome: outcome === "timed_out" ? "timed_out" : "failed",
          exitCode: last?.exitCode ?? 1,
          detail: `step '${step.name}' failed`,
        };
    }
  }
  return failures.length
    ? { outcome: "failed", exitCode: 1, detail: `failed steps: ${failures.join(", ")}` }
    : { outcome: "succeeded", exitCode: 0, detail: `${steps.length} step(s) passed` };
}

/** How a test run ends the phase (pure). A full disk or an OOM kill explains a failure better than the exit code. */
export function classifyTestRun(
  t: TestOutcome,
  after: { container: ContainerState; workspaceFullBytes?: number },
  limits: { memoryMb: number },
): Omit<PhaseReport, "facts"> {
  const base = { outcome: t.outcome, detail: t.detail, ...(t.exitCode === undefined ? {} : { exitCode: t.exitCode }) };
  if (t.outcome === "succeeded") return base;
  if (t.outcome === "canceled") return { ...base, end: stopWith("canceled", "cancel requested", "canceled") };
  if (after.workspaceFullBytes !== undefined)
    return {
      ...base,
      end: stopWith("disk_limit", `the workspace is full: the task wrote past its disk limit (${after.workspaceFullBytes} bytes in use)`),
    };
  if (after.container.oomKilled)
    return { ...base, end: stopWith("oom_killed", `the tests were killed for exceeding ${limits.memoryMb} MB of memory`) };
  if (t.outcome === "timed_out") return { ...base, end: stopWith("test_timeout", "the tests ran out of time", "timed_out") };
  return { ...base, end: stopWith("test_failed", t.detail) };
}

/** The task's test command or playbook, in the task's container; its report parsed and kept. */
export const testPhase: AttemptPhase = {
  name: "test",
  appliesTo: (spec) => spec.test !== undefined,
  run: (ctx) => runTests(ctx),
};

/** The tests of the task as the test phase runs them (the rebase phase runs them again on a rebased tree). */
export async function runTests(ctx: PhaseContext): Promise<PhaseReport> {
  const test = ctx.spec.test as TestSpec;
  const t = await runTestPhase(test, {
    run: ctx.run,
    env: ctx.env,
    log: ctx.log,
    signal: ctx.signal,
    timeoutMs: Math.max(1000, ctx.remainingMs()),
  });
  ctx.record.testOutcome = t;
  const after =
    t.outcome === "succeeded"
      ? { container: { running: true, oomKilled: false } }
      : {
          container: await ctx.run.state(),
          ...(await ctx.workspaceFull().then((b) => (b === undefined ? {} : { workspaceFullBytes: b }))),
        };
  return { ...classifyTestRun(t, after, { memoryMb: ctx.spec.limits.memoryMb }), facts: t.counts ? { ...t.counts } : {} };
}

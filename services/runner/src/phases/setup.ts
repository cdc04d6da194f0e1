import { DEFAULT_CACHE_KEY_FILES, errorMessage, type SetupSpec } from "@codefleet/contracts";
import type { ExecResult } from "../execution/driver.js";
import type { AttemptPhase, PhaseReport } from "./phase.js";
import { stopWith } from "./phase.js";

/** How the setup command ends the phase (pure). */
export function classifySetupRun(r: ExecResult, after: { oomKilled: boolean; workspaceFullBytes?: number }, memoryMb: number): PhaseReport {
  if (r.canceled) return { outcome: "canceled", exitCode: r.exitCode, end: stopWith("canceled", "cancel requested", "canceled") };
  if (r.exitCode === 0 && !r.timedOut && !r.idleTimedOut) return { outcome: "succeeded", exitCode: 0 };
  if (after.workspaceFullBytes !== undefined)
    return {
      outcome: "failed",
      exitCode: r.exitCode,
      end: stopWith("disk_limit", `the workspace is full: the setup wrote past its disk limit (${after.workspaceFullBytes} bytes in use)`),
    };
  if (after.oomKilled)
    return {
      outcome: "failed",
      exitCode: r.exitCode,
      end: stopWith("oom_killed", `the setup was killed for exceeding ${memoryMb} MB of memory`),
    };
  if (r.timedOut)
    return { outcome: "timed_out", exitCode: r.exitCode, end: stopWith("setup_timeout", "the setup ran out of time", "timed_out") };
  return { outcome: "failed", exitCode: r.exitCode, end: stopWith("setup_failed", `the setup command exited ${r.exitCode}`) };
}

/**
 * The task's setup (`npm ci` and the like), once per environment: when the environment cache has
 * this repository's setup for these lockfiles, image, command and env, its paths are copied into
 * the workspace instead; otherwise the command runs and what it made is kept for the next task.
 */
export const setupPhase: AttemptPhase = {
  name: "setup",
  appliesTo: (spec) => spec.setup !== undefined,
  async run(ctx): Promise<PhaseReport> {
    const setup = ctx.spec.setup as SetupSpec;
    const paths = setup.cachePaths ?? [];
    const cache = paths.length ? ctx.environmentCache : undefined;
    let key: string | undefined;
    if (cache) {
      try {
        key = await cache.key(setup.cacheKeyFiles ?? DEFAULT_CACHE_KEY_FILES);
        const t0 = Date.now();
        const restored = await cache.restore(key, paths);
        if (restored.hit) {
          ctx.log.system(`setup: ${paths.join(", ")} from the environment cache (${key.slice(0, 12)}, ${restored.bytes ?? 0} bytes)`);
          return {
            outcome: "succeeded",
            detail: `from the environment cache in ${Date.now() - t0} ms`,
            facts: { cache: "hit", cacheKey: key, restoreMs: Date.now() - t0, bytes: restored.bytes ?? 0 },
          };
        }
      } catch (err) {
        // the cache is an optimisation: without it, the setup runs
        ctx.log.system(`setup: the environment cache is unavailable (${errorMessage(err)}); running the setup`);
        key = undefined;
      }
    }
    ctx.log.system(`setup: ${setup.command.split("\n")[0]?.slice(0, 200)}`);
    const timeoutMs = Math.max(1000, Math.min(ctx.remainingMs(), (setup.timeoutSeconds ?? 1800) * 1000));
    const t0 = Date.now();
    const r = await ctx.run.exec(["sh", "-c", setup.command], {
      env: ctx.env,
      timeoutMs,
      idleTimeoutMs: ctx.settings.agentIdleTimeoutMs,
      signal: ctx.signal,
      onOutput: (s, c) => ctx.log.write(s, c),
    });
    const failed = r.exitCode !== 0 || r.timedOut || r.idleTimedOut || r.canceled;
    const after = failed
      ? {
          oomKilled: (await ctx.run.state()).oomKilled,
          ...(await ctx.workspaceFull().then((b) => (b === undefined ? {} : { workspaceFullBytes: b }))),
        }
      : { oomKilled: false };
    const report = classifySetupRun(r, after, ctx.spec.limits.memoryMb);
    const setupMs = Date.now() - t0;
    if (report.end || !cache || !key) return { ...report, facts: { cache: cache ? "miss" : "off", setupMs } };
    const saved = await cache.save(key, paths).catch((err) => ({ saved: false, detail: errorMessage(err), bytes: 0 }));
    if (!saved.saved) ctx.log.system(`setup: not kept in the environment cache (${saved.detail ?? "unknown"})`);
    return {
      ...report,
      detail: saved.saved ? `ran in ${setupMs} ms; kept in the environment cache` : `ran in ${setupMs} ms`,
      facts: { cache: saved.saved ? "saved" : "miss", cacheKey: key, setupMs, bytes: saved.bytes ?? 0 },
    };
  },
};

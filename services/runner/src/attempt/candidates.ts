import type { EventData } from "@codefleet/contracts";
import { errorMessage, isCodefleetError, reasonOf } from "@codefleet/contracts";
import type { Logger } from "@codefleet/platform/runtime";
import type { Context } from "@opentelemetry/api";
import type { RunHandle } from "../execution/driver.js";
import { fetchPhase } from "../phases/fetch.js";
import { implementPhase } from "../phases/implement.js";
import type { AttemptEnd, AttemptPhase, AttemptRecord, PhaseContext } from "../phases/phase.js";
import { type PipelineHooks, runPipeline } from "../phases/pipeline.js";
import { setupPhase } from "../phases/setup.js";
import { testPhase } from "../phases/test.js";

/**
 * Best-of-N (`spec.candidates`): N candidates of one attempt run at once, each on its own slot and
 * container, through fetch → setup → implement → test, each with its own trace and log. The test
 * oracle ranks them (`rankCandidates`, pure); `candidate.selected` records every score and the
 * winner, and only the winner goes on to rebase and push. The attempt holds one claim for all of
 * them: a newer attempt fences every candidate at once.
 */

/** What each candidate runs: the pipeline up to its tests. */
export const CANDIDATE_PHASES: readonly AttemptPhase[] = [fetchPhase, setupPhase, implementPhase, testPhase];

export type CandidateScore = EventData<"candidate.selected">["candidates"][number];

/** Failures of the platform rather than of the candidate's work. */
const PLATFORM_FAILURES = new Set(["internal_error", "no_capacity", "image_missing", "lease_lost", "disk_limit"]);

/** A candidate's score from how its pipeline ended and what its tests counted. */
export function scoreOf(
  candidate: number,
  end: AttemptEnd,
  record: Pick<AttemptRecord, "testOutcome">,
  extra: { diffLines?: number; traceId?: string } = {},
): CandidateScore {
  const counts = record.testOutcome?.counts;
  return {
    candidate,
    status: end.status === "succeeded" ? "passed" : end.reasonCode && PLATFORM_FAILURES.has(end.reasonCode) ? "error" : "failed",
    ...(counts ? { testsPassed: counts.passed, testsFailed: counts.failed } : {}),
    ...(extra.diffLines === undefined ? {} : { diffLines: extra.diffLines }),
    ...(end.status === "succeeded"
      ? {}
      : { ...(end.reasonCode ? { reasonCode: end.reasonCode } : {}), reason: (end.reason ?? "").slice(0, 2000) }),
    ...(extra.traceId ? { traceId: extra.traceId } : {}),
  };
}

/**
 * The test oracle: a candidate whose tests all passed first; then more tests passed, then fewer
 * failed, then the smaller diff (an unmeasured one counts as the largest), then the lower number.
 * Returns the order, the winner (the first, when it passed) and why in words.
 */
export function rankCandidates(scores: readonly CandidateScore[]): { order: number[]; winner?: number; reason: string } {
  const rank = (s: CandidateScore) => (s.status === "passed" ? 0 : s.status === "failed" ? 1 : 2);
  const sorted = [...scores].sort(
    (a, b) =>
      rank(a) - rank(b) ||
      (b.testsPassed ?? 0) - (a.testsPassed ?? 0) ||
      (a.testsFailed ?? 0) - (b.testsFailed ?? 0) ||
      (a.diffLines ?? Number.POSITIVE_INFINITY) - (b.diffLines ?? Number.POSITIVE_INFINITY) ||
      a.candidate - b.candidate,
  );
  const best = sorted[0];
  const order = sorted.map((s) => s.candidate);
  if (!best || best.status !== "passed")
    return { order, reason: `no candidate passed its tests (${scores.length} ran; the best was candidate ${best?.candidate ?? "-"})` };
  const passed = sorted.filter((s) => s.status === "passed");
  const why =
    passed.length === 1
      ? "the only candidate whose tests passed"
      : passed[1] && (passed[1].testsPassed ?? 0) < (best.testsPassed ?? 0)
        ? `its tests passed, and more of them (${best.testsPassed ?? 0})`
        : passed[1] && (passed[1].testsFailed ?? 0) > (best.testsFailed ?? 0)
          ? "its tests passed, with fewer failures"
          : passed[1] && (passed[1].diffLines ?? Number.POSITIVE_INFINITY) > (best.diffLines ?? Number.POSITIVE_INFINITY)
            ? `its tests passed as the others' did, with the smallest change (${best.diffLines} lines)`
            : "its tests passed as the others' did; the lowest number among equals";
  return { order, winner: best.candidate, reason: `candidate ${best.candidate}: ${why}` };
}

/** Lines added plus removed in a `git diff --numstat` (binary files count 1 each); undefined when unreadable. */
export function numstatLines(text: string): number | undefined {
  let total = 0;
  let seen = false;
  for (const line of text.split("\n")) {
    const m = /^(\d+|-)\t(\d+|-)\t/.exec(line);
    if (!m) continue;
    seen = true;
    total += m[1] === "-" || m[2] === "-" ? 1 : Number(m[1]) + Number(m[2]);
  }
  return seen || text.trim() === "" ? total : undefined;
}

/**
 * The size of a candidate's change, measured by its own git in its container (the runner never
 * reads a tree a container can still write). It can only misstate its own size, which ranks after
 * its tests; the output is bounded and parsed as numbers.
 */
export async function measureDiff(run: Pick<RunHandle, "exec">, signal: AbortSignal): Promise<number | undefined> {
  let out = "";
  const r = await run
    .exec(["sh", "-c", "cd /workspace && git add -A >/dev/null 2>&1 && git diff --cached --numstat --no-renames"], {
      timeoutMs: 30_000,
      signal,
      onOutput: (stream, chunk) => {
        if (stream === "stdout" && out.length < 1_000_000) out += chunk.toString();
      },
    })
    .catch(() => undefined);
  return r?.exitCode === 0 ? numstatLines(out) : undefined;
}

/** One running candidate: its context (own slot, container, record and log) and how it ended. */
export type Candidate = {
  candidate: number;
  ctx: PhaseContext;
  /** Gives its slot and container back (candidate 1's are the attempt's own: the attempt does that). */
  dispose(): Promise<void>;
  end?: AttemptEnd;
  score?: CandidateScore;
};

export type CandidatesInput = {
  count: number;
  /** Candidate 1: the attempt's own container and slot, its context ready. */
  first: PhaseContext;
  /** Makes candidate n's container, slot and context (n ≥ 2). */
  start(n: number): Promise<Candidate>;
  /** The pipeline's hooks for candidate n (its events carry its number, its spans its own trace). */
  hooks(n: number): PipelineHooks;
  /** The candidate's own root span, ended when it is scored. */
  span(n: number): { ctx: Context; end(status: AttemptEnd): void; traceId?: string };
  publishSelection(data: EventData<"candidate.selected">): Promise<unknown>;
  log: Logger;
  signal: AbortSignal;
};

/**
 * Runs the candidates at once and picks one. Returns every candidate (the caller keeps the
 * losers' records and disposes of them) and the winner, or none when no candidate passed.
 */
export async function runCandidates(
  input: CandidatesInput,
): Promise<{ candidates: Candidate[]; winner?: Candidate; order: number[]; reason: string }> {
  const one = async (n: number): Promise<Candidate> => {
    const span = input.span(n);
    let c: Candidate | undefined;
    try {
      c = n === 1 ? { candidate: 1, ctx: input.first, dispose: async () => undefined } : await input.start(n);
      c.end = await runPipeline(CANDIDATE_PHASES, c.ctx, { ...input.hooks(n), traceContext: span.ctx });
      const diffLines = c.end.status === "succeeded" ? await measureDiff(c.ctx.run, input.signal) : undefined;
      c.score = scoreOf(n, c.end, c.ctx.record, {
        ...(diffLines === undefined ? {} : { diffLines }),
        ...(span.traceId ? { traceId: span.traceId } : {}),
      });
      span.end(c.end);
      return c;
    } catch (err) {
      const reason = `candidate ${n} could not run: ${errorMessage(err)}`;
      const end: AttemptEnd = isCodefleetError(err)
        ? { status: "failed", ...reasonOf(err, reason) }
        : { status: "failed", reasonCode: "internal_error", reason };
      input.log.warn({ candidate: n, error: errorMessage(err) }, "candidate could not run");
      span.end(end);
      return {
        candidate: n,
        ctx: c?.ctx ?? input.first,
        dispose: c?.dispose ?? (async () => undefined),
        end,
        score: scoreOf(n, end, {}, span.traceId ? { traceId: span.traceId } : {}),
      };
    }
  };
  const candidates = await Promise.all(Array.from({ length: input.count }, (_, i) => one(i + 1)));
  const scores = candidates.map((c) => c.score as CandidateScore);
  const ranked = rankCandidates(scores);
  await input.publishSelection({ ...(ranked.winner ? { winner: ranked.winner } : {}), candidates: scores, reason: ranked.reason });
  const winner = candidates.find((c) => c.candidate === ranked.winner);
  return { candidates, ...(winner ? { winner } : {}), order: ranked.order, reason: ranked.reason };
}

/** The end of an attempt none of whose candidates passed: the best one's, said to be the best of N. */
export function endWithoutWinner(candidates: readonly Candidate[], order: readonly number[], reason: string): AttemptEnd {
  const best = candidates.find((c) => c.candidate === order[0]);
  const end = best?.end ?? { status: "failed" as const };
  return { ...end, reason: `${reason}: ${end.reason ?? end.status}` };
}

import { errorMessage } from "@codefleet/contracts";
import { trace } from "@opentelemetry/api";
import type { WorkspaceReader } from "../execution/driver.js";
import { applyInContainer, dropSnapshot, packFromContainer, snapshotInContainer } from "../workspace/container-rebase.js";
import type { WorkspaceRebaser } from "../workspace/workspace-git.js";
import type { AttemptPhase, Facts, PhaseContext, PhaseReport } from "./phase.js";
import { stopWith } from "./phase.js";
import { runTests } from "./test.js";

const tracer = trace.getTracer("@codefleet/runner");

/** The most of a snapshot of the workspace the runner takes from the container (written to its scratch disk). */
export const MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024;
/** The most of the patch that brings the new base's changes into the workspace (held in memory while piped in). */
export const MAX_REBASE_PATCH_BYTES = 64 * 1024 * 1024;
/** How much of the conflicting paths a reason and a fact list. */
const MAX_LISTED_CHARS = 1800;

type Moved = { from: string; onto: string; branch: string };

/**
 * Which branch the task's base is, when it is one: only branches move. A commit id, a tag
 * (`refs/tags/…`) or another full ref does not; a short name is taken for a branch, and the
 * remote says whether it has one of that name (a tag of that name then does not move either).
 */
export function baseBranchOf(ref: string): { branch: string } | { fixed: string } {
  if (!ref) return { fixed: "no ref was resolved" };
  if (/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(ref)) return { fixed: `commit ${ref.slice(0, 12)}: a commit does not move` };
  if (ref.startsWith("refs/heads/")) return { branch: ref.slice("refs/heads/".length) };
  if (ref.startsWith("refs/")) return { fixed: `${ref}: only branches move` };
  return { branch: ref };
}

const REBASE_METHODS = ["baseTip", "treeOf", "importPack", "mergeOnto", "rebase", "moveOnto", "treeDiff"] as const;

/** The workspace's rebase methods, when the driver's reader has them (the git reader does). */
export function rebaserOf(ws: WorkspaceReader): WorkspaceRebaser | undefined {
  const w = ws as WorkspaceReader & Partial<WorkspaceRebaser>;
  return REBASE_METHODS.every((m) => typeof w[m] === "function") ? (w as WorkspaceReader & WorkspaceRebaser) : undefined;
}

const short = (sha: string) => sha.slice(0, 12);

/** Paths are the agent's: no control characters in a reason, and a bounded list. */
function listPaths(files: string[], count: number): string {
  let out = "";
  let shown = 0;
  for (const f of files) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: replacing control characters is the point
    const name = f.replace(/[\u0000-\u001f\u007f]/g, "?");
    const next = out ? `${out}, ${name}` : name;
    if (next.length > MAX_LISTED_CHARS) break;
    out = next;
    shown++;
  }
  return shown < count ? `${out}${out ? ", " : ""}… (${count - shown} more)` : out;
}

function conflictReport(ctx: PhaseContext, m: Moved, c: { files: string[]; count: number }, facts: Facts): PhaseReport {
  const list = ctx.masker.mask(listPaths(c.files, c.count));
  const reason = `the base branch ${m.branch} moved (${short(m.from)} → ${short(m.onto)}) and the change conflicts with it in ${c.count} file(s): ${list}`;
  ctx.log.system(`rebase: ${reason}`);
  trace.getActiveSpan()?.setAttribute("codefleet.rebase.conflicts", c.count);
  return {
    outcome: "failed",
    detail: reason,
    facts: { ...facts, conflicts: c.count, conflictingFiles: list.slice(0, 2000) },
    end: stopWith("rebase_conflict", reason),
  };
}

/** The base moved but the change cannot be taken onto it here: pushed on the base it ran on, as without a rebase. */
function notRebased(ctx: PhaseContext, why: string, facts: Facts): PhaseReport {
  const detail = `not rebased: ${why}; pushed on the base it ran on`;
  ctx.log.system(`rebase: ${detail}`);
  return { outcome: "skipped", detail, facts: { ...facts, rebased: false } };
}

/**
 * Between test and push: when the task's base branch moved while it ran, the change is taken onto
 * the branch's new tip. The runner fetches the tip into the attempt's object store. Without tests,
 * that is all: push merges the change onto it (objects only). With tests, the rebased tree must be
 * tested, and the container still runs, so the runner cannot read the tree (docs/security.md): the
 * container snapshots it as a commit and hands its objects out as a pack, the runner merges it
 * onto the new tip with `merge-tree` (objects only; a conflict ends the attempt with
 * `rebase_conflict` and the files), pipes the patch from the snapshot to the merge into `git apply`
 * in the container, and runs the tests again. Push then commits the tree on the new tip (merging
 * again, which finds the change already there and checks it).
 */
export const rebasePhase: AttemptPhase = {
  name: "rebase",
  appliesTo: (spec) => spec.push.enabled && spec.push.rebase !== false,
  async run(ctx): Promise<PhaseReport> {
    const from = ctx.record.baseSha;
    // a follow-up turn started at its branch's commit: the branch itself is what may have moved (a push by someone else meanwhile)
    const base = baseBranchOf(ctx.turn.fromCommit ? ctx.spec.push.branch : ctx.slot.ref || ctx.spec.repo.ref || "");
    if ("fixed" in base) return { outcome: "skipped", detail: `the base is fixed (${base.fixed})`, facts: { baseSha: from } };
    const { branch } = base;
    const ws = rebaserOf(await ctx.openWorkspace());
    if (!ws) return notRebased(ctx, "this workspace driver cannot rebase", { baseSha: from, baseBranch: branch });
    const remoteUrl = ctx.slot.remoteUrl;
    let onto: string | undefined;
    try {
      onto = await ws.baseTip(remoteUrl, branch, ctx.credentialsFor(remoteUrl));
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return notRebased(ctx, `the base branch could not be read (${ctx.masker.mask(errorMessage(err))})`, {
        baseSha: from,
        baseBranch: branch,
      });
    }
    if (!onto) return { outcome: "skipped", detail: `${branch} is not a branch of the remote: it does not move`, facts: { baseSha: from } };
    const facts: Facts = { baseSha: from, baseBranch: branch, newBaseSha: onto, moved: onto !== from };
    trace.getActiveSpan()?.setAttributes({ "codefleet.base.old": from, "codefleet.base.new": onto, "codefleet.base.branch": branch });
    if (onto === from) return { outcome: "skipped", detail: `${branch} has not moved`, facts };
    ctx.log.system(`rebase: the base branch ${branch} moved while the task ran: ${short(from)} → ${short(onto)}`);
    const moved: Moved = { from, onto, branch };
    if (!ctx.spec.test) {
      ctx.record.rebase = { ...moved, applied: false };
      return {
        outcome: "succeeded",
        detail: `${branch} moved to ${short(onto)}: push takes the change onto it (no tests to run again)`,
        facts: { ...facts, retested: false },
      };
    }
    return rebaseAndTest(ctx, ws, moved, facts);
  },
};

async function rebaseAndTest(ctx: PhaseContext, ws: WorkspaceRebaser, m: Moved, facts: Facts): Promise<PhaseReport> {
  const o = { signal: ctx.signal, timeoutMs: Math.max(1000, Math.min(ctx.remainingMs(), 600_000)) };
  const snap = await snapshotInContainer(ctx.run, m.from, o);
  if (!snap.ok) return notRebased(ctx, `the workspace could not be snapshotted in the container (${ctx.masker.mask(snap.detail)})`, facts);
  const { snapshot } = snap;
  try {
    try {
      await ws.importPack((write) => packFromContainer(ctx.run, snapshot, m.from, write, o), MAX_SNAPSHOT_BYTES);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return notRebased(ctx, `the workspace's snapshot was not taken (${ctx.masker.mask(errorMessage(err))})`, facts);
    }
    const [headTree, fromTree] = await Promise.all([ws.treeOf(snapshot.commit), ws.treeOf(m.from)]);
    if (headTree === fromTree) return { outcome: "skipped", detail: "the task changed nothing: nothing to rebase", facts };
    const merged = await ws.mergeOnto(snapshot.commit, m.from, m.onto);
    if (!merged.clean) return conflictReport(ctx, m, merged, facts);
    if (merged.tree === headTree) {
      ctx.record.rebase = { ...m, applied: true };
      return {
        outcome: "succeeded",
        detail: `rebased onto ${m.branch} at ${short(m.onto)}: the tested tree is unchanged`,
        facts: { ...facts, retested: false },
      };
    }
    const patch = await ws.treeDiff(headTree, merged.tree, MAX_REBASE_PATCH_BYTES);
    if (!patch) return notRebased(ctx, `the new base's changes are over ${MAX_REBASE_PATCH_BYTES} bytes`, facts);
    const applied = await applyInContainer(ctx.run, snapshot, patch, o);
    if (!applied.ok) {
      // the tree may be half changed now: not pushed
      const full = await ctx.workspaceFull();
      if (full !== undefined)
        return {
          outcome: "failed",
          detail: "the workspace is full",
          facts,
          end: stopWith("disk_limit", `the workspace is full: the task wrote past its disk limit (${full} bytes in use)`),
        };
      const reason = `the new base could not be applied to the workspace (did it change after the snapshot?): ${ctx.masker.mask(applied.detail)}`;
      return { outcome: "failed", detail: reason, facts, end: stopWith("rebase_conflict", reason) };
    }
    const files = countFiles(patch);
    ctx.log.system(`rebase: ${files} file(s) of ${m.branch} at ${short(m.onto)} brought into the workspace; the tests run again`);
    const tested = await tracer.startActiveSpan("rebase tests", async (span) => {
      try {
        const r = await runTests(ctx);
        span.setAttribute("codefleet.outcome", r.outcome);
        return r;
      } finally {
        span.end();
      }
    });
    const all: Facts = { ...facts, retested: true, filesChanged: files, ...tested.facts };
    if (tested.end) {
      const after = `after rebasing onto ${m.branch} at ${short(m.onto)}`;
      return {
        ...tested,
        detail: `${after}: ${tested.detail ?? tested.outcome}`,
        facts: all,
        end: { ...tested.end, reason: `${after}: ${tested.end.reason ?? tested.outcome}` },
      };
    }
    ctx.record.rebase = { ...m, applied: true };
    return { outcome: "succeeded", detail: `rebased onto ${m.branch} at ${short(m.onto)}; the tests passed again`, facts: all };
  } finally {
    await dropSnapshot(ctx.run, snapshot, o);
  }
}

function countFiles(patch: Buffer): number {
  let n = patch.subarray(0, 11).toString() === "diff --git " ? 1 : 0;
  for (let i = patch.indexOf("\ndiff --git "); i >= 0; i = patch.indexOf("\ndiff --git ", i + 1)) n++;
  return n;
}

/**
 * For push: the commit to push and the base it is on. When the base moved (the rebase phase said
 * so), the task's commit (on the old base) goes onto the new tip, message and trailer kept: as it
 * is when the workspace already holds the new base's changes (the rebase phase applied them and
 * the tests ran on that tree: what is pushed is what was tested), else merged onto it (a task
 * without tests), a conflict ending the attempt with `rebase_conflict`. The record's base and head
 * become the new tip and the rebased commit (the stored diff is the change as pushed).
 */
export async function onMovedBase(
  ctx: PhaseContext,
  ws: WorkspaceReader,
  head: string,
): Promise<{ sha: string; baseSha: string; facts: Facts; report?: undefined } | { report: PhaseReport }> {
  const m = ctx.record.rebase;
  const rb = m && rebaserOf(ws);
  if (!m || !rb) return { sha: head, baseSha: ctx.record.baseSha, facts: {} };
  const out: Awaited<ReturnType<WorkspaceRebaser["rebase"]>> = m.applied
    ? { kind: "rebased", ...(await rb.moveOnto(head, m.onto, ctx.settings.commitAuthor)) }
    : await rb.rebase(head, m.from, m.onto, ctx.settings.commitAuthor);
  const facts: Facts = { baseSha: m.onto, rebasedFrom: m.from };
  if (out.kind === "conflict") return { report: conflictReport(ctx, m, out, { ...facts, baseSha: m.from, newBaseSha: m.onto }) };
  if (!out.changed)
    return { report: { outcome: "skipped", detail: `nothing changed: ${m.branch} at ${short(m.onto)} already has the change` } };
  ctx.record.baseSha = m.onto;
  ctx.record.head = { sha: out.sha, workspace: ws };
  ctx.log.system(`rebase: the change is ${short(out.sha)} on ${m.branch} at ${short(m.onto)}`);
  return { sha: out.sha, baseSha: m.onto, facts };
}

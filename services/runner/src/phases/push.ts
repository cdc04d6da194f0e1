import { errorMessage } from "@codefleet/contracts";
import { findSecret, secretVariants } from "@codefleet/platform/runtime";
import type { WorkspaceReader } from "../execution/driver.js";
import { openPullRequestFor } from "../pull-requests/open.js";
import type { AttemptPhase, PhaseReport } from "./phase.js";
import { Superseded, stopWith } from "./phase.js";
import { onMovedBase } from "./rebase.js";

/**
 * The commit message, always carrying the task's trailer, and a follow-up turn's (how a later
 * attempt recognises its own push).
 */
export function commitMessageFor(
  spec: { title: string; push: { commitMessage?: string } },
  taskId: string,
  attempt: number,
  turn = 1,
): string {
  const turnTrailer = turn > 1 ? `Codefleet-Turn: ${turn}\n` : "";
  const message = spec.push.commitMessage ?? `${spec.title}\n\nCodefleet-Task: ${taskId}\n${turnTrailer}Codefleet-Attempt: ${attempt}\n`;
  if (message.includes("Codefleet-Task:") && (turn === 1 || message.includes(turnTrailer))) return message;
  return `${message.trimEnd()}\n\n${message.includes("Codefleet-Task:") ? "" : `Codefleet-Task: ${taskId}\n`}${turnTrailer}`;
}

/** Whether a commit's message says it is this task's push of this turn (turn 1 carries no turn trailer). */
export function isPushOf(message: string, taskId: string, turn: number): boolean {
  const trailers = message.split("\n").map((l) => l.trim());
  if (!trailers.includes(`Codefleet-Task: ${taskId}`)) return false;
  const turns = trailers.filter((l) => l.startsWith("Codefleet-Turn:")).map((l) => l.slice("Codefleet-Turn:".length).trim());
  return turn === 1 ? turns.length === 0 : turns.includes(String(turn));
}

/** Which of the task's secrets (by name) appears in what the commit adds, plain, base64 or URL-encoded. */
export async function findSecretInCommit(
  ws: Pick<WorkspaceReader, "addedText">,
  baseSha: string,
  headSha: string,
  secrets: Record<string, string>,
): Promise<string | undefined> {
  const values = Object.values(secrets);
  if (values.length === 0) return undefined;
  const nameOf = new Map(Object.entries(secrets).map(([name, value]) => [value, name]));
  // a variant cut across two pieces of the stream is found in the overlap kept from the first
  const overlap = Math.max(0, ...values.flatMap(secretVariants).map((v) => v.length - 1));
  let tail = "";
  let found: string | undefined;
  await ws.addedText(baseSha, headSha, (text) => {
    if (found) return;
    const window = tail + text;
    const hit = findSecret(window, values);
    if (hit !== undefined) found = nameOf.get(hit);
    tail = overlap > 0 ? window.slice(-overlap) : "";
  });
  return found;
}

/**
 * Reads the tree the agent left (as data, after its container is gone), commits it on the base
 * commit, refuses a change that carries one of the task's secrets, and pushes it to the task's
 * branch exactly once per task: an earlier attempt's push of the same task counts.
 */
export const pushPhase: AttemptPhase = {
  name: "push",
  async run(ctx): Promise<PhaseReport> {
    const { baseSha } = ctx.record;
    await ctx.removeContainer();
    const ws = await ctx.openWorkspace();
    const staged = await ws.stage();
    for (const s of staged.skipped.slice(0, 20)) ctx.log.system(`not committed: ${s.path} (${s.why})`);
    const onBase = await ws.commit(
      commitMessageFor(ctx.spec, ctx.taskId, ctx.attempt, ctx.turn.number),
      ctx.settings.commitAuthor,
      baseSha,
    );
    if (!onBase.changed) return { outcome: "skipped", detail: "nothing changed" };
    ctx.record.head = { sha: onBase.sha, workspace: ws };
    // the base branch moved while the task ran: the change goes onto its new tip (rebase.ts)
    const commit = await onMovedBase(ctx, ws, onBase.sha);
    if (commit.report) return commit.report;
    const leaked = await findSecretInCommit(ws, commit.baseSha, commit.sha, ctx.secrets);
    if (leaked) {
      const reason = `the change contains the value of secret ${leaked}: not pushed`;
      return { outcome: "failed", detail: reason, end: stopWith("secret_in_diff", reason) };
    }
    if (!ctx.spec.push.enabled) {
      ctx.record.pushedSha = commit.sha;
      return { outcome: "skipped", detail: "push disabled for this task", facts: { commitSha: commit.sha } };
    }
    const branch = ctx.spec.push.branch;
    const remoteUrl = ctx.slot.remoteUrl;
    const credentials = ctx.credentialsFor(remoteUrl);
    if (!(await ctx.fenceForPush())) throw new Superseded();
    // Pushed as a new branch (refused if it exists): one round trip in the common case. A follow-up
    // turn moves the branch on from the commit it started at (or the branch's tip it was rebased
    // onto), and only from there. Exactly one push per turn: when the branch has moved, an earlier
    // attempt's push of this turn counts.
    let refused: unknown;
    const from = ctx.turn.fromCommit ? commit.baseSha : undefined;
    await ws.push(remoteUrl, commit.sha, branch, credentials, from).catch((err) => {
      refused = err;
    });
    if (refused) {
      const remote = await ws.remoteBranch(remoteUrl, branch, credentials).catch(() => undefined);
      if (remote) {
        await ws.fetchBranch(remoteUrl, branch, credentials).catch(() => undefined);
        const message = await ws.commitMessage(remote).catch(() => "");
        if (isPushOf(message, ctx.taskId, ctx.turn.number)) {
          ctx.record.pushedSha = remote;
          return openPullRequestFor(ctx, {
            outcome: "skipped",
            detail: `already pushed by an earlier attempt (${remote.slice(0, 12)})`,
            facts: { commitSha: remote, branch, alreadyPushed: true },
          });
        }
        const reason = `branch ${branch} already exists on the remote with other work`;
        return { outcome: "failed", detail: reason, end: stopWith("push_rejected", reason) };
      }
      const reason = `push to ${branch} was rejected: ${ctx.masker.mask(errorMessage(refused))}`;
      return { outcome: "failed", detail: reason, end: stopWith("push_rejected", reason) };
    }
    ctx.record.pushedSha = commit.sha;
    // with spec.pullRequest: opened (or the open one updated) now; a failure ends the attempt, the push stands
    return openPullRequestFor(ctx, {
      outcome: "succeeded",
      detail: `pushed ${commit.sha.slice(0, 12)} to ${branch}`,
      facts: { commitSha: commit.sha, branch, ...commit.facts },
    });
  },
};

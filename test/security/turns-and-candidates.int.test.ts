import type { TaskView } from "@codefleet/contracts";
import { git, waitFor } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type Platform, scriptTask, startPlatform } from "./platform.js";

/**
 * Two host-side touches of agent data that follow-ups and best-of-N add:
 * - a follow-up starts from the commit the turn before pushed: the agent's own output comes back
 *   to the host as a checkout by repo-pool, and as the base of the runner's commit and push;
 * - a best-of-N candidate's change is measured by its own git in its container, whose output the
 *   runner reads.
 * Both must stay data: no marker on the host, links stay links, a flood is cut, and a candidate can
 * only misstate its own rank.
 */

let p: Platform;

beforeAll(async () => {
  p = await startPlatform({ databaseUrl: inject("databaseUrl"), natsUrl: inject("natsUrl") });
}, 240_000);

afterAll(async () => {
  await p?.stop();
});

const api = (path: string, init: RequestInit = {}) =>
  fetch(`${p.registryUrl}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${p.token}`, "content-type": "application/json", ...(init.headers ?? {}) },
  });

async function turnFinished(id: string, turn: number): Promise<TaskView> {
  let view: TaskView | undefined;
  await waitFor(
    `turn ${turn} of ${id} to finish`,
    async () => {
      view = (await (await api(`/v1/tasks/${id}`)).json()) as TaskView;
      return (
        view.turn === turn &&
        ["succeeded", "failed", "timed_out", "canceled"].includes(view.status) &&
        view.artifacts.some((a) => a.name === "task.log" && a.attempt >= (view?.turns.at(-1)?.firstAttempt ?? 1))
      );
    },
    120_000,
    250,
  );
  return view as TaskView;
}

describe("a follow-up starts from the agent's own pushed work, as data", () => {
  it("checks out and builds on a commit whose attributes name a filter, whose hooks dir and links point at the host: nothing runs outside the container", async () => {
    const m = p.markers;
    const turn1 = [
      // the agent's commit carries what would run on a host that trusted it: a filter driver named
      // by .gitattributes (configured nowhere the host reads), a .githooks dir, links out of the tree
      "printf '* filter=evil\\n*.sh diff=evil\\n' > .gitattributes",
      `mkdir -p .githooks && printf '#!/bin/sh\\nid > ${m}/follow-up-hook\\n' > .githooks/post-checkout && chmod +x .githooks/post-checkout`,
      "ln -s /etc/shadow shadow-link && ln -s / root-link",
      `git config filter.evil.smudge 'sh -c "id > ${m}/follow-up-smudge; cat"'`,
      "echo one > TURN.txt",
    ];
    const id = await p.submitOk(scriptTask(p, turn1));
    const first = await p.finished(id);
    expect(first.status, first.failureReason).toBe("succeeded");
    const sha1 = first.commitSha as string;

    const res = await api(`/v1/tasks/${id}/follow-ups`, {
      method: "POST",
      body: JSON.stringify({
        prompt: "go on",
        agent: {
          kind: "script",
          // the tree it starts in holds turn 1's links as links, and its own git is fresh
          steps: [
            { run: 'test -L shadow-link && test "$(readlink shadow-link)" = /etc/shadow && test -L root-link' },
            { run: 'test -z "$(git config --get filter.evil.smudge || true)"' },
            { run: "echo two >> TURN.txt" },
          ],
        },
      }),
    });
    expect(res.status).toBe(202);
    const second = await turnFinished(id, 2);
    expect(second.status, second.failureReason).toBe("succeeded");
    const sha2 = second.commitSha as string;
    expect(await git(p.repo.bare, "rev-parse", `${sha2}^`)).toBe(sha1);
    expect(await git(p.repo.bare, "show", `${sha2}:TURN.txt`)).toBe("one\ntwo");
    expect(await git(p.repo.bare, "cat-file", "-p", `${sha2}:shadow-link`)).toBe("/etc/shadow");
    expect(await git(p.repo.bare, "ls-tree", "-r", "--name-only", sha2)).not.toMatch(/(^|\/)\.git(\/|$)/m);
    expect(p.markersFound()).toEqual([]);
  }, 240_000);
});

describe("a best-of-N candidate's container answers only for itself", () => {
  it("a candidate that plants hooks and swaps its git for a link out of the tree is measured as unmeasured, and its change is read as data", async () => {
    const m = p.markers;
    const steps = [
      // hooks that would leave a marker if the runner's measurement (or anything) ran them on the host
      "mkdir -p .git/hooks",
      ...["pre-commit", "post-index-change", "reference-transaction"].map(
        (h) => `printf '#!/bin/sh\\nid > ${m}/candidate-${h}\\n' > .git/hooks/${h} && chmod +x .git/hooks/${h}`,
      ),
      'echo "candidate $CODEFLEET_CANDIDATE" > WHO.txt',
      // candidate 1 (the one whose tests pass) swaps its git for a link to the container's /etc
      'if [ "$CODEFLEET_CANDIDATE" = 1 ]; then rm -rf .git && ln -s /etc .git; fi',
    ];
    const id = await p.submitOk(scriptTask(p, steps, { candidates: 2, test: { command: 'grep -qx "candidate 1" WHO.txt' } }));
    const view = await p.finished(id, 180_000);
    expect(view.status, view.failureReason).toBe("succeeded");
    const commit = view.commitSha as string;
    expect(await git(p.repo.bare, "show", `${commit}:WHO.txt`)).toBe("candidate 1");
    const winner = view.candidates?.find((c) => c.winner);
    expect(winner?.candidate).toBe(1);
    // this platform allows one slot per repository: candidate 2 waited briefly for one, then was scored an error
    expect(view.candidates?.find((c) => c.candidate === 2)).toMatchObject({ status: "error", reasonCode: "no_capacity" });
    // no git answered in its container: its size is unmeasured, not a number it chose
    expect(winner?.diffLines).toBeUndefined();
    // the runner read the tree through its own git: the planted link is a link in the commit, not a repository
    expect(await git(p.repo.bare, "cat-file", "-p", `${commit}:.git`).catch(() => "absent")).toBe("absent");
    expect(await git(p.repo.bare, "ls-tree", "-r", "--name-only", commit)).not.toMatch(/(^|\/)\.git(\/|$)/m);
    expect(p.markersFound()).toEqual([]);
  }, 240_000);
});

import { type Forge, type ForgeTarget, type OpenPullRequest, ownerAndName, pullRequestRef } from "./forge.js";
import { type ForgeHttpOptions, forgeRequest, PullRequestError } from "./http.js";

/** Gitea's default WORK_IN_PROGRESS_PREFIXES: a title so marked is a draft. */
const WIP = /^\s*(wip:|\[wip\])\s*/i;
/** Pages of open pull requests a thorough lookup reads at most (50 each). */
const MAX_LIST_PAGES = 10;

type GiteaPull = {
  number?: unknown;
  html_url?: unknown;
  title?: unknown;
  state?: unknown;
  merged?: unknown;
  draft?: unknown;
  head?: unknown;
};

/**
 * Gitea (and Forgejo) through its REST API (`apiUrl` https://gitea.example/api/v1; there is no
 * official Node client): the open pull request of a branch is found by base and head (Gitea
 * 1.20+), and by listing open ones when that is not enough; a draft is a title marked `WIP:`.
 */
export function giteaForge(target: ForgeTarget, http: ForgeHttpOptions): Forge {
  const { owner, repo } = ownerAndName(target.repository);
  const root = `${target.apiUrl}/repos/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}`;
  const headers = { accept: "application/json", authorization: `token ${target.token}` };
  const get = (path: string) => forgeRequest(`${root}${path}`, { method: "GET", headers }, http);
  const send = (method: string, path: string, body: unknown) =>
    forgeRequest(
      `${root}${path}`,
      { method, headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(body) },
      http,
    );

  const openOf = (p: GiteaPull, head: string, what: string): OpenPullRequest | undefined => {
    const h = p.head as { ref?: unknown; repo?: { full_name?: unknown } | null } | undefined;
    if (p.state !== "open" || p.merged === true || h?.ref !== head) return undefined;
    // a fork's branch of the same name is not the task's
    if (h.repo && typeof h.repo.full_name === "string" && h.repo.full_name.toLowerCase() !== `${owner}/${repo}`.toLowerCase())
      return undefined;
    const title = typeof p.title === "string" ? p.title : "";
    return { ...pullRequestRef(p.html_url, p.number, what), title, draft: p.draft === true || WIP.test(title) };
  };

  return {
    provider: "gitea",
    async defaultBranch() {
      const r = (await get("")).json() as { default_branch?: unknown } | null;
      if (typeof r?.default_branch !== "string" || r.default_branch === "")
        throw new PullRequestError(`GET /repos/${owner}/${repo}: the answer names no default branch`, { retry: { kind: "never" } });
      return r.default_branch;
    },
    async findOpen(head, base, opts) {
      if (!opts?.thorough && !base.includes("/")) {
        try {
          const p = (
            await get(`/pulls/${encodeURIComponent(base)}/${head.split("/").map(encodeURIComponent).join("/")}`)
          ).json() as GiteaPull;
          return p ? openOf(p, head, "GET pulls/{base}/{head}") : undefined;
        } catch (err) {
          if (err instanceof PullRequestError && err.status === 404) return undefined;
          throw err;
        }
      }
      for (let page = 1; page <= MAX_LIST_PAGES; page++) {
        const list = (await get(`/pulls?state=open&sort=recentupdate&limit=50&page=${page}`)).json();
        if (!Array.isArray(list)) return undefined;
        for (const p of list as GiteaPull[]) {
          const found = p && typeof p === "object" ? openOf(p, head, "GET pulls") : undefined;
          if (found) return found;
        }
        if (list.length < 50) return undefined;
      }
      return undefined;
    },
    async create(pr) {
      const p = (
        await send("POST", "/pulls", { head: pr.head, base: pr.base, title: pr.draft ? `WIP: ${pr.title}` : pr.title, body: pr.body })
      ).json() as GiteaPull;
      return pullRequestRef(p?.html_url, p?.number, "POST pulls");
    },
    async update(existing, content) {
      const p = (
        await send("PATCH", `/pulls/${existing.number}`, {
          title: existing.draft ? `WIP: ${content.title}` : content.title,
          body: content.body,
        })
      ).json() as GiteaPull;
      return pullRequestRef(p?.html_url, p?.number, "PATCH pulls/{index}");
    },
  };
}

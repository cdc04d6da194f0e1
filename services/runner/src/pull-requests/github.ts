import { Octokit } from "@octokit/rest";
import { Response } from "undici";
import { type Forge, type ForgeTarget, type OpenPullRequest, ownerAndName, pullRequestRef } from "./forge.js";
import { type ForgeHttpOptions, forgeRequest, PullRequestError } from "./http.js";

/**
 * Octokit's `fetch`, made of {@link forgeRequest}: a time limit, a bounded answer, no redirect,
 * and an answer other than 2xx rejected as a classified {@link PullRequestError} (Octokit wraps
 * it in its RequestError; {@link unwrap} gets it back).
 */
function octokitFetch(http: ForgeHttpOptions) {
  return async (url: string, init: { method?: string; headers?: Record<string, string>; body?: unknown }) => {
    const res = await forgeRequest(
      url,
      {
        method: init.method ?? "GET",
        headers: init.headers ?? {},
        ...(typeof init.body === "string" ? { body: init.body } : {}),
      },
      http,
    );
    const empty = res.status === 204 || res.status === 205;
    return new Response(empty ? null : res.body, { status: res.status, headers: res.headers as never });
  };
}

/** The classified error under Octokit's RequestError (anything else is passed on as it is). */
function unwrap(err: unknown): unknown {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) if (e instanceof PullRequestError) return e;
  return err;
}

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/** GitHub (and GitHub Enterprise Server: `apiUrl` https://ghe.example/api/v3) through Octokit. */
export function githubForge(target: ForgeTarget, http: ForgeHttpOptions): Forge {
  const octokit = new Octokit({
    auth: target.token,
    baseUrl: target.apiUrl,
    userAgent: "codefleet-runner",
    log: quiet,
    request: { fetch: octokitFetch(http) },
  });
  const { owner, repo } = ownerAndName(target.repository);
  const gh = async <T>(f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (err) {
      throw unwrap(err);
    }
  };
  return {
    provider: "github",
    async defaultBranch() {
      const { data } = await gh(() => octokit.rest.repos.get({ owner, repo }));
      if (typeof data.default_branch !== "string" || data.default_branch === "")
        throw new PullRequestError(`GET /repos/${owner}/${repo}: the answer names no default branch`, { retry: { kind: "never" } });
      return data.default_branch;
    },
    async findOpen(head) {
      // `head` filters by `owner:branch`: the branch of this repository, not a fork's of the same
      // name; any base (someone may have retargeted it)
      const { data } = await gh(() => octokit.rest.pulls.list({ owner, repo, state: "open", head: `${owner}:${head}`, per_page: 10 }));
      const pr = data.find((p) => p.head?.ref === head && p.state === "open");
      if (!pr) return undefined;
      const found: OpenPullRequest = {
        ...pullRequestRef(pr.html_url, pr.number, "GET pulls"),
        title: pr.title,
        draft: pr.draft === true,
      };
      return found;
    },
    async create(pr) {
      const { data } = await gh(() =>
        octokit.rest.pulls.create({ owner, repo, title: pr.title, head: pr.head, base: pr.base, body: pr.body, draft: pr.draft }),
      );
      return pullRequestRef(data.html_url, data.number, "POST pulls");
    },
    async update(existing, content) {
      const { data } = await gh(() =>
        octokit.rest.pulls.update({ owner, repo, pull_number: existing.number, title: content.title, body: content.body }),
      );
      return pullRequestRef(data.html_url, data.number, "PATCH pulls");
    },
  };
}

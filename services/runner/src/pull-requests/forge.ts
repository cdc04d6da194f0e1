import type { PullRequestProvider } from "@codefleet/contracts";
import { PullRequestError, type RetryPolicy, withRetries } from "./http.js";

/** A pull (merge) request as the provider shows it: its web page and its number (GitLab: the iid). */
export type PullRequestRef = { url: string; number: number };
/** An open one found for the branch: what an update needs to keep (a draft stays a draft). */
export type OpenPullRequest = PullRequestRef & { title: string; draft: boolean };

/**
 * One provider's pull requests of one repository, through its official client (GitHub: Octokit,
 * GitLab: Gitbeaker) or its REST API (Gitea). Every call is one request (or a bounded few):
 * retries are the caller's, so every provider retries alike.
 */
export interface Forge {
  readonly provider: PullRequestProvider;
  /** The repository's default branch. */
  defaultBranch(): Promise<string>;
  /**
   * The open pull request from `head` (a branch of this repository) into `base`, if there is one.
   * `thorough`: the provider's cheap lookup was not enough (a create said one exists): look harder.
   */
  findOpen(head: string, base: string, opts?: { thorough?: boolean }): Promise<OpenPullRequest | undefined>;
  create(pr: { head: string; base: string; title: string; body: string; draft: boolean }): Promise<PullRequestRef>;
  /** New title and body; a draft marked by its title stays marked. */
  update(existing: OpenPullRequest, content: { title: string; body: string }): Promise<PullRequestRef>;
}

export type ForgeTarget = { provider: PullRequestProvider; apiUrl: string; repository: string; token: string };

export type OpenOrUpdateResult = PullRequestRef & { created: boolean; base: string };

/**
 * The task's pull request: the one open for `head` is updated (title and body), else one is
 * opened. Looked up first, so a redelivered push never opens a second; a create the provider
 * refuses because one exists after all (a race, or a lookup the provider answers late) becomes
 * an update of that one. Each call is retried on its own (a timeout, a 5xx, a 429 after its
 * Retry-After), so an answer lost after a create is found by the next lookup, not created twice.
 */
export async function openOrUpdate(
  forge: Forge,
  req: { head: string; base?: string; title: string; body: string; draft: boolean },
  retry: RetryPolicy,
): Promise<OpenOrUpdateResult> {
  const call = <T>(f: () => Promise<T>) => withRetries(f, retry);
  const base = req.base ?? (await call(() => forge.defaultBranch()));
  const content = { title: req.title, body: req.body };
  const existing = await call(() => forge.findOpen(req.head, base));
  if (existing) return { ...(await call(() => forge.update(existing, content))), created: false, base };
  try {
    return { ...(await call(() => forge.create({ head: req.head, base, ...content, draft: req.draft }))), created: true, base };
  } catch (err) {
    // GitHub 422 "A pull request already exists", GitLab and Gitea 409
    if (!(err instanceof PullRequestError) || (err.status !== 409 && err.status !== 422)) throw err;
    const found = await call(() => forge.findOpen(req.head, base, { thorough: true }));
    if (!found) throw err;
    return { ...(await call(() => forge.update(found, content))), created: false, base };
  }
}

/** A provider's answer, checked before anything of it is used: a web URL (http(s) only) and a number. */
export function pullRequestRef(url: unknown, number: unknown, what: string): PullRequestRef {
  if (typeof url !== "string" || !/^https?:\/\/[^\s]+$/.test(url) || url.length > 2000)
    throw new PullRequestError(`${what}: the answer has no http(s) URL of the pull request`, { retry: { kind: "never" } });
  if (typeof number !== "number" || !Number.isSafeInteger(number) || number < 1)
    throw new PullRequestError(`${what}: the answer has no pull request number`, { retry: { kind: "never" } });
  return { url, number };
}

/** `owner` and `name` of an `owner/name` repository (the schema and the policy checked its shape). */
export function ownerAndName(repository: string): { owner: string; repo: string } {
  const [owner = "", repo = ""] = repository.split("/");
  return { owner, repo };
}

/** The branch a task's `repo.ref` names, if it names one (not a commit, not a tag). */
export function branchOfRef(ref: string | undefined): string | undefined {
  if (!ref || ref === "HEAD" || /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(ref)) return undefined;
  if (ref.startsWith("refs/heads/")) return ref.slice("refs/heads/".length) || undefined;
  if (ref.startsWith("refs/")) return undefined;
  return ref;
}

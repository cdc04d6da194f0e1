import { DEFAULT_PULL_REQUEST_API_URLS, type PullRequestSpec } from "@codefleet/contracts";
import type { Forge, ForgeTarget } from "./forge.js";
import { giteaForge } from "./gitea.js";
import { githubForge } from "./github.js";
import { gitlabForge } from "./gitlab.js";
import { type ForgeHttpOptions, PullRequestError } from "./http.js";

/** The provider's client for a task's `spec.pullRequest` (its `apiUrl`, else the provider's public API). */
export function createForge(spec: PullRequestSpec, token: string, http: ForgeHttpOptions): Forge {
  const apiUrl = (spec.apiUrl ?? DEFAULT_PULL_REQUEST_API_URLS[spec.provider])?.replace(/\/+$/, "");
  if (!apiUrl) throw new PullRequestError(`pullRequest.apiUrl is required for ${spec.provider}`, { retry: { kind: "never" } });
  const target: ForgeTarget = { provider: spec.provider, apiUrl, repository: spec.repository, token };
  switch (spec.provider) {
    case "github":
      return githubForge(target, http);
    case "gitlab":
      return gitlabForge(target, http);
    case "gitea":
      return giteaForge(target, http);
  }
}

import { checkRepoUrl, type RepoUrlPolicy } from "@codefleet/contracts";
import { type CredentialRule, credentialsFor } from "./credentials.js";
import { type GitCredentials, GitError, type RemoteUrl } from "./git.js";

/**
 * Which repositories may be used, and which credentials go where: the operator's URL policy
 * (file:// and plain http:// refused unless allowed, an optional host allow-list) and git
 * credentials configured per host (or host and path prefix), sent to that host only.
 */
export type RepoAccess = {
  /** Throws `GitError` with the policy's stable code when the URL is refused. */
  check(cleanUrl: string): { file: boolean };
  /** Credentials for a remote: those embedded in its URL, else the operator's rule for its host (https, or http only where the rule says so). */
  credentialsFor(remote: RemoteUrl): GitCredentials | undefined;
};

export function createRepoAccess(policy: RepoUrlPolicy, rules: CredentialRule[]): RepoAccess {
  return {
    check(cleanUrl) {
      const verdict = checkRepoUrl(cleanUrl, policy);
      if (!verdict.ok) throw new GitError(verdict.code, verdict.message, "");
      return { file: verdict.scheme === "file" };
    },
    credentialsFor(remote) {
      // the submitter's own credentials go where the submitter sent them (over a transport the policy allowed)
      if (remote.embedded) return /^https?:\/\//.test(remote.clean) ? remote.embedded : undefined;
      return credentialsFor(remote.clean, rules);
    },
  };
}

/**
 * Credentials written into a repository URL (`https://user:token@host/…`, `https://token@host/…`,
 * `ssh://user:password@host/…`). The registry refuses them at submission: a task's URL reaches
 * events, views, spans and logs, so credentials belong in the operator's per-host configuration
 * (docs/security.md), never in the URL. A user name alone is not a credential for ssh
 * (`ssh://git@host/…`, `git@host:path`), but it is for http(s), where tokens go in the user name.
 */

const URL_AUTHORITY = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/]*)@/;

function userinfoOf(url: string): { scheme: string; userinfo: string; start: number; end: number } | undefined {
  const m = URL_AUTHORITY.exec(url);
  if (!m) return undefined;
  const scheme = (m[1] as string).toLowerCase();
  const authority = m[2] as string;
  const start = scheme.length + 3;
  // the user info ends at the last '@' of the authority
  return { scheme, userinfo: authority, start, end: start + authority.length + 1 };
}

/** Whether the URL carries a credential: a password (any scheme), or any user info on http(s). */
export function hasRepoUrlCredentials(url: string): boolean {
  const u = userinfoOf(url);
  if (!u) return false;
  if (u.scheme === "http" || u.scheme === "https") return true;
  return u.userinfo.includes(":");
}

/**
 * The URL without its credentials, for display and storage in views: http(s) lose the whole user
 * info, other schemes only the password (`ssh://git@host/…` stays). Other URLs come back unchanged.
 */
export function stripRepoUrlCredentials(url: string): string {
  const u = userinfoOf(url);
  if (!u || !hasRepoUrlCredentials(url)) return url;
  const keep = u.scheme === "http" || u.scheme === "https" ? "" : `${u.userinfo.slice(0, u.userinfo.indexOf(":"))}@`;
  return url.slice(0, u.start) + keep + url.slice(u.end);
}

import { csv } from "./csv.js";
import { CodefleetError } from "./errors.js";
import { DEFAULT_TENANT, TENANT_NAME_PATTERN } from "./events.js";
import {
  AGENTS_CALLING_MODEL_FROM_CONTAINER,
  DEFAULT_NETWORK_SETTINGS,
  NETWORK_MODES,
  type NetworkMode,
  type NetworkPolicySettings,
  networkPolicyOf,
  networkWithin,
} from "./network-policy.js";
import type { AgentSpec, PullRequestProvider, TaskSpec } from "./task-spec.js";

/**
 * What a task may point the platform at: which repository URLs it may make repo-pool and the
 * runner fetch from (and push to), which endpoints an agent may send a runner secret to, and
 * which tenants' tasks may use each runner secret.
 * Pure functions of a string and a policy: no I/O, no DNS. Messages never echo credentials.
 */

// ---------------------------------------------------------------------------------------------
// Repository URLs
// ---------------------------------------------------------------------------------------------

export type RepoUrlPolicy = {
  /** Absolute directories under which `file://` URLs and absolute paths are allowed. Empty: none are. */
  fileRoots: string[];
  /** Hosts (`host`, `host:port`, or `*`) plain `http://` is allowed for. Empty: none. */
  httpHosts: string[];
  /** Allow-list of `host[:port]` or `host[:port]/owner/...` path prefixes. Empty: any host. */
  allowedHosts: string[];
};

/** Refuses every local repository and plain http; allows any https/ssh/git host. */
export const DEFAULT_REPO_URL_POLICY: RepoUrlPolicy = { fileRoots: [], httpHosts: [], allowedHosts: [] };

export const REPO_URL_REFUSALS = ["repo_url_invalid", "repo_url_scheme_refused", "repo_url_file_refused", "repo_url_host_refused"] as const;
export type RepoUrlRefusal = (typeof REPO_URL_REFUSALS)[number];

export type RepoUrlScheme = "https" | "http" | "ssh" | "git" | "file";

export type RepoUrlAccepted = {
  ok: true;
  /** scp-like `user@host:path` reports "ssh"; an absolute path reports "file". */
  scheme: RepoUrlScheme;
  /** Lower-case host name, IPv4 address or bracketed IPv6 address; absent for file. */
  host?: string;
  /** The port when the URL names one. */
  port?: number;
  /** Normalized path: percent-decoded (URLs), without `.`/`..` segments or repeated slashes. */
  path: string;
};
export type RepoUrlRefused = { ok: false; code: RepoUrlRefusal; message: string };
export type RepoUrlCheck = RepoUrlAccepted | RepoUrlRefused;

const SCHEMES: readonly RepoUrlScheme[] = ["https", "http", "ssh", "git", "file"];
export const DEFAULT_PORTS: Readonly<Record<Exclude<RepoUrlScheme, "file">, number>> = { https: 443, http: 80, ssh: 22, git: 9418 };

// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const CONTROL_OR_SPACE = /[\s\u0000-\u001f\u007f-\u009f]/;
const SSH_USER = /^[A-Za-z0-9._~][A-Za-z0-9._~-]{0,63}$/;
const MAX_URL_LENGTH = 4096;

const refuse = (code: RepoUrlRefusal, message: string): RepoUrlRefused => ({ ok: false, code, message });

/**
 * Parses a git remote the way git will read it, without any policy: `scheme://` URLs, scp-like
 * `user@host:path`, and absolute local paths. Refuses what git could misread or run: transport
 * syntax (`ext::`, `fd::`), unknown schemes (remote helpers), option-like and control characters,
 * `\`, `?`, `#`, several `@` (parser differentials), encoded slashes and paths that climb above
 * their root.
 */
export function parseRepoUrl(raw: string): RepoUrlCheck {
  if (typeof raw !== "string" || raw.length === 0) return refuse("repo_url_invalid", "repository URL is empty");
  if (raw.length > MAX_URL_LENGTH) return refuse("repo_url_invalid", `repository URL is longer than ${MAX_URL_LENGTH} characters`);
  // git reads `<transport>::<address>` as "run git-remote-<transport>": ext:: runs a command.
  const transport = /^([A-Za-z0-9+.-]*)::/.exec(raw);
  if (transport) return refuse("repo_url_scheme_refused", `git transport syntax '${transport[1]?.slice(0, 32)}::' is not allowed`);
  if (raw.startsWith("-")) return refuse("repo_url_invalid", "repository URL must not start with '-'");
  if (CONTROL_OR_SPACE.test(raw)) return refuse("repo_url_invalid", "repository URL must not contain whitespace or control characters");
  if (/[\\?#]/.test(raw)) return refuse("repo_url_invalid", "repository URL must not contain '\\', '?' or '#'");

  const url = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(raw);
  if (url) return parseUrlForm((url[1] as string).toLowerCase(), raw.slice(url[0].length), raw);
  if (raw.startsWith("/")) return { ok: true, scheme: "file", path: normalizeAbsolutePath(raw) };
  return parseScpLike(raw);
}

function parseUrlForm(scheme: string, rest: string, raw: string): RepoUrlCheck {
  if (!(SCHEMES as readonly string[]).includes(scheme))
    return refuse("repo_url_scheme_refused", `URL scheme '${scheme.slice(0, 32)}' is not allowed (use https, ssh, git or file)`);
  if (scheme === "file") {
    if (!rest.startsWith("/")) return refuse("repo_url_file_refused", "file:// URLs must name no host: file:///absolute/path");
    const decoded = percentDecode(rest);
    if (decoded === undefined || CONTROL_OR_SPACE.test(decoded))
      return refuse("repo_url_invalid", "file:// URL has an invalid percent-encoding or encoded control characters");
    return { ok: true, scheme: "file", path: normalizeAbsolutePath(decoded) };
  }
  const slash = rest.indexOf("/");
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const rawPath = slash < 0 ? "" : rest.slice(slash);
  const at = authority.split("@");
  if (at.length > 2) return refuse("repo_url_invalid", "repository URL has more than one '@' before its path (percent-encode it)");
  const userinfo = at.length === 2 ? (at[0] as string) : undefined;
  const hostPort = at[at.length - 1] as string;
  if (userinfo !== undefined) {
    if (scheme === "git") return refuse("repo_url_invalid", "git:// URLs carry no user name");
    if (scheme === "ssh") {
      if (userinfo.includes(":")) return refuse("repo_url_invalid", "ssh:// URLs must not carry a password");
      const user = percentDecode(userinfo);
      if (user === undefined || !SSH_USER.test(user)) return refuse("repo_url_invalid", "ssh:// URL has an invalid user name");
    }
  }
  const hp = splitHostPort(hostPort);
  if (!hp) return refuse("repo_url_invalid", `${scheme}:// URL has an invalid host or port`);
  try {
    new URL(raw);
  } catch {
    return refuse("repo_url_invalid", `not a valid ${scheme}:// URL`);
  }
  const parts = pathParts(rawPath, true);
  if (typeof parts === "string") return refuse("repo_url_invalid", `${scheme}:// URL path ${parts}`);
  return {
    ok: true,
    scheme: scheme as RepoUrlScheme,
    host: hp.host,
    ...(hp.port === undefined ? {} : { port: hp.port }),
    path: `/${parts.join("/")}`,
  };
}

/** git's rule: no `://`, not a path, and a ':' before the first '/' (outside brackets): `[user@]host:path`. */
function parseScpLike(raw: string): RepoUrlCheck {
  const m = /^(?:([^@/:[\]]*)@)?(\[[^\]/]*\]|[^@/:[\]]*):(.*)$/.exec(raw);
  if (!m) {
    return refuse(
      "repo_url_file_refused",
      "relative local paths are not allowed (use https://, ssh://, git://, user@host:path or an absolute file:/// URL)",
    );
  }
  const [, user, host = "", path = ""] = m;
  if (user === undefined) {
    const name = host.toLowerCase();
    if (name === "file") return refuse("repo_url_file_refused", "write local repositories as file:///absolute/path");
    if ((SCHEMES as readonly string[]).includes(name)) return refuse("repo_url_invalid", `write ${name} URLs as ${name}://host/path`);
    return refuse(
      "repo_url_scheme_refused",
      `'${name.slice(0, 32)}:' is not an allowed URL scheme (scp-like SSH addresses need a user: user@host:path)`,
    );
  }
  if (!SSH_USER.test(user)) return refuse("repo_url_invalid", "scp-like address has an invalid user name");
  const h = normalizeHost(host);
  if (!h) return refuse("repo_url_invalid", "scp-like address has an invalid host");
  if (path.length === 0 || path.startsWith("-"))
    return refuse("repo_url_invalid", "scp-like address needs a path that does not start with '-'");
  if (path.includes("%")) return refuse("repo_url_invalid", "scp-like address path must not contain '%'");
  const parts = pathParts(path, false);
  if (typeof parts === "string") return refuse("repo_url_invalid", `scp-like address path ${parts}`);
  return { ok: true, scheme: "ssh", host: h, path: (path.startsWith("/") ? "/" : "") + parts.join("/") };
}

/** Path segments with `.`, `..` and empty segments resolved; a string says what is wrong. */
function pathParts(path: string, decode: boolean): string[] | string {
  const parts: string[] = [];
  for (const raw of path.split("/")) {
    let seg = raw;
    if (decode) {
      const decoded = percentDecode(raw);
      if (decoded === undefined) return "has an invalid percent-encoding";
      if (/[/\\]/.test(decoded) || CONTROL_OR_SPACE.test(decoded)) return "has an encoded '/', '\\' or control character";
      seg = decoded;
    }
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (parts.length === 0) return "climbs above its root with '..'";
      parts.pop();
      continue;
    }
    parts.push(seg);
  }
  return parts;
}

function percentDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** `/a//b/./c/../d` → `/a/b/d`; `..` at the root stays at the root, as the file system has it. */
export function normalizeAbsolutePath(path: string): string {
  const parts: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  return `/${parts.join("/")}`;
}

/** Is `path` the directory `root` or inside it, by whole path components (both normalized)? */
function isWithin(path: string, root: string): boolean {
  return root === "/" || path === root || path.startsWith(`${root}/`);
}

/**
 * A host as the URL parser canonicalizes it: lower case, IDNA-free ASCII, IPv4 in dotted
 * decimal, IPv6 compressed and bracketed. Undefined for anything that is not a plain host name.
 */
export function normalizeHost(raw: string): string | undefined {
  const lower = raw.toLowerCase();
  if (lower.startsWith("[")) {
    if (!/^\[[0-9a-f:.]+\]$/.test(lower)) return undefined;
  } else if (!/^[a-z0-9_][a-z0-9_.-]*$/.test(lower) || lower.length > 253) return undefined;
  try {
    const host = new URL(`http://${lower}/`).hostname;
    return host.length > 0 ? host : undefined;
  } catch {
    return undefined;
  }
}

/** `host`, `host:port`, `[v6]` or `[v6]:port`. */
export function splitHostPort(s: string): { host: string; port?: number } | undefined {
  let host: string;
  let rest: string;
  if (s.startsWith("[")) {
    const end = s.indexOf("]");
    if (end < 0) return undefined;
    host = s.slice(0, end + 1);
    rest = s.slice(end + 1);
  } else {
    const colon = s.indexOf(":");
    host = colon < 0 ? s : s.slice(0, colon);
    rest = colon < 0 ? "" : s.slice(colon);
  }
  const normalized = normalizeHost(host);
  if (!normalized) return undefined;
  if (rest === "") return { host: normalized };
  if (!/^:[0-9]{1,5}$/.test(rest)) return undefined;
  const port = Number(rest.slice(1));
  if (port < 1 || port > 65535) return undefined;
  return { host: normalized, port };
}

/** A `host[:port][/path/prefix]` pattern: the form of allowedHosts and credential rules. */
export type HostPattern = { host: string; port?: number; path: string[] };

export function parseHostPattern(pattern: string): HostPattern | undefined {
  if (CONTROL_OR_SPACE.test(pattern) || /[\\?#@%]/.test(pattern)) return undefined;
  const closing = pattern.startsWith("[") ? pattern.indexOf("]") : -1;
  const slash = pattern.indexOf("/", Math.max(closing, 0));
  const hp = splitHostPort(slash < 0 ? pattern : pattern.slice(0, slash));
  if (!hp) return undefined;
  const path = slash < 0 ? [] : pattern.slice(slash + 1).split("/");
  while (path.length > 0 && path[path.length - 1] === "") path.pop(); // a trailing slash says nothing
  if (path.some((seg) => seg === "" || seg === "." || seg === "..")) return undefined;
  return { ...hp, path };
}

function effectivePort(target: { scheme: RepoUrlScheme; port?: number }): number | undefined {
  return target.port ?? (target.scheme === "file" ? undefined : DEFAULT_PORTS[target.scheme]);
}

const stripGitSuffix = (seg: string) => (seg.length > 4 && seg.endsWith(".git") ? seg.slice(0, -4) : seg);

/**
 * Does a URL fall under a pattern? The host must be equal (case-insensitive), the port equal when
 * the pattern names one, and the pattern's path a prefix of the URL's by whole components
 * (`acme` covers `acme/app.git`, not `acme-evil/app`; a `.git` suffix is ignored).
 */
export function hostPatternMatches(pattern: HostPattern, url: RepoUrlAccepted): boolean {
  if (url.host === undefined || url.host !== pattern.host) return false;
  if (pattern.port !== undefined && pattern.port !== effectivePort(url)) return false;
  const parts = url.path.split("/").filter((seg) => seg.length > 0);
  if (pattern.path.length > parts.length) return false;
  return pattern.path.every((seg, i) => stripGitSuffix(seg) === stripGitSuffix(parts[i] as string));
}

/** Is `host` (on `port`) in a list of `host`, `host:port` and `*` entries? */
export function hostListed(entries: readonly string[], host: string, port: number | undefined): boolean {
  return entries.some((entry) => {
    if (entry.trim() === "*") return true;
    const e = splitHostPort(entry.trim());
    return e !== undefined && e.host === host && (e.port === undefined || e.port === port);
  });
}

function hostDisplay(url: { host?: string; port?: number }): string {
  return url.port === undefined ? (url.host ?? "") : `${url.host}:${url.port}`;
}

const clip = (s: string, n = 200) => (s.length > n ? `${s.slice(0, n)}…` : s);

/**
 * Judges a task's repository URL against the operator's policy. Local repositories must lie under
 * a file root, plain http needs its host listed, and with an allow-list every remote must match it.
 */
export function checkRepoUrl(raw: string, policy: RepoUrlPolicy): RepoUrlCheck {
  const url = parseRepoUrl(raw);
  if (!url.ok) return url;
  if (url.scheme === "file") {
    const roots = policy.fileRoots.filter((r) => r.startsWith("/")).map(normalizeAbsolutePath);
    if (roots.length === 0)
      return refuse("repo_url_file_refused", "local repositories (file:// URLs and paths) are not allowed on this platform");
    if (!roots.some((root) => isWithin(url.path, root)))
      return refuse(
        "repo_url_file_refused",
        `local path '${clip(url.path)}' is not under an allowed directory (CODEFLEET_REPO_FILE_ROOTS)`,
      );
    return url;
  }
  const host = url.host as string;
  if (url.scheme === "http" && !hostListed(policy.httpHosts, host, effectivePort(url))) {
    return refuse(
      "repo_url_scheme_refused",
      `plain http:// to ${hostDisplay(url)} is not allowed: use https://, or have the operator list the host in CODEFLEET_REPO_HTTP_HOSTS`,
    );
  }
  if (policy.allowedHosts.length > 0) {
    const patterns = policy.allowedHosts.map(parseHostPattern).filter((p): p is HostPattern => p !== undefined);
    if (!patterns.some((p) => hostPatternMatches(p, url))) {
      return refuse(
        "repo_url_host_refused",
        `repository ${hostDisplay(url)}${url.path.startsWith("/") ? "" : ":"}${clip(url.path)} is not on an allowed host or path (CODEFLEET_REPO_ALLOWED_HOSTS)`,
      );
    }
  }
  return url;
}

// ---------------------------------------------------------------------------------------------
// Agent endpoints and the API keys sent to them
// ---------------------------------------------------------------------------------------------

/** Secret name → hosts (`host`, `host:port`, or `*`) an agent may send it to. */
export type SecretEndpointPolicy = Record<string, string[]>;

export type AgentKeyProblem = { code: "secret_endpoint_not_allowed" | "invalid_base_url"; message: string };

/** The secret an agent sends to its model endpoint as API key; undefined for kinds that send none. */
export function agentKeySecret(agent: AgentSpec): string | undefined {
  switch (agent.kind) {
    case "openai":
    case "opencode":
      return agent.apiKeySecret ?? "OPENAI_API_KEY";
    case "claude-code":
      return agent.apiKeySecret ?? "ANTHROPIC_API_KEY";
    default:
      return undefined;
  }
}

/** host and effective port of an http(s) base URL; undefined when it is not one. */
export function parseEndpointUrl(raw: string): { host: string; port: number } | undefined {
  if (CONTROL_OR_SPACE.test(raw) || raw.includes("\\")) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return undefined;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return undefined;
  const host = normalizeHost(url.hostname);
  if (!host) return undefined;
  return { host, port: url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80 };
}

/**
 * An agent naming its own `baseUrl` would send its API key there: that host must be listed for
 * the key's secret. Without a baseUrl the agent talks to the operator's endpoint: fine.
 */
export function agentKeyProblem(agent: AgentSpec, policy: SecretEndpointPolicy): AgentKeyProblem | undefined {
  const key = agentKeySecret(agent);
  if (key === undefined) return undefined;
  const baseUrl = "baseUrl" in agent ? agent.baseUrl : undefined;
  if (baseUrl === undefined) return undefined;
  const endpoint = parseEndpointUrl(baseUrl);
  if (!endpoint) return { code: "invalid_base_url", message: "agent.baseUrl must be an http:// or https:// URL" };
  const allowed = Object.hasOwn(policy, key) ? (policy[key] ?? []) : [];
  if (hostListed(allowed, endpoint.host, endpoint.port)) return undefined;
  return {
    code: "secret_endpoint_not_allowed",
    message:
      `agent '${agent.kind}' would send secret ${key} to ${endpoint.host}:${endpoint.port}, which is not an endpoint allowed ` +
      `for it (CODEFLEET_SECRET_ENDPOINTS); leave agent.baseUrl unset to use the operator's endpoint`,
  };
}

// ---------------------------------------------------------------------------------------------
// Pull requests: the runner sends the task's token to the provider's API
// ---------------------------------------------------------------------------------------------

/** The public API of each provider, used when `spec.pullRequest.apiUrl` is unset (Gitea has none). */
export const DEFAULT_PULL_REQUEST_API_URLS: Readonly<Record<PullRequestProvider, string | undefined>> = {
  github: "https://api.github.com",
  gitlab: "https://gitlab.com/api/v4",
  gitea: undefined,
};

export type PullRequestProblem = {
  code: "invalid_pull_request" | "invalid_base_url" | "secret_endpoint_not_allowed";
  message: string;
  field: string;
};

/**
 * A task's pull request against the policy: the runner sends `tokenSecret` to `apiUrl`, so a
 * custom `apiUrl` must be http(s) and its host listed for the secret (CODEFLEET_SECRET_ENDPOINTS),
 * like an agent's `baseUrl`; without one the token goes to the provider's public API. GitHub and
 * Gitea repositories are `owner/name`; Gitea has no public API to default to.
 */
export function pullRequestProblem(
  spec: Pick<TaskSpec, "pullRequest"> & Partial<Pick<TaskSpec, "push">>,
  policy: SecretEndpointPolicy,
): PullRequestProblem | undefined {
  const pr = spec.pullRequest;
  if (!pr) return undefined;
  if (spec.push?.enabled === false)
    return {
      code: "invalid_pull_request",
      message: "a pull request needs the branch pushed: push.enabled is false",
      field: "/pullRequest",
    };
  if (pr.provider !== "gitlab" && pr.repository.split("/").length !== 2)
    return {
      code: "invalid_pull_request",
      message: `a ${pr.provider} repository is owner/name, not '${clip(pr.repository, 100)}'`,
      field: "/pullRequest/repository",
    };
  if (pr.apiUrl === undefined) {
    if (DEFAULT_PULL_REQUEST_API_URLS[pr.provider] !== undefined) return undefined;
    return {
      code: "invalid_pull_request",
      message: `pullRequest.apiUrl is required for ${pr.provider} (e.g. https://gitea.example/api/v1)`,
      field: "/pullRequest/apiUrl",
    };
  }
  const endpoint = parseEndpointUrl(pr.apiUrl);
  if (!endpoint || !plainBaseUrl(pr.apiUrl))
    return {
      code: "invalid_base_url",
      message: "pullRequest.apiUrl must be an http:// or https:// URL without credentials, query or fragment",
      field: "/pullRequest/apiUrl",
    };
  const allowed = Object.hasOwn(policy, pr.tokenSecret) ? (policy[pr.tokenSecret] ?? []) : [];
  if (hostListed(allowed, endpoint.host, endpoint.port)) return undefined;
  return {
    code: "secret_endpoint_not_allowed",
    message:
      `the pull request would send secret ${pr.tokenSecret} to ${endpoint.host}:${endpoint.port}, which is not an endpoint allowed ` +
      `for it (CODEFLEET_SECRET_ENDPOINTS); leave pullRequest.apiUrl unset to use the provider's public API`,
    field: "/pullRequest/apiUrl",
  };
}

/** No `user:password@`, no `?query`, no `#fragment`: a base URL paths are appended to. */
function plainBaseUrl(raw: string): boolean {
  try {
    const url = new URL(raw);
    return url.username === "" && url.password === "" && url.search === "" && url.hash === "" && !raw.includes("?") && !raw.includes("#");
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Which tenants may use each secret
// ---------------------------------------------------------------------------------------------

/**
 * Secret name → tenants whose tasks may use it (`*`: every tenant). A secret without an entry is
 * the `default` tenant's only: a single-tenant deployment (every task is `default`) needs no
 * entry, and a new tenant gets none of the runner's secrets until the operator lists it.
 */
export type SecretTenantPolicy = Record<string, string[]>;

export type SecretTenantProblem = {
  code: "secret_not_allowed_for_tenant";
  message: string;
  /** The names refused, in the order the task named them. */
  names: string[];
};

/** The runner secrets a task uses: the ones it names, its agent's model key, and its pull request's token. */
export function taskSecretNames(spec: Pick<TaskSpec, "secrets" | "agent"> & Partial<Pick<TaskSpec, "pullRequest">>): string[] {
  const key = agentKeySecret(spec.agent);
  const token = spec.pullRequest?.tokenSecret;
  return [...new Set([...(spec.secrets ?? []), ...(key === undefined ? [] : [key]), ...(token === undefined ? [] : [token])])];
}

export function secretAllowedForTenant(name: string, tenant: string, policy: SecretTenantPolicy): boolean {
  const allowed = Object.hasOwn(policy, name) ? (policy[name] ?? []) : [DEFAULT_TENANT];
  return allowed.includes("*") || allowed.includes(tenant);
}

/**
 * The secrets of `names` a task of `tenant` may not use. Decided by the policy alone, before any
 * value is looked up: the answer (and its message) is the same whether the runner has the secret
 * or not.
 */
export function secretTenantProblem(names: readonly string[], tenant: string, policy: SecretTenantPolicy): SecretTenantProblem | undefined {
  const refused = [...new Set(names)].filter((name) => !secretAllowedForTenant(name, tenant, policy));
  if (refused.length === 0) return undefined;
  return {
    code: "secret_not_allowed_for_tenant",
    message: `tasks of tenant '${tenant}' may not use secret(s) ${refused.join(", ")} (CODEFLEET_SECRET_TENANTS)`,
    names: refused,
  };
}

// ---------------------------------------------------------------------------------------------
// Webhook URLs (spec.notify): the registry itself makes these requests, so SSRF matters
// ---------------------------------------------------------------------------------------------

export type WebhookUrlPolicy = {
  /** Hosts (`host`, `host:port`, or `*`) plain `http://` webhooks are allowed for. Empty: none. */
  httpHosts: string[];
  /**
   * Hosts (`host`, `host:port`, or `*`) that may be, or resolve to, a loopback, private,
   * link-local or otherwise non-public address. Empty: none may.
   */
  privateHosts: string[];
};

/** https only, public addresses only. */
export const DEFAULT_WEBHOOK_URL_POLICY: WebhookUrlPolicy = { httpHosts: [], privateHosts: [] };

export const WEBHOOK_URL_REFUSALS = ["webhook_url_invalid", "webhook_url_scheme_refused", "webhook_url_address_refused"] as const;
export type WebhookUrlRefusal = (typeof WEBHOOK_URL_REFUSALS)[number];
export type WebhookUrlAccepted = {
  ok: true;
  scheme: "https" | "http";
  /** Lower-case host name, IPv4 address, or bracketed IPv6 address. */
  host: string;
  /** The effective port. */
  port: number;
  /** The host is allowed to be (or resolve to) a non-public address. */
  privateAllowed: boolean;
};
export type WebhookUrlCheck = WebhookUrlAccepted | { ok: false; code: WebhookUrlRefusal; message: string };

const MAX_WEBHOOK_URL_LENGTH = 2048;

/** IPv4 dotted quad → 32-bit number; undefined when not one. */
function ipv4ToNumber(ip: string): number | undefined {
  const parts = ip.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^[0-9]{1,3}$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

const V4_RANGES: readonly [string, number, string][] = [
  ["0.0.0.0", 8, "unspecified"],
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "shared (CGNAT)"],
  ["127.0.0.0", 8, "loopback"],
  ["169.254.0.0", 16, "link-local"],
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "IETF protocol assignments"],
  ["192.0.2.0", 24, "documentation"],
  ["192.88.99.0", 24, "6to4 relay"],
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "benchmarking"],
  ["198.51.100.0", 24, "documentation"],
  ["203.0.113.0", 24, "documentation"],
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved"],
];

function v4Reason(n: number): string | undefined {
  for (const [base, bits, reason] of V4_RANGES) {
    const b = ipv4ToNumber(base) as number;
    const size = 2 ** (32 - bits);
    if (n >= b && n < b + size) return reason;
  }
  return undefined;
}

/** IPv6 text (no brackets, no zone) → eight 16-bit groups; undefined when not one. */
function ipv6Groups(ip: string): number[] | undefined {
  if (!/^[0-9a-f:.]+$/i.test(ip)) return undefined;
  let text = ip.toLowerCase();
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const v4 = ipv4ToNumber(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    tail = [Math.floor(v4 / 65536), v4 % 65536];
    text = `${text.slice(0, lastColon + 1)}${tail.length ? "0:0" : ""}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const parse = (h: string) => (h === "" ? [] : h.split(":").map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? Number.parseInt(g, 16) : Number.NaN)));
  const head = parse(halves[0] as string);
  const rest = halves.length === 2 ? parse(halves[1] as string) : [];
  if ([...head, ...rest].some(Number.isNaN)) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else groups = head;
  if (groups.length !== 8) return undefined;
  if (tail.length) groups.splice(6, 2, ...tail);
  return groups;
}

/**
 * Why an address is not a public unicast one (`loopback`, `private`, `link-local`, …), or
 * undefined for a public address. IPv4, IPv6 (with or without brackets) and IPv4-mapped,
 * NAT64 and 6to4 forms (judged by the IPv4 address inside). Anything unparseable is refused.
 */
export function nonPublicAddressReason(address: string): string | undefined {
  const ip = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address;
  const v4 = ipv4ToNumber(ip);
  if (v4 !== undefined) return v4Reason(v4);
  const g = ipv6Groups(ip.split("%")[0] as string);
  if (!g) return "not an IP address";
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g;
  const embedded = (hi: number, lo: number) => v4Reason(hi * 65536 + lo);
  if (g.every((x) => x === 0)) return "unspecified";
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0 && g6 === 0 && g7 === 1) return "loopback";
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && (g5 === 0xffff || g5 === 0))
    return embedded(g6, g7) ?? (g5 === 0 ? "IPv4-compatible" : undefined); // ::ffff:a.b.c.d (and the deprecated ::a.b.c.d)
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return embedded(g6, g7); // NAT64
  if (g0 === 0x2002) return embedded(g1, g2) ?? undefined; // 6to4
  if ((g0 & 0xfe00) === 0xfc00) return "unique local (private)";
  if ((g0 & 0xffc0) === 0xfe80) return "link-local";
  if ((g0 & 0xffc0) === 0xfec0) return "site-local";
  if ((g0 & 0xff00) === 0xff00) return "multicast";
  if (g0 === 0x2001 && g1 === 0x0db8) return "documentation";
  if (g0 === 0x0100 && g1 === 0 && g2 === 0 && g3 === 0) return "discard-only";
  return undefined;
}

/** Is this string an IP address (v4, or v6 with or without brackets)? */
export function isIpAddress(host: string): boolean {
  const ip = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  return ipv4ToNumber(ip) !== undefined || ipv6Groups(ip) !== undefined;
}

/**
 * Judges a webhook URL (a task's `notify.url`) without DNS: http(s) only, plain http only for
 * listed hosts, no credentials, and no loopback/private/link-local literal address or
 * `localhost` name unless the host is listed in `privateHosts`. The registry checks the
 * addresses a name resolves to again when it connects (and connects to the address it checked),
 * so a public name pointing at a private address is refused too.
 */
export function checkWebhookUrl(raw: string, policy: WebhookUrlPolicy = DEFAULT_WEBHOOK_URL_POLICY): WebhookUrlCheck {
  const no = (code: WebhookUrlRefusal, message: string): WebhookUrlCheck => ({ ok: false, code, message });
  if (typeof raw !== "string" || raw.length === 0) return no("webhook_url_invalid", "webhook URL is empty");
  if (raw.length > MAX_WEBHOOK_URL_LENGTH)
    return no("webhook_url_invalid", `webhook URL is longer than ${MAX_WEBHOOK_URL_LENGTH} characters`);
  if (CONTROL_OR_SPACE.test(raw) || raw.includes("\\"))
    return no("webhook_url_invalid", "webhook URL must not contain whitespace, control characters or '\\'");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return no("webhook_url_invalid", "webhook URL is not a valid URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    return no("webhook_url_scheme_refused", `webhook URL scheme '${clip(url.protocol.replace(/:$/, ""), 32)}' is not allowed (use https)`);
  if (url.username !== "" || url.password !== "")
    return no("webhook_url_invalid", "webhook URLs must not carry credentials (user:password@)");
  // the WHATWG parser canonicalizes numeric and hexadecimal IPv4 forms (0x7f.1, 2130706433) to dotted decimal
  const host = normalizeHost(url.hostname);
  if (!host) return no("webhook_url_invalid", "webhook URL has an invalid host");
  const scheme = url.protocol === "https:" ? "https" : "http";
  const port = url.port ? Number(url.port) : scheme === "https" ? 443 : 80;
  if (scheme === "http" && !hostListed(policy.httpHosts, host, port))
    return no(
      "webhook_url_scheme_refused",
      `plain http:// to ${host}:${port} is not allowed: use https://, or have the operator list the host in CODEFLEET_WEBHOOK_HTTP_HOSTS`,
    );
  const privateAllowed = hostListed(policy.privateHosts, host, port);
  if (!privateAllowed) {
    const local =
      host === "localhost" || host.endsWith(".localhost") || host.endsWith(".local") || (!host.includes(".") && !isIpAddress(host));
    const reason = isIpAddress(host) ? nonPublicAddressReason(host) : local ? "a local name" : undefined;
    if (reason)
      return no(
        "webhook_url_address_refused",
        `webhook host ${host} is ${reason}: not allowed unless the operator lists it in CODEFLEET_WEBHOOK_PRIVATE_HOSTS`,
      );
  }
  return { ok: true, scheme, host, port, privateAllowed };
}

/**
 * May the registry connect to `address` (what a webhook's host resolved to)? Public addresses
 * always; a non-public one only when the URL's host is listed in `privateHosts`.
 */
export function webhookAddressProblem(address: string, url: Pick<WebhookUrlAccepted, "host" | "privateAllowed">): string | undefined {
  if (url.privateAllowed) return undefined;
  const reason = nonPublicAddressReason(address);
  return reason
    ? `webhook host ${url.host} resolves to a ${reason} address, which is not allowed (CODEFLEET_WEBHOOK_PRIVATE_HOSTS)`
    : undefined;
}

// ---------------------------------------------------------------------------------------------
// Loading from the environment
// ---------------------------------------------------------------------------------------------

export type SecurityPolicy = {
  repoUrls: RepoUrlPolicy;
  secretEndpoints: SecretEndpointPolicy;
  secretTenants: SecretTenantPolicy;
  /** Which webhook URLs a task's `notify` may name (absent: {@link DEFAULT_WEBHOOK_URL_POLICY}). */
  webhookUrls?: WebhookUrlPolicy;
  /** What task containers may reach (absent: {@link DEFAULT_NETWORK_SETTINGS}). */
  network?: NetworkPolicySettings;
};

/**
 * Why a task's network policy cannot be run, or undefined: above the operator's ceiling, `none`
 * for an agent that calls its model from its container, an allow-list naming an address the
 * egress proxy would refuse anyway (private, loopback, link-local).
 */
export function networkPolicyProblem(
  spec: Pick<TaskSpec, "network" | "agent">,
  settings: NetworkPolicySettings = DEFAULT_NETWORK_SETTINGS,
): { code: "network_not_allowed"; message: string } | undefined {
  const policy = networkPolicyOf(spec.network, settings.default);
  const refuse = (message: string) => ({ code: "network_not_allowed" as const, message });
  if (!networkWithin(policy.mode, settings.ceiling))
    return refuse(`network '${policy.mode}' is above what this platform allows ('${settings.ceiling}', CODEFLEET_NETWORK_CEILING)`);
  if (policy.mode === "none" && AGENTS_CALLING_MODEL_FROM_CONTAINER.has(spec.agent.kind))
    return refuse(`the ${spec.agent.kind} agent calls its model from its container: network 'none' leaves it no way to; use 'llm'`);
  for (const host of policy.allow) {
    const reason = isIpAddress(host)
      ? nonPublicAddressReason(host)
      : host === "localhost" || host.endsWith(".localhost")
        ? "loopback"
        : undefined;
    if (reason) return refuse(`network.allow names ${host}, a ${reason} address: task containers never reach those`);
  }
  return undefined;
}

export const DEFAULT_SECURITY_POLICY: SecurityPolicy = { repoUrls: DEFAULT_REPO_URL_POLICY, secretEndpoints: {}, secretTenants: {} };

const SECRET_NAME = /^[A-Z_][A-Z0-9_]{0,127}$/;

function configError(message: string): CodefleetError {
  return new CodefleetError("invalid_config", message, { retry: { kind: "never" } });
}

function hostEntry(variable: string, entry: string): string {
  if (entry === "*") return entry;
  const hp = splitHostPort(entry);
  if (!hp) throw configError(`${variable}: '${clip(entry, 100)}' is not a host, host:port or *`);
  return hp.port === undefined ? hp.host : `${hp.host}:${hp.port}`;
}

/**
 * The security policy from the environment (only the record passed in is read):
 * - CODEFLEET_REPO_FILE_ROOTS: csv of absolute directories local repositories may lie under
 * - CODEFLEET_REPO_HTTP_HOSTS: csv of `host`, `host:port` or `*` plain http:// is allowed for
 * - CODEFLEET_REPO_ALLOWED_HOSTS: csv of `host[:port][/path/prefix]`; unset: any host
 * - CODEFLEET_SECRET_ENDPOINTS: JSON object, secret name → array of `host`, `host:port` or `*`
 * - CODEFLEET_SECRET_TENANTS: JSON object, secret name → array of tenant names or `*`
 * - CODEFLEET_WEBHOOK_HTTP_HOSTS: csv of `host`, `host:port` or `*` plain http:// webhooks may use
 * - CODEFLEET_WEBHOOK_PRIVATE_HOSTS: csv of `host`, `host:port` or `*` webhooks may reach on
 *   loopback, private or link-local addresses
 * - CODEFLEET_NETWORK_DEFAULT, CODEFLEET_NETWORK_CEILING: `none`, `llm`, `allow` or `open`: the
 *   network of tasks that name none (default `llm`), and the most a task may ask for (default `open`)
 * Unset, every local path, plain http and custom agent endpoint is refused, and every secret is
 * the `default` tenant's only.
 */
export function securityPolicyFromEnv(env: Record<string, string | undefined>): SecurityPolicy {
  const fileRoots = csv(env.CODEFLEET_REPO_FILE_ROOTS).map((root) => {
    if (!root.startsWith("/") || CONTROL_OR_SPACE.test(root))
      throw configError(`CODEFLEET_REPO_FILE_ROOTS: '${clip(root, 100)}' is not an absolute directory`);
    return normalizeAbsolutePath(root);
  });
  const httpHosts = csv(env.CODEFLEET_REPO_HTTP_HOSTS).map((h) => hostEntry("CODEFLEET_REPO_HTTP_HOSTS", h));
  const allowedHosts = csv(env.CODEFLEET_REPO_ALLOWED_HOSTS).map((entry) => {
    const p = parseHostPattern(entry);
    if (!p) throw configError(`CODEFLEET_REPO_ALLOWED_HOSTS: '${clip(entry, 100)}' is not host[:port][/path/prefix]`);
    return `${p.port === undefined ? p.host : `${p.host}:${p.port}`}${p.path.map((s) => `/${s}`).join("")}`;
  });
  return {
    repoUrls: { fileRoots, httpHosts, allowedHosts },
    secretEndpoints: secretEndpointsFromJson(env.CODEFLEET_SECRET_ENDPOINTS),
    secretTenants: secretTenantsFromJson(env.CODEFLEET_SECRET_TENANTS),
    // absent when neither is set: the default (https, public addresses only)
    ...(env.CODEFLEET_WEBHOOK_HTTP_HOSTS || env.CODEFLEET_WEBHOOK_PRIVATE_HOSTS
      ? {
          webhookUrls: {
            httpHosts: csv(env.CODEFLEET_WEBHOOK_HTTP_HOSTS).map((h) => hostEntry("CODEFLEET_WEBHOOK_HTTP_HOSTS", h)),
            privateHosts: csv(env.CODEFLEET_WEBHOOK_PRIVATE_HOSTS).map((h) => hostEntry("CODEFLEET_WEBHOOK_PRIVATE_HOSTS", h)),
          },
        }
      : {}),
    ...(env.CODEFLEET_NETWORK_DEFAULT || env.CODEFLEET_NETWORK_CEILING ? { network: networkSettingsFromEnv(env) } : {}),
  };
}

function networkSettingsFromEnv(env: Record<string, string | undefined>): NetworkPolicySettings {
  const mode = (variable: string, fallback: NetworkMode): NetworkMode => {
    const raw = env[variable]?.trim();
    if (!raw) return fallback;
    if (!(NETWORK_MODES as readonly string[]).includes(raw))
      throw configError(`${variable}: '${clip(raw, 40)}' is not one of ${NETWORK_MODES.join(", ")}`);
    return raw as NetworkMode;
  };
  const settings = {
    default: mode("CODEFLEET_NETWORK_DEFAULT", DEFAULT_NETWORK_SETTINGS.default),
    ceiling: mode("CODEFLEET_NETWORK_CEILING", DEFAULT_NETWORK_SETTINGS.ceiling),
  };
  if (!networkWithin(settings.default, settings.ceiling))
    throw configError(`CODEFLEET_NETWORK_DEFAULT '${settings.default}' is above CODEFLEET_NETWORK_CEILING '${settings.ceiling}'`);
  return settings;
}

/**
 * A JSON object of secret name → array of strings from an environment variable, each string checked
 * and turned into an entry by `entry`; anything else is a configuration error naming the variable.
 */
function secretMapFromJson<T>(
  variable: string,
  raw: string | undefined,
  shape: string,
  items: string,
  entry: (name: string, value: string) => T,
): Record<string, T[]> {
  if (raw === undefined || raw.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw configError(`${variable} is not valid JSON: ${shape}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw configError(`${variable}: ${shape}`);
  const map: Record<string, T[]> = {};
  for (const [name, values] of Object.entries(parsed)) {
    if (!SECRET_NAME.test(name)) throw configError(`${variable}: '${clip(name, 100)}' is not a secret name (A-Z, 0-9, _)`);
    if (!Array.isArray(values) || values.some((v) => typeof v !== "string"))
      throw configError(`${variable}: the value of ${name} must be an array of ${items}`);
    map[name] = (values as string[]).map((v) => entry(name, v.trim()));
  }
  return map;
}

function secretEndpointsFromJson(raw: string | undefined): SecretEndpointPolicy {
  const variable = "CODEFLEET_SECRET_ENDPOINTS";
  return secretMapFromJson(
    variable,
    raw,
    `expected a JSON object like {"OPENAI_API_KEY": ["api.openai.com", "llm.internal:8443"]}`,
    "host strings",
    (name, host) => hostEntry(`${variable} (${name})`, host),
  );
}

const TENANT_RE = new RegExp(TENANT_NAME_PATTERN);

function secretTenantsFromJson(raw: string | undefined): SecretTenantPolicy {
  const variable = "CODEFLEET_SECRET_TENANTS";
  return secretMapFromJson(
    variable,
    raw,
    `expected a JSON object like {"NPM_TOKEN": ["team-a", "team-b"], "OPENAI_API_KEY": ["*"]}`,
    "tenant names",
    (name, tenant) => {
      if (tenant !== "*" && !TENANT_RE.test(tenant))
        throw configError(`${variable} (${name}): '${clip(tenant, 100)}' is not a tenant name (${TENANT_NAME_PATTERN}) or *`);
      return tenant;
    },
  );
}

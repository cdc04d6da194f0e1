import { readFileSync } from "node:fs";
import { CodefleetError, type HostPattern, hostPatternMatches, parseHostPattern, parseRepoUrl } from "@codefleet/contracts";
import { csv } from "@codefleet/platform/runtime";
import type { GitCredentials } from "./git.js";

/**
 * Git credentials per host: each rule names the host (or host and path prefix) its secret may be
 * sent to, and a secret only goes where its kind of transport is encrypted and authenticated: a
 * password to https:// remotes, an SSH key to ssh:// and scp-like remotes; never http://, git://
 * or file://. Credentials embedded in a URL are handled elsewhere.
 */

export type CredentialRule = {
  /** `host`, `host:port` or `host[:port]/path/prefix`: the host compared exactly (case-insensitive), the path by whole components. */
  match: string;
  /** HTTPS user name (default x-access-token). */
  username?: string;
  /** HTTPS password or token. */
  password?: string;
  /** SSH private key file. */
  sshKeyFile?: string;
  /**
   * Also send the password over plain http:// to this host (an internal server on a trusted
   * network, a test server): off unless said, and the URL policy must allow http for the host.
   */
  insecureHttp?: boolean;
};

/**
 * The credentials for a remote URL: of the rules whose pattern covers the URL and that hold a
 * credential for its transport (a password for https, an SSH key for ssh), the most specific one
 * (longest path prefix, then one naming a port; the first on a tie). Undefined when none applies.
 */
export function credentialsFor(url: string, rules: readonly CredentialRule[]): GitCredentials | undefined {
  const parsed = parseRepoUrl(url);
  if (!parsed.ok) return undefined;
  const kind = parsed.scheme === "https" || parsed.scheme === "http" ? "password" : parsed.scheme === "ssh" ? "sshKeyFile" : undefined;
  if (!kind) return undefined;
  let best: { rule: CredentialRule; score: number } | undefined;
  for (const rule of rules) {
    if (!rule[kind]) continue;
    if (parsed.scheme === "http" && rule.insecureHttp !== true) continue;
    const pattern = parseHostPattern(rule.match);
    if (!pattern || !hostPatternMatches(pattern, parsed)) continue;
    const score = specificity(pattern);
    if (!best || score > best.score) best = { rule, score };
  }
  if (!best) return undefined;
  const { rule } = best;
  return kind === "password"
    ? { username: rule.username || "x-access-token", password: rule.password as string }
    : { sshKeyFile: rule.sshKeyFile as string };
}

function specificity(p: HostPattern): number {
  return p.path.length * 2 + (p.port === undefined ? 0 : 1);
}

export type ReadFile = (path: string) => string;

const readUtf8: ReadFile = (path) => readFileSync(path, "utf8");

function configError(message: string): CodefleetError {
  return new CodefleetError("invalid_config", message, { retry: { kind: "never" } });
}

/** Environment variables count as unset when empty (compose passes `GIT_PASSWORD=`). */
function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/**
 * Credential rules from the environment:
 * - GIT_CREDENTIALS_FILE: a JSON array of `{ "match", "username"?, "password"? | "passwordFile"?, "sshKeyFile"? }`
 * - GIT_PASSWORD (with GIT_USERNAME) and/or GIT_SSH_KEY_FILE, which need GIT_CREDENTIAL_HOSTS:
 *   a csv of the `match` patterns they may be sent to.
 * Rules from the file come first. Throws a config error naming the variable; never echoes a secret.
 */
export function loadCredentialRules(env: Record<string, string | undefined>, readFile: ReadFile = readUtf8): CredentialRule[] {
  const rules: CredentialRule[] = [];
  const file = nonEmpty(env.GIT_CREDENTIALS_FILE);
  if (file) rules.push(...rulesFromFile(file, readFile));

  const password = nonEmpty(env.GIT_PASSWORD);
  const sshKeyFile = nonEmpty(env.GIT_SSH_KEY_FILE);
  const username = nonEmpty(env.GIT_USERNAME);
  const hosts = csv(env.GIT_CREDENTIAL_HOSTS);
  if ((password || sshKeyFile) && hosts.length === 0) {
    const which = password ? "GIT_PASSWORD" : "GIT_SSH_KEY_FILE";
    const what = password ? "the token" : "the SSH key";
    throw configError(
      `${which} is set but GIT_CREDENTIAL_HOSTS is not: say which hosts ${what} may be sent to ` +
        `(a comma-separated list of host, host:port or host/path/prefix, e.g. GIT_CREDENTIAL_HOSTS=github.com/acme)`,
    );
  }
  if (password || sshKeyFile) {
    for (const match of hosts) {
      if (!parseHostPattern(match)) throw configError(`GIT_CREDENTIAL_HOSTS: '${clip(match)}' is not host[:port][/path/prefix]`);
      rules.push({
        match,
        ...(password ? { password, ...(username ? { username } : {}) } : {}),
        ...(sshKeyFile ? { sshKeyFile } : {}),
      });
    }
  }
  return rules;
}

const RULE_KEYS = new Set(["match", "username", "password", "passwordFile", "sshKeyFile", "insecureHttp"]);

function rulesFromFile(path: string, readFile: ReadFile): CredentialRule[] {
  const where = `GIT_CREDENTIALS_FILE (${clip(path)})`;
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    throw configError(`${where} cannot be read: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // the parser's message can quote the file, and the file holds secrets
    throw configError(`${where} is not valid JSON: expected [{ "match": "github.com/acme", "passwordFile": "/run/secrets/token" }, ...]`);
  }
  if (!Array.isArray(parsed)) throw configError(`${where} must hold a JSON array of rules`);
  return parsed.map((entry: unknown, i): CredentialRule => {
    const at = `${where} rule ${i}`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw configError(`${at} is not an object`);
    const r = entry as Record<string, unknown>;
    for (const key of Object.keys(r)) {
      if (!RULE_KEYS.has(key))
        throw configError(
          `${at} has an unknown key '${clip(key, 40)}' (match, username, password, passwordFile, sshKeyFile, insecureHttp)`,
        );
      if (key === "insecureHttp" ? typeof r[key] !== "boolean" : typeof r[key] !== "string")
        throw configError(`${at}: ${key} must be a ${key === "insecureHttp" ? "boolean" : "string"}`);
    }
    const s = r as Record<string, string | undefined>;
    if (!s.match || !parseHostPattern(s.match)) throw configError(`${at}: match must be host[:port][/path/prefix]`);
    if (s.password !== undefined && s.passwordFile !== undefined) throw configError(`${at}: give password or passwordFile, not both`);
    let password = nonEmpty(s.password);
    if (s.passwordFile !== undefined) {
      try {
        password = nonEmpty(readFile(s.passwordFile).trim());
      } catch (err) {
        throw configError(`${at}: passwordFile ${clip(s.passwordFile)} cannot be read: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
      }
      if (password === undefined) throw configError(`${at}: passwordFile ${clip(s.passwordFile)} is empty`);
    }
    const sshKeyFile = nonEmpty(s.sshKeyFile);
    if (!password && !sshKeyFile) throw configError(`${at} has no password, passwordFile or sshKeyFile`);
    const username = nonEmpty(s.username);
    return {
      match: s.match,
      ...(username ? { username } : {}),
      ...(password ? { password } : {}),
      ...(sshKeyFile ? { sshKeyFile } : {}),
      ...(r.insecureHttp === true ? { insecureHttp: true } : {}),
    };
  });
}

const clip = (s: string, n = 200) => (s.length > n ? `${s.slice(0, n)}…` : s);

import { execFile } from "node:child_process";
import { CodefleetError, gitRefProblem } from "@codefleet/contracts";
import { SecretMasker } from "@codefleet/contracts/runtime";

/**
 * The git adapter: every call is execFile (argv, never a shell), with a timeout, with prompts
 * disabled, and with credentials passed per command through the environment only.
 */

export class GitError extends CodefleetError {
  override readonly name = "GitError";
  constructor(
    code: string,
    message: string,
    readonly stderr: string,
    retryable = false,
  ) {
    super(code, message, { retry: retryable ? { kind: "backoff" } : { kind: "never" } });
  }
}

export type GitCredentials = {
  /** HTTPS: username (default x-access-token) and password/token. */
  username?: string;
  password?: string;
  /** SSH: a private key file. */
  sshKeyFile?: string;
};

export type RemoteUrl = {
  /** The URL with any embedded credentials removed: safe to log, store and set as `origin`. */
  clean: string;
  /** Credentials that were embedded in the URL, if any. */
  embedded?: GitCredentials;
};

const SCP_LIKE = /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~/-]+$/;

/** Validates a remote URL and splits embedded credentials off it. */
export function parseRemoteUrl(raw: string): RemoteUrl {
  const url = raw.trim();
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (url.startsWith("-") || /[\u0000-\u001f\u007f\s]/.test(url)) {
    throw new GitError("invalid_repo_url", "repository URL must not start with '-' or contain whitespace or control characters", "");
  }
  if (SCP_LIKE.test(url)) return { clean: url };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new GitError(
      "invalid_repo_url",
      `not a git URL: ${new SecretMasker().mask(url)} (use https://, ssh://, git://, file:// or user@host:path)`,
      "",
    );
  }
  if (!["https:", "http:", "ssh:", "git:", "file:"].includes(parsed.protocol)) {
    throw new GitError("invalid_repo_url", `unsupported URL scheme '${parsed.protocol}' (use https, http, ssh, git or file)`, "");
  }
  if (parsed.protocol === "file:" && parsed.host !== "")
    throw new GitError("invalid_repo_url", "file:// URLs must be absolute paths (file:///path)", "");
  let embedded: GitCredentials | undefined;
  if (parsed.username || parsed.password) {
    embedded = { username: decodeURIComponent(parsed.username) || "x-access-token", password: decodeURIComponent(parsed.password) };
    if (!parsed.password) embedded = { username: "x-access-token", password: decodeURIComponent(parsed.username) };
    parsed.username = "";
    parsed.password = "";
  }
  return { clean: parsed.toString(), ...(embedded ? { embedded } : {}) };
}

export function assertSafeRef(ref: string): void {
  const problem = gitRefProblem(ref);
  if (problem) throw new GitError("invalid_ref", `ref '${ref.slice(0, 100)}' ${problem}`, "");
}

export type GitRunner = {
  run(args: string[], opts?: { cwd?: string; credentials?: GitCredentials; timeoutMs?: number }): Promise<string>;
  readonly askPassPath: string;
};

/**
 * @param askPassPath path of an executable that answers git's credential prompts from
 *   CODEFLEET_GIT_USERNAME / CODEFLEET_GIT_PASSWORD (written by repo-pool at start).
 */
export function createGitRunner(opts: {
  askPassPath: string;
  masker: SecretMasker;
  defaultTimeoutMs?: number;
  /** Run git as this user (when the process is root), e.g. the owner of workspace files. */
  runAs?: { uid: number; gid: number };
  /**
   * A global git config file (see GIT_CONFIG_GLOBAL). It must hold `safe.directory = *` when
   * git runs as one user on repositories owned by another: a local fetch starts upload-pack
   * without the `-c` options of the calling command.
   */
  globalConfigPath?: string;
}): GitRunner {
  const runAs = opts.runAs && process.getuid?.() === 0 ? opts.runAs : undefined;
  return {
    askPassPath: opts.askPassPath,
    run(args, runOpts = {}) {
      const env: NodeJS.ProcessEnv = {
        PATH: process.env.PATH,
        HOME: runAs ? "/tmp" : process.env.HOME,
        LANG: "C",
        GIT_TERMINAL_PROMPT: "0",
        GIT_CONFIG_NOSYSTEM: "1",
        ...(opts.globalConfigPath ? { GIT_CONFIG_GLOBAL: opts.globalConfigPath } : {}),
        GIT_AUTHOR_NAME: "codefleet",
        GIT_AUTHOR_EMAIL: "codefleet@localhost",
        GIT_COMMITTER_NAME: "codefleet",
        GIT_COMMITTER_EMAIL: "codefleet@localhost",
        GIT_SSH_COMMAND: "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
      };
      const creds = runOpts.credentials;
      const masker = creds?.password ? opts.masker.with([creds.password]) : opts.masker;
      if (creds?.password) {
        env.GIT_ASKPASS = opts.askPassPath;
        env.CODEFLEET_GIT_USERNAME = creds.username ?? "x-access-token";
        env.CODEFLEET_GIT_PASSWORD = creds.password;
      }
      if (creds?.sshKeyFile) {
        env.GIT_SSH_COMMAND = `ssh -i '${creds.sshKeyFile.replace(/'/g, "")}' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new`;
      }
      // credential.helper= disables any helper that could store the secret.
      const argv = ["-c", "credential.helper=", "-c", "protocol.ext.allow=never", "-c", "safe.directory=*", ...args];
      return new Promise((resolve, reject) => {
        execFile(
          "git",
          argv,
          {
            cwd: runOpts.cwd,
            env,
            timeout: runOpts.timeoutMs ?? opts.defaultTimeoutMs ?? 300_000,
            maxBuffer: 256 * 1024 * 1024,
            killSignal: "SIGKILL",
            ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
          },
          (err, stdout, stderr) => {
            if (!err) return resolve(stdout);
            const cleanErr = masker.mask(stderr.toString()).trim().slice(-2000);
            const timedOut = (err as { killed?: boolean }).killed === true;
            reject(classifyGitError(args[0] ?? "git", cleanErr, timedOut));
          },
        );
      });
    },
  };
}

function classifyGitError(command: string, stderr: string, timedOut: boolean): GitError {
  if (timedOut) return new GitError("git_timeout", `git ${command} timed out`, stderr, true);
  const s = stderr.toLowerCase();
  if (s.includes("repository not exported"))
    return new GitError("repo_not_found", `git ${command}: no such repository on the server`, stderr);
  if (
    s.includes("could not read username") ||
    s.includes("authentication failed") ||
    s.includes("permission denied (publickey)") ||
    s.includes("access denied")
  ) {
    return new GitError("git_auth_failed", `git ${command}: authentication failed`, stderr);
  }
  if (
    (s.includes("not found") && s.includes("repository")) ||
    s.includes("does not appear to be a git repository") ||
    s.includes("not a git repository")
  ) {
    return new GitError("repo_not_found", `git ${command}: not a git repository: ${stderr.split("\n").pop()}`, stderr);
  }
  if (
    s.includes("could not resolve host") ||
    s.includes("connection refused") ||
    s.includes("unable to access") ||
    s.includes("unable to connect") ||
    s.includes("connection timed out") ||
    s.includes("network is unreachable")
  ) {
    return new GitError("remote_unreachable", `git ${command}: remote unreachable: ${stderr.split("\n").pop()}`, stderr, true);
  }
  if (s.includes("no space left")) return new GitError("disk_full", `git ${command}: no space left on device`, stderr);
  return new GitError("git_failed", `git ${command} failed: ${stderr.split("\n").slice(-3).join(" | ")}`, stderr);
}

/** The global git config of repo-pool's git commands: the trust its multi-user layout needs. */
export const GLOBAL_GIT_CONFIG = "[safe]\n\tdirectory = *\n";

export const ASKPASS_SCRIPT = `#!/bin/sh
# Answers git's credential prompts from the environment of this one git command.
case "$1" in
  Username*) printf '%s\\n' "$CODEFLEET_GIT_USERNAME" ;;
  *) printf '%s\\n' "$CODEFLEET_GIT_PASSWORD" ;;
esac
`;

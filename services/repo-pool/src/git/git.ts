import { spawn } from "node:child_process";
import { CodefleetError, gitRefProblem } from "@codefleet/contracts";
import { SecretMasker } from "@codefleet/platform/runtime";

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
    // a malformed escape in the user info (`https://%zz@host/`) is the submitter's error, not ours to retry
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw new GitError("invalid_repo_url", "repository URL has an invalid percent-encoding in its user name or password", "");
      }
    };
    embedded = { username: decode(parsed.username) || "x-access-token", password: decode(parsed.password) };
    if (!parsed.password) embedded = { username: "x-access-token", password: decode(parsed.username) };
    parsed.username = "";
    parsed.password = "";
  }
  return { clean: parsed.toString(), ...(embedded ? { embedded } : {}) };
}

export function assertSafeRef(ref: string): void {
  const problem = gitRefProblem(ref);
  if (problem) throw new GitError("invalid_ref", `ref '${ref.slice(0, 100)}' ${problem}`, "");
}

export type GitRunOptions = {
  cwd?: string;
  credentials?: GitCredentials;
  timeoutMs?: number;
  /** Extra environment for this command only (GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE, ...). */
  env?: Record<string, string>;
  /** Data for the command's standard input (commit messages go here, never into a file the agent can reach). */
  stdin?: string | Buffer;
  /** Allow the file:// transport (and local paths) for this command: only for repositories the operator allowed. */
  allowFileProtocol?: boolean;
  /** Cap on the captured stdout; the command is killed past it (default 64 MiB). */
  maxOutputBytes?: number;
};

export type GitRunner = {
  /** Runs git and returns its stdout (bounded by maxOutputBytes). */
  run(args: string[], opts?: GitRunOptions): Promise<string>;
  /** Runs git and hands its stdout to `onChunk` as it comes, without keeping it. */
  stream(args: string[], opts: GitRunOptions, onChunk: (chunk: Buffer) => void): Promise<void>;
  readonly askPassPath: string;
};

/**
 * The one hardened git configuration of every git command codefleet runs (runner and repo-pool),
 * given on the command line so that it wins over any file. With GIT_CONFIG_NOSYSTEM and a global
 * config file of our own, the only other source is the repository's own config, which only
 * codefleet writes. Documented in docs/security.md.
 */
export const HARDENED_GIT_CONFIG: readonly (readonly [key: string, value: string])[] = [
  ["core.hooksPath", "/dev/null"], // no hook ever runs
  ["core.fsmonitor", "false"], // no fsmonitor program
  ["core.untrackedCache", "false"],
  ["core.symlinks", "true"], // symlinks are committed as links, never followed
  ["core.protectNTFS", "true"],
  ["core.protectHFS", "true"],
  ["core.pager", "cat"],
  ["core.editor", "false"],
  ["core.attributesFile", "/dev/null"],
  ["core.excludesFile", "/dev/null"],
  ["credential.helper", ""], // no helper that could store or hand out a secret
  ["protocol.allow", "never"], // transports by allow-list only
  ["protocol.https.allow", "always"],
  ["protocol.http.allow", "always"], // plain http is refused by the URL policy unless the operator allowed it
  ["protocol.ssh.allow", "always"],
  ["protocol.git.allow", "always"],
  ["protocol.file.allow", "never"], // allowed per command (allowFileProtocol) for operator-allowed paths only
  ["protocol.ext.allow", "never"],
  ["gpg.program", "false"],
  ["gpg.ssh.program", "false"],
  ["gpg.x509.program", "false"],
  ["commit.gpgSign", "false"],
  ["tag.gpgSign", "false"],
  ["submodule.recurse", "false"],
  ["fetch.recurseSubmodules", "false"],
  ["push.recurseSubmodules", "no"],
  ["init.templateDir", ""], // no template hooks copied into new repositories
  ["gc.auto", "0"],
  ["maintenance.auto", "false"],
  ["safe.directory", "*"], // git runs as one uid on directories another owns (by design, see docs/security.md)
  ["advice.detachedHead", "false"],
];

/** The global git config file of codefleet's git commands: the same hardened settings, for whatever reads files only. */
export const GLOBAL_GIT_CONFIG = renderGitConfig(HARDENED_GIT_CONFIG);

function renderGitConfig(entries: readonly (readonly [string, string])[]): string {
  const sections = new Map<string, string[]>();
  for (const [key, value] of entries) {
    const [section = "", ...rest] = key.split(".");
    const name = rest.pop() ?? "";
    const header = rest.length ? `[${section} "${rest.join(".")}"]` : `[${section}]`;
    sections.set(header, [...(sections.get(header) ?? []), `\t${name} = ${value === "" ? '""' : value}`]);
  }
  return `${[...sections].map(([header, lines]) => `${header}\n${lines.join("\n")}`).join("\n")}\n`;
}

const hardenedArgs = (allowFile: boolean): string[] =>
  HARDENED_GIT_CONFIG.flatMap(([k, v]) => ["-c", `${k}=${k === "protocol.file.allow" && allowFile ? "always" : v}`]);

/**
 * @param askPassPath path of an executable that answers git's credential prompts from
 *   CODEFLEET_GIT_USERNAME / CODEFLEET_GIT_PASSWORD (written by the service at start).
 */
export function createGitRunner(opts: {
  askPassPath: string;
  masker: SecretMasker;
  defaultTimeoutMs?: number;
  /** Run git as this user (when the process is root): never root for git, whatever the caller. */
  runAs?: { uid: number; gid: number };
  /** The global git config file (GIT_CONFIG_GLOBAL), holding GLOBAL_GIT_CONFIG. */
  globalConfigPath: string;
  /** HOME of the git processes (ssh keeps known_hosts there). */
  home?: string;
}): GitRunner {
  const runAs = opts.runAs && process.getuid?.() === 0 ? opts.runAs : undefined;
  const prepare = (args: string[], runOpts: GitRunOptions) => {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: opts.home ?? "/tmp",
      XDG_CONFIG_HOME: "/nonexistent",
      LANG: "C",
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: opts.globalConfigPath,
      GIT_ATTR_NOSYSTEM: "1",
      GIT_NO_REPLACE_OBJECTS: "1",
      GIT_PAGER: "cat",
      GIT_EDITOR: "false",
      GIT_PROTOCOL_FROM_USER: "0",
      GIT_AUTHOR_NAME: "codefleet",
      GIT_AUTHOR_EMAIL: "codefleet@localhost",
      GIT_COMMITTER_NAME: "codefleet",
      GIT_COMMITTER_EMAIL: "codefleet@localhost",
      GIT_SSH_COMMAND: "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
      ...runOpts.env,
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
    const argv = [...hardenedArgs(runOpts.allowFileProtocol === true), ...args];
    const spawnOpts = {
      cwd: runOpts.cwd ?? "/",
      env,
      ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
    };
    return { argv, spawnOpts, masker, timeoutMs: runOpts.timeoutMs ?? opts.defaultTimeoutMs ?? 300_000 };
  };

  const exec = (args: string[], runOpts: GitRunOptions, onChunk: ((chunk: Buffer) => void) | undefined): Promise<string> => {
    const { argv, spawnOpts, masker, timeoutMs } = prepare(args, runOpts);
    const maxOut = runOpts.maxOutputBytes ?? 64 * 1024 * 1024;
    return new Promise((resolve, reject) => {
      const child = spawn("git", argv, { ...spawnOpts, stdio: ["pipe", "pipe", "pipe"] });
      const out: Buffer[] = [];
      let outBytes = 0;
      let err = "";
      let killedFor: "timeout" | "output" | undefined;
      const kill = (why: "timeout" | "output") => {
        killedFor ??= why;
        child.kill("SIGKILL");
      };
      const timer = setTimeout(() => kill("timeout"), timeoutMs);
      child.stdout.on("data", (c: Buffer) => {
        if (onChunk) return onChunk(c);
        outBytes += c.length;
        if (outBytes > maxOut) return kill("output");
        out.push(c);
      });
      // stderr is only for error messages: keep its last 16 KiB
      child.stderr.on("data", (c: Buffer) => {
        err = (err + c.toString()).slice(-16_384);
      });
      child.stdin.on("error", () => undefined);
      if (runOpts.stdin !== undefined) child.stdin.end(runOpts.stdin);
      else child.stdin.end();
      child.on("error", (e) => {
        clearTimeout(timer);
        reject(new GitError("git_failed", `git ${args[0] ?? ""} could not start: ${e.message}`, ""));
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        if (code === 0 && !killedFor) return resolve(Buffer.concat(out).toString());
        const cleanErr = masker.mask(err).trim().slice(-2000);
        if (killedFor === "output")
          return reject(new GitError("git_output_too_large", `git ${args[0] ?? ""} printed more than ${maxOut} bytes`, cleanErr));
        reject(classifyGitError(args[0] ?? "git", cleanErr, killedFor === "timeout"));
      });
    });
  };

  return {
    askPassPath: opts.askPassPath,
    run: (args, runOpts = {}) => exec(args, runOpts, undefined),
    stream: async (args, runOpts, onChunk) => {
      await exec(args, runOpts, onChunk);
    },
  };
}

/** Maps a failed git command's (masked) stderr to a stable code and its retry meaning. Pure. */
export function classifyGitError(command: string, stderr: string, timedOut: boolean): GitError {
  if (timedOut) return new GitError("git_timeout", `git ${command} timed out`, stderr, true);
  const s = stderr.toLowerCase();
  if (s.includes("repository not exported"))
    return new GitError("repo_not_found", `git ${command}: no such repository on the server`, stderr);
  if (
    s.includes("could not read username") ||
    s.includes("authentication failed") ||
    s.includes("permission denied (publickey)") ||
    s.includes("access denied") ||
    // an HTTP 401/403 ("unable to access '…': The requested URL returned error: 403") is no outage to retry
    /returned error: 40[13]\b/.test(s)
  ) {
    return new GitError("git_auth_failed", `git ${command}: authentication failed`, stderr);
  }
  if (
    (s.includes("not found") && s.includes("repository")) ||
    s.includes("does not appear to be a git repository") ||
    s.includes("not a git repository") ||
    /returned error: 404\b/.test(s)
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

export const ASKPASS_SCRIPT = `#!/bin/sh
# Answers git's credential prompts from the environment of this one git command.
case "$1" in
  Username*) printf '%s\\n' "$CODEFLEET_GIT_USERNAME" ;;
  *) printf '%s\\n' "$CODEFLEET_GIT_PASSWORD" ;;
esac
`;

export * from "./credentials.js";
export * from "./repo-access.js";

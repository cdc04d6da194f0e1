import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { assertSafeRef, classifyGitError, GitError, GLOBAL_GIT_CONFIG, HARDENED_GIT_CONFIG, parseRemoteUrl } from "./git.js";

/** The GitError a call throws (fails the test when it throws none or something else). */
function gitErrorOf(f: () => unknown): GitError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(GitError);
    return err as GitError;
  }
  throw new Error("expected a GitError, nothing was thrown");
}

describe("parseRemoteUrl", () => {
  it("keeps clean URLs and scp-like addresses as they are (normalized by the URL parser)", () => {
    expect(parseRemoteUrl("https://github.com/acme/app.git")).toEqual({ clean: "https://github.com/acme/app.git" });
    expect(parseRemoteUrl("  git@github.com:acme/app.git \n".trim())).toEqual({ clean: "git@github.com:acme/app.git" });
    expect(parseRemoteUrl("HTTPS://GitHub.com/acme/app.git")).toEqual({ clean: "https://github.com/acme/app.git" });
    expect(parseRemoteUrl("file:///srv/git/app.git")).toEqual({ clean: "file:///srv/git/app.git" });
    expect(parseRemoteUrl("git://git-server:9418/sample.git")).toEqual({ clean: "git://git-server:9418/sample.git" });
  });

  it("splits embedded credentials off: user and password, or a lone token as the password", () => {
    expect(parseRemoteUrl("https://bot:s3cr%40t@github.com/acme/app.git")).toEqual({
      clean: "https://github.com/acme/app.git",
      embedded: { username: "bot", password: "s3cr@t" },
    });
    expect(parseRemoteUrl("https://ghp_token@github.com/acme/app.git")).toEqual({
      clean: "https://github.com/acme/app.git",
      embedded: { username: "x-access-token", password: "ghp_token" },
    });
    expect(parseRemoteUrl("https://:tok@github.com/x")).toEqual({
      clean: "https://github.com/x",
      embedded: { username: "x-access-token", password: "tok" },
    });
  });

  it("refuses a malformed escape in the user info as an invalid URL, not an internal error", () => {
    // the registry's URL policy lets https user info through; this used to throw a bare URIError
    // (an internal, retryable error in the repo-pool RPC) instead of refusing the task
    for (const url of ["https://%zz@github.com/x", "https://bot:%E0%A4%A@github.com/x"]) {
      const err = gitErrorOf(() => parseRemoteUrl(url));
      expect(err.code).toBe("invalid_repo_url");
      expect(err.retry).toEqual({ kind: "never" });
      expect(err.message).not.toContain("%zz");
    }
  });

  it("refuses option-like, blank and control-character URLs and unsupported schemes", () => {
    for (const url of ["-uhttps://x", "https://x/a b", "https://x/\u0000", "https://x/\u007f", "https://x/a\tb"]) {
      expect(gitErrorOf(() => parseRemoteUrl(url)).code, url).toBe("invalid_repo_url");
    }
    expect(gitErrorOf(() => parseRemoteUrl("ext::sh -c touch% /tmp/pwned")).code).toBe("invalid_repo_url");
    expect(gitErrorOf(() => parseRemoteUrl("ftp://host/x")).message).toContain("unsupported URL scheme 'ftp:'");
    expect(gitErrorOf(() => parseRemoteUrl("file://host/etc")).message).toContain("absolute paths");
    expect(gitErrorOf(() => parseRemoteUrl("relative/path")).code).toBe("invalid_repo_url");
  });

  it("masks a token-shaped secret in a URL it could not parse", () => {
    const token = `ghp_${"A1b2".repeat(9)}`;
    const err = gitErrorOf(() => parseRemoteUrl(`https//bot:${token}@github.com/x`));
    expect(err.code).toBe("invalid_repo_url");
    expect(err.message).not.toContain(token);
  });
});

describe("assertSafeRef", () => {
  it("accepts what git accepts", () => {
    for (const ref of ["main", "refs/heads/x", "v1.0.0", "feature/JIRA-12_fix+x", "a@b", "x./y", "a.lock.b", "HEAD"]) {
      expect(() => assertSafeRef(ref), ref).not.toThrow();
    }
  });

  it("refuses option-like, traversal and malformed refs with invalid_ref, never retried", () => {
    // each one is refused by `git check-ref-format --allow-onelevel` too
    for (const ref of [
      "-x",
      "--upload-pack=sh",
      "a..b",
      "a//b",
      "/x",
      "x/",
      "x.",
      "x.lock",
      "a/.b",
      ".a",
      "@",
      "a@{1}",
      "a b",
      "a~1",
      "a:b",
    ]) {
      const err = gitErrorOf(() => assertSafeRef(ref));
      expect(err.code, ref).toBe("invalid_ref");
      expect(err.retry).toEqual({ kind: "never" });
    }
  });

  it("refuses a component ending in .lock anywhere, as git does", () => {
    // used to pass (only the whole name's end was checked) and fail later, at git itself
    for (const ref of ["foo.lock/bar", "a/b.lock/c", "a.lock/b.lock"])
      expect(gitErrorOf(() => assertSafeRef(ref)).code, ref).toBe("invalid_ref");
  });

  it("bounds what it echoes of a hostile ref", () => {
    const err = gitErrorOf(() => assertSafeRef(`-${"x".repeat(10_000)}`));
    expect(err.message.length).toBeLessThan(200);
  });
});

describe("classifyGitError", () => {
  const classify = (stderr: string, timedOut = false) => {
    const e = classifyGitError("fetch", stderr, timedOut);
    return [e.code, e.retry.kind];
  };

  it("reads real git messages into stable codes with their retry meaning", () => {
    expect(classify("", true)).toEqual(["git_timeout", "backoff"]);
    expect(classify("fatal: could not read Username for 'https://github.com': terminal prompts disabled")).toEqual([
      "git_auth_failed",
      "never",
    ]);
    expect(classify("remote: Invalid username or password.\nfatal: Authentication failed for 'https://github.com/acme/x.git/'")).toEqual([
      "git_auth_failed",
      "never",
    ]);
    expect(classify("git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.")).toEqual([
      "git_auth_failed",
      "never",
    ]);
    expect(classify("remote: Repository not found.\nfatal: repository 'https://github.com/acme/nope.git/' not found")).toEqual([
      "repo_not_found",
      "never",
    ]);
    expect(classify("fatal: remote error: access denied or repository not exported: /nope.git")).toEqual(["repo_not_found", "never"]);
    expect(classify("fatal: '/srv/x' does not appear to be a git repository")).toEqual(["repo_not_found", "never"]);
    expect(classify("fatal: unable to access 'https://nohost.invalid/x.git/': Could not resolve host: nohost.invalid")).toEqual([
      "remote_unreachable",
      "backoff",
    ]);
    expect(classify("ssh: connect to host h port 22: Connection refused\nfatal: Could not read from remote repository.")).toEqual([
      "remote_unreachable",
      "backoff",
    ]);
    expect(classify("fatal: unable to access 'https://h/x.git/': The requested URL returned error: 502")).toEqual([
      "remote_unreachable",
      "backoff",
    ]);
    expect(classify("error: unable to write file .git/objects/ab/cdef: No space left on device")).toEqual(["disk_full", "never"]);
    expect(classify("error: failed to push some refs to 'https://h/x.git'\n ! [rejected] x -> x (non-fast-forward)")).toEqual([
      "git_failed",
      "never",
    ]);
  });

  it("does not retry an HTTP 401/403/404 as if the remote were down", () => {
    // what git prints when a token may read but not push (GitHub), or a server refuses the token
    expect(
      classify(
        "remote: Permission to acme/app.git denied to bot.\nfatal: unable to access 'https://github.com/acme/app.git/': The requested URL returned error: 403",
      ),
    ).toEqual(["git_auth_failed", "never"]);
    expect(classify("fatal: unable to access 'https://h/x.git/': The requested URL returned error: 401")).toEqual([
      "git_auth_failed",
      "never",
    ]);
    expect(classify("fatal: unable to access 'https://h/x.git/': The requested URL returned error: 404")).toEqual([
      "repo_not_found",
      "never",
    ]);
  });

  it("says which command failed and keeps the last lines, not a flood", () => {
    const e = classifyGitError("push", `${"noise\n".repeat(1000)}line a\nline b\nline c`, false);
    expect(e.message).toBe("git push failed: line a | line b | line c");
    expect(e.stderr).toContain("noise");
    expect(e.name).toBe("GitError");
  });
});

describe("the hardened git configuration", () => {
  it("renders every setting into a config file git reads back exactly", () => {
    const dir = mkdtempSync(join(tmpdir(), "git-config-"));
    try {
      const file = join(dir, "config");
      writeFileSync(file, GLOBAL_GIT_CONFIG);
      const listed = execFileSync("git", ["config", "--file", file, "--list"], { encoding: "utf8" })
        .trim()
        .split("\n")
        .map((line) => {
          const eq = line.indexOf("=");
          return [line.slice(0, eq), line.slice(eq + 1)];
        });
      // git lower-cases section and variable names (not subsections)
      const expected = HARDENED_GIT_CONFIG.map(([k, v]) => {
        const parts = k.split(".");
        const first = (parts[0] as string).toLowerCase();
        const last = (parts.at(-1) as string).toLowerCase();
        return [[first, ...parts.slice(1, -1), last].join("."), v];
      });
      expect(listed).toEqual(expected);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("disables hooks, credential helpers, the ext and file transports and submodule recursion", () => {
    const config = new Map(HARDENED_GIT_CONFIG.map(([k, v]) => [k, v]));
    expect(config.get("core.hooksPath")).toBe("/dev/null");
    expect(config.get("credential.helper")).toBe("");
    expect(config.get("protocol.allow")).toBe("never");
    expect(config.get("protocol.ext.allow")).toBe("never");
    expect(config.get("protocol.file.allow")).toBe("never");
    expect(config.get("submodule.recurse")).toBe("false");
    expect(config.get("core.fsmonitor")).toBe("false");
    expect(new Set(HARDENED_GIT_CONFIG.map(([k]) => k)).size).toBe(HARDENED_GIT_CONFIG.length);
  });
});

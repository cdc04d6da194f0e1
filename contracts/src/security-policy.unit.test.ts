import { describe, expect, it } from "vitest";
import {
  type AgentKeyProblem,
  agentKeyProblem,
  checkRepoUrl,
  DEFAULT_REPO_URL_POLICY,
  hostListed,
  parseHostPattern,
  parseRepoUrl,
  type RepoUrlCheck,
  type RepoUrlPolicy,
  securityPolicyFromEnv,
} from "./security-policy.js";
import type { AgentSpec } from "./task-spec.js";

const none: RepoUrlPolicy = DEFAULT_REPO_URL_POLICY;
const policy = (p: Partial<RepoUrlPolicy>): RepoUrlPolicy => ({ ...none, ...p });
const code = (r: RepoUrlCheck) => (r.ok ? "ok" : r.code);

describe("checkRepoUrl: accepted forms", () => {
  it("accepts https, ssh, git and scp-like remotes by default and describes them", () => {
    expect(checkRepoUrl("https://github.com/acme/app.git", none)).toEqual({
      ok: true,
      scheme: "https",
      host: "github.com",
      path: "/acme/app.git",
    });
    expect(checkRepoUrl("ssh://git@github.com:2222/acme/app.git", none)).toEqual({
      ok: true,
      scheme: "ssh",
      host: "github.com",
      port: 2222,
      path: "/acme/app.git",
    });
    expect(checkRepoUrl("git://git-server:9418/sample.git", none)).toMatchObject({
      ok: true,
      scheme: "git",
      host: "git-server",
      port: 9418,
    });
    expect(checkRepoUrl("git@github.com:acme/repo.git", none)).toEqual({
      ok: true,
      scheme: "ssh",
      host: "github.com",
      path: "acme/repo.git",
    });
    expect(checkRepoUrl("deploy@git.example.com:/srv/repos/app.git", none)).toMatchObject({ ok: true, path: "/srv/repos/app.git" });
  });

  it("compares hosts case-insensitively and normalizes schemes, hosts and paths", () => {
    expect(checkRepoUrl("HTTPS://GitHub.COM/acme/x", none)).toMatchObject({ ok: true, scheme: "https", host: "github.com" });
    expect(checkRepoUrl("ssh://Git.Example.com/a/./b//c/../d", none)).toMatchObject({ host: "git.example.com", path: "/a/b/d" });
    expect(checkRepoUrl("https://github.com/%61cme/x", none)).toMatchObject({ path: "/acme/x" });
    expect(checkRepoUrl("https://0x7f.1/x", policy({}))).toMatchObject({ ok: true, host: "127.0.0.1" });
  });

  it("handles IPv6 literal hosts", () => {
    expect(checkRepoUrl("https://[2001:DB8::1]/acme/x", none)).toMatchObject({ ok: true, host: "[2001:db8::1]", path: "/acme/x" });
    expect(checkRepoUrl("ssh://git@[::1]:2222/x.git", none)).toMatchObject({ ok: true, host: "[::1]", port: 2222 });
    expect(checkRepoUrl("git@[::1]:acme/x.git", none)).toMatchObject({ ok: true, scheme: "ssh", host: "[::1]", path: "acme/x.git" });
    expect(checkRepoUrl("http://[::1]:8080/x", policy({ httpHosts: ["[::1]:8080"] }))).toMatchObject({ ok: true, host: "[::1]" });
    expect(checkRepoUrl("http://[::1]:8080/x", none)).toMatchObject({ ok: false, code: "repo_url_scheme_refused" });
    expect(code(checkRepoUrl("https://[::1/x", none))).toBe("repo_url_invalid");
    expect(code(checkRepoUrl("https://[fe80::1%25eth0]/x", none))).toBe("repo_url_invalid");
    expect(code(checkRepoUrl("https://[not-an-ip]/x", none))).toBe("repo_url_invalid");
    const allowV6 = policy({ allowedHosts: ["[2001:db8::1]/acme"] });
    expect(code(checkRepoUrl("https://[2001:0db8:0:0::1]/acme/x", allowV6))).toBe("ok");
    expect(code(checkRepoUrl("https://[2001:db8::2]/acme/x", allowV6))).toBe("repo_url_host_refused");
  });
});

describe("checkRepoUrl: local repositories", () => {
  const roots = policy({ fileRoots: ["/srv/git"] });

  it("refuses every local repository by default", () => {
    for (const url of ["file:///srv/git/app.git", "/srv/git/app.git", "FILE:///x", "file:///"]) {
      expect(checkRepoUrl(url, none), url).toMatchObject({ ok: false, code: "repo_url_file_refused" });
    }
  });

  it("refuses relative paths even with roots", () => {
    for (const url of ["./rel", "../srv/git/app", "rel/path.git", "app.git", "~/repo", "x@y"]) {
      expect(code(checkRepoUrl(url, roots)), url).toBe("repo_url_file_refused");
    }
  });

  it("allows file:// URLs and absolute paths under a root, by whole path components", () => {
    expect(checkRepoUrl("file:///srv/git/app.git", roots)).toEqual({ ok: true, scheme: "file", path: "/srv/git/app.git" });
    expect(checkRepoUrl("/srv/git/team/app.git", roots)).toEqual({ ok: true, scheme: "file", path: "/srv/git/team/app.git" });
    expect(checkRepoUrl("FILE:///srv/git/app.git", roots)).toMatchObject({ ok: true, scheme: "file" });
    expect(checkRepoUrl("file:///srv/git", roots)).toMatchObject({ ok: true });
    expect(checkRepoUrl("file:///srv//git/./a", roots)).toMatchObject({ ok: true, path: "/srv/git/a" });
    expect(code(checkRepoUrl("file:///srv/git-evil/app.git", roots))).toBe("repo_url_file_refused");
    expect(code(checkRepoUrl("/srv/gitx", roots))).toBe("repo_url_file_refused");
    expect(code(checkRepoUrl("file:///srv", roots))).toBe("repo_url_file_refused");
    // a root given with a trailing slash or dots means the same directory
    expect(code(checkRepoUrl("/srv/git/a", policy({ fileRoots: ["/srv/./git/"] })))).toBe("ok");
    expect(code(checkRepoUrl("/srv/git-evil/a", policy({ fileRoots: ["/srv/git/"] })))).toBe("repo_url_file_refused");
  });

  it("resolves .. before the root check: no escape, encoded or not", () => {
    for (const url of [
      "file:///srv/git/../../etc",
      "file:///srv/git/../etc/passwd",
      "/srv/git/../repo-pool/mirrors/x.git",
      "file:///srv/git/%2e%2e/%2E%2E/etc",
      "file:///srv/git/a/../../../var/lib/codefleet/repo-pool/slots/1",
    ]) {
      expect(code(checkRepoUrl(url, roots)), url).toBe("repo_url_file_refused");
    }
    expect(code(checkRepoUrl("file:///allowed/../etc", policy({ fileRoots: ["/allowed"] })))).toBe("repo_url_file_refused");
    expect(checkRepoUrl("file:///srv/git/a/../b.git", roots)).toMatchObject({ ok: true, path: "/srv/git/b.git" });
  });

  it("refuses file:// URLs that name a host", () => {
    for (const url of ["file://localhost/srv/git/x", "file://server/srv/git/x", "file://srv/git/x", "file:/srv/git/x"]) {
      expect(code(checkRepoUrl(url, roots)), url).toBe("repo_url_file_refused");
    }
  });

  it("refuses encoded control characters and bad encodings in file URLs", () => {
    expect(code(checkRepoUrl("file:///srv/git/a%00b", roots))).toBe("repo_url_invalid");
    expect(code(checkRepoUrl("file:///srv/git/a%0ab", roots))).toBe("repo_url_invalid");
    expect(code(checkRepoUrl("file:///srv/git/%zz", roots))).toBe("repo_url_invalid");
  });

  it("ignores roots that are not absolute", () => {
    expect(code(checkRepoUrl("/srv/git/a", policy({ fileRoots: ["srv/git", ""] })))).toBe("repo_url_file_refused");
  });
});

describe("checkRepoUrl: schemes and transports", () => {
  it("refuses git transport syntax (ext::, fd::, any helper::)", () => {
    for (const url of ["ext::sh -c touch% /tmp/pwned", "ext::sh", "fd::3", "fd::0,1/x", "EXT::sh", "foo+bar::x", "::x", "ext::ssh://x"]) {
      expect(checkRepoUrl(url, none), url).toMatchObject({ ok: false, code: "repo_url_scheme_refused" });
    }
  });

  it("refuses unknown schemes (remote helpers) and scheme-less host:path", () => {
    for (const url of ["ftp://h/x", "git+ssh://h/x", "persistent-https://h/x", "javascript://x", "mailto:x@y", "github.com:acme/x"]) {
      expect(code(checkRepoUrl(url, none)), url).toBe("repo_url_scheme_refused");
    }
    expect(code(checkRepoUrl("https:github.com/acme/x", none))).toBe("repo_url_invalid");
  });

  it("refuses plain http unless the host (or host:port, or *) is listed", () => {
    expect(checkRepoUrl("http://127.0.0.1:9/x", none)).toMatchObject({ ok: false, code: "repo_url_scheme_refused" });
    expect(checkRepoUrl("http://127.0.0.1:9/x", policy({ httpHosts: ["127.0.0.1:9"] }))).toMatchObject({
      ok: true,
      scheme: "http",
      host: "127.0.0.1",
      port: 9,
    });
    expect(code(checkRepoUrl("http://127.0.0.1:9/x", policy({ httpHosts: ["127.0.0.1"] })))).toBe("ok");
    expect(code(checkRepoUrl("http://127.0.0.1:9/x", policy({ httpHosts: ["127.0.0.1:8080"] })))).toBe("repo_url_scheme_refused");
    expect(code(checkRepoUrl("http://127.0.0.1:9/x", policy({ httpHosts: ["*"] })))).toBe("ok");
    expect(code(checkRepoUrl("http://git.internal/x", policy({ httpHosts: ["git.internal:80"] })))).toBe("ok");
    expect(code(checkRepoUrl("http://GIT.internal/x", policy({ httpHosts: ["git.INTERNAL"] })))).toBe("ok");
    expect(code(checkRepoUrl("http://git.internal.evil.com/x", policy({ httpHosts: ["git.internal"] })))).toBe("repo_url_scheme_refused");
  });

  it("still applies allowedHosts to http hosts that are allowed plain http", () => {
    const p = policy({ httpHosts: ["*"], allowedHosts: ["git.internal"] });
    expect(code(checkRepoUrl("http://git.internal/x", p))).toBe("ok");
    expect(code(checkRepoUrl("http://other/x", p))).toBe("repo_url_host_refused");
  });
});

describe("checkRepoUrl: malformed and adversarial input", () => {
  it("refuses leading '-', whitespace, control characters and empty input", () => {
    for (const url of [
      "",
      "-uhttps://x",
      "--upload-pack=touch /tmp/x",
      " https://github.com/x",
      "https://github.com/x ",
      "https://github.com/a b",
      "https://github.com/x\n",
      "https://github.com/\u0000",
      "https://github.com/\u007f",
      "https://github.com/\u0085",
      "https://github.com/\u00a0x",
      "\thttps://github.com/x",
    ]) {
      expect(code(checkRepoUrl(url, none)), JSON.stringify(url)).toBe("repo_url_invalid");
    }
  });

  it("refuses parser differentials: backslashes, '?', '#', several '@', encoded slashes", () => {
    for (const url of [
      "https://github.com\\@evil.com/acme/x",
      "https://evil.com#@github.com/acme/x",
      "https://evil.com?@github.com/acme/x",
      "https://github.com/acme/x?y",
      "https://a@b@evil.com/x",
      "https://github.com/acme%2f..%2fother/x",
      "https://github.com/acme%5Cx",
      "https:///acme/x",
      "https://:443/acme/x",
      "https://github.com:0/x",
      "https://github.com:99999/x",
      "https://github.com:/x",
      "https://github.com:abc/x",
      "https://github.com/../x",
    ]) {
      expect(code(checkRepoUrl(url, none)), url).toBe("repo_url_invalid");
    }
  });

  it("refuses option-like hosts and users for ssh", () => {
    for (const url of [
      "ssh://-oProxyCommand=touch%20x/r",
      "ssh://-oProxyCommand=x@h/r",
      "-oProxyCommand=x@h:r",
      "ssh://user:pass@h/r",
      "git://user@h/r",
      "git@-h:r",
      "git@h:-r",
      "git@h:",
      "@h:r",
      "git@h:a%2f..%2fb",
      "git@h:../other/x",
    ]) {
      expect(code(checkRepoUrl(url, none)), url).toBe("repo_url_invalid");
    }
  });

  it("judges URLs with embedded credentials by host and never echoes the password", () => {
    const p = policy({ allowedHosts: ["github.com"] });
    const refused = checkRepoUrl("https://user:tok@evil.com/x", p);
    expect(refused).toMatchObject({ ok: false, code: "repo_url_host_refused" });
    expect(refused.ok ? "" : refused.message).toContain("evil.com");
    expect(refused.ok ? "" : refused.message).not.toContain("tok");
    expect(checkRepoUrl("https://user:tok@github.com/x", p)).toMatchObject({ ok: true, host: "github.com" });
    expect(JSON.stringify(checkRepoUrl("https://user:tok@github.com/x", p))).not.toContain("tok");
    // the password also stays out of every other refusal
    for (const url of [
      "http://u:s3cr3tpw@h/x",
      "https://u:s3cr3tpw@h:99999/x",
      "https://u:s3cr3tpw@a@h/x",
      "https://u:s3cr3tpw@h/x y",
      "ftp://u:s3cr3tpw@h/x",
      "ext::u:s3cr3tpw",
    ]) {
      const r = checkRepoUrl(url, p);
      expect(r.ok, url).toBe(false);
      expect(r.ok ? "" : r.message, url).not.toContain("s3cr3tpw");
    }
  });

  it("refuses very long URLs", () => {
    expect(code(checkRepoUrl(`https://github.com/${"a".repeat(5000)}`, none))).toBe("repo_url_invalid");
  });
});

describe("checkRepoUrl: allowedHosts", () => {
  const acme = policy({ allowedHosts: ["github.com/acme"] });

  it("matches scp-like and URL remotes by host and path prefix components", () => {
    expect(code(checkRepoUrl("git@github.com:acme/repo.git", acme))).toBe("ok");
    expect(code(checkRepoUrl("git@github.com:/acme/repo.git", acme))).toBe("ok");
    expect(code(checkRepoUrl("https://github.com/acme/x", acme))).toBe("ok");
    expect(code(checkRepoUrl("https://GitHub.com/acme/x", acme))).toBe("ok");
    expect(code(checkRepoUrl("ssh://git@github.com/acme/x.git", acme))).toBe("ok");
    expect(code(checkRepoUrl("git@github.com:other/repo.git", acme))).toBe("repo_url_host_refused");
    expect(code(checkRepoUrl("https://github.com/acme-evil/x", acme))).toBe("repo_url_host_refused");
    expect(code(checkRepoUrl("https://github.com/x", acme))).toBe("repo_url_host_refused");
    expect(code(checkRepoUrl("https://github.com", acme))).toBe("repo_url_host_refused");
  });

  it("compares hosts exactly: no suffix, prefix or userinfo tricks", () => {
    for (const url of [
      "https://github.com.evil.com/acme/x",
      "https://evil.com/github.com/acme/x",
      "https://github.com@evil.com/acme/x",
      "https://evilgithub.com/acme/x",
      "git@github.com.evil.com:acme/x",
    ]) {
      expect(code(checkRepoUrl(url, acme)), url).toBe("repo_url_host_refused");
    }
  });

  it("resolves .. before matching a path prefix", () => {
    expect(code(checkRepoUrl("https://github.com/acme/../other/x", acme))).toBe("repo_url_host_refused");
    expect(code(checkRepoUrl("https://github.com/acme/%2e%2e/other/x", acme))).toBe("repo_url_host_refused");
    expect(code(checkRepoUrl("git@github.com:acme/../other/x", acme))).toBe("repo_url_host_refused");
    expect(code(checkRepoUrl("https://github.com/other/../acme/x", acme))).toBe("ok");
  });

  it("honours ports, several entries and the .git suffix", () => {
    const p = policy({ allowedHosts: ["git.internal:2222", "github.com/acme/app", "gitlab.com"] });
    expect(code(checkRepoUrl("ssh://git@git.internal:2222/x", p))).toBe("ok");
    expect(code(checkRepoUrl("git@git.internal:x", p))).toBe("repo_url_host_refused"); // port 22
    expect(code(checkRepoUrl("https://git.internal/x", p))).toBe("repo_url_host_refused");
    expect(code(checkRepoUrl("https://github.com/acme/app.git", p))).toBe("ok");
    expect(code(checkRepoUrl("https://github.com/acme/app2.git", p))).toBe("repo_url_host_refused");
    expect(code(checkRepoUrl("https://gitlab.com/anyone/x", p))).toBe("ok");
    expect(code(checkRepoUrl("https://github.com:443/acme/app", policy({ allowedHosts: ["github.com:443/acme"] })))).toBe("ok");
  });

  it("leaves local repositories to fileRoots", () => {
    expect(code(checkRepoUrl("/srv/git/x", policy({ fileRoots: ["/srv/git"], allowedHosts: ["github.com"] })))).toBe("ok");
  });
});

describe("parseRepoUrl, parseHostPattern and hostListed", () => {
  it("parses without a policy", () => {
    expect(parseRepoUrl("file:///x")).toEqual({ ok: true, scheme: "file", path: "/x" });
    expect(parseRepoUrl("http://h/x")).toMatchObject({ ok: true, scheme: "http", host: "h" });
  });

  it("parses host patterns", () => {
    expect(parseHostPattern("GitHub.com/acme/")).toEqual({ host: "github.com", path: ["acme"] });
    expect(parseHostPattern("[::1]:2222/a/b")).toEqual({ host: "[::1]", port: 2222, path: ["a", "b"] });
    for (const bad of ["", "https://github.com", "github.com/../x", "user@github.com", "-h", "h:0", "h:x", "h//x", "h x"]) {
      expect(parseHostPattern(bad), bad).toBeUndefined();
    }
  });

  it("lists hosts with or without a port", () => {
    expect(hostListed(["api.openai.com"], "api.openai.com", 443)).toBe(true);
    expect(hostListed(["api.openai.com:8443"], "api.openai.com", 443)).toBe(false);
    expect(hostListed(["*"], "anything", 1)).toBe(true);
    expect(hostListed([], "anything", 1)).toBe(false);
    expect(hostListed(["not a host"], "not", 1)).toBe(false);
  });
});

describe("agentKeyProblem", () => {
  const endpoints = {
    OPENAI_API_KEY: ["api.openai.com", "llm.internal:8443"],
    ANTHROPIC_API_KEY: ["api.anthropic.com"],
    TEAM_KEY: ["team-llm.example.com"],
  };
  const problem = (agent: AgentSpec, p: Record<string, string[]> = endpoints): AgentKeyProblem["code"] | undefined =>
    agentKeyProblem(agent, p)?.code;

  it("allows agents without a baseUrl: they talk to the operator's endpoint", () => {
    expect(problem({ kind: "openai", model: "m" }, {})).toBeUndefined();
    expect(problem({ kind: "opencode", model: "p/m", apiKeySecret: "OTHER" }, {})).toBeUndefined();
    expect(problem({ kind: "claude-code" }, {})).toBeUndefined();
  });

  it("ignores kinds that carry no key", () => {
    expect(problem({ kind: "script", steps: [{ run: "true" }] }, {})).toBeUndefined();
    expect(problem({ kind: "command", argv: ["true"] }, {})).toBeUndefined();
  });

  it("refuses a baseUrl whose host is not listed for the key", () => {
    const r = agentKeyProblem({ kind: "openai", model: "m", baseUrl: "https://evil.example/v1" }, endpoints);
    expect(r?.code).toBe("secret_endpoint_not_allowed");
    expect(r?.message).toContain("OPENAI_API_KEY");
    expect(r?.message).toContain("evil.example");
    expect(problem({ kind: "openai", model: "m", baseUrl: "https://api.openai.com/v1" })).toBeUndefined();
    expect(problem({ kind: "openai", model: "m", baseUrl: "https://API.OpenAI.com:443/v1" })).toBeUndefined();
    expect(problem({ kind: "openai", model: "m", baseUrl: "https://api.openai.com.evil.example/v1" })).toBe("secret_endpoint_not_allowed");
    expect(problem({ kind: "openai", model: "m", baseUrl: "https://api.openai.com@evil.example/v1" })).toBe("secret_endpoint_not_allowed");
    expect(problem({ kind: "openai", model: "m", baseUrl: "https://api.openai.com:8443/v1" })).toBeUndefined();
  });

  it("matches host:port entries on the effective port", () => {
    expect(problem({ kind: "opencode", model: "p/m", baseUrl: "https://llm.internal:8443/v1" })).toBeUndefined();
    expect(problem({ kind: "opencode", model: "p/m", baseUrl: "https://llm.internal/v1" })).toBe("secret_endpoint_not_allowed");
    expect(problem({ kind: "opencode", model: "p/m", baseUrl: "http://llm.internal:8443/v1" })).toBeUndefined();
    expect(problem({ kind: "openai", model: "m", baseUrl: "http://h/v1" }, { OPENAI_API_KEY: ["h:80"] })).toBeUndefined();
  });

  it("uses the key the agent names, with per-kind defaults", () => {
    expect(problem({ kind: "claude-code", baseUrl: "https://api.anthropic.com" })).toBeUndefined();
    // the OpenAI key's hosts do not cover the Anthropic key
    expect(problem({ kind: "claude-code", baseUrl: "https://api.openai.com" })).toBe("secret_endpoint_not_allowed");
    expect(problem({ kind: "claude-code", apiKeySecret: "OPENAI_API_KEY", baseUrl: "https://api.openai.com" })).toBeUndefined();
    expect(problem({ kind: "openai", model: "m", apiKeySecret: "TEAM_KEY", baseUrl: "https://team-llm.example.com" })).toBeUndefined();
    // naming a different secret for a listed host does not inherit OPENAI_API_KEY's hosts
    expect(problem({ kind: "openai", model: "m", apiKeySecret: "AWS_SECRET_ACCESS_KEY", baseUrl: "https://api.openai.com" })).toBe(
      "secret_endpoint_not_allowed",
    );
    expect(problem({ kind: "openai", model: "m", baseUrl: "https://x" }, { OPENAI_API_KEY: ["*"] })).toBeUndefined();
  });

  it("refuses with no policy at all", () => {
    expect(problem({ kind: "openai", model: "m", baseUrl: "http://127.0.0.1:9/v1" }, {})).toBe("secret_endpoint_not_allowed");
  });

  it("refuses a baseUrl that is not an http(s) URL", () => {
    for (const baseUrl of [
      "not a url",
      "ftp://h/x",
      "file:///etc/passwd",
      "javascript:alert(1)",
      "https://h\\@evil/x",
      "https://h/\nx",
      "//h/x",
    ]) {
      expect(problem({ kind: "openai", model: "m", baseUrl }), baseUrl).toBe("invalid_base_url");
    }
  });
});

describe("securityPolicyFromEnv", () => {
  it("refuses everything optional by default", () => {
    expect(securityPolicyFromEnv({})).toEqual({
      repoUrls: { fileRoots: [], httpHosts: [], allowedHosts: [] },
      secretEndpoints: {},
      secretTenants: {},
    });
    expect(securityPolicyFromEnv({ CODEFLEET_REPO_FILE_ROOTS: "", CODEFLEET_SECRET_ENDPOINTS: "" }).repoUrls.fileRoots).toEqual([]);
  });

  it("reads and normalizes every variable", () => {
    const p = securityPolicyFromEnv({
      CODEFLEET_REPO_FILE_ROOTS: "/srv/git/, /tmp/./repos",
      CODEFLEET_REPO_HTTP_HOSTS: "Git.Internal:8080,*",
      CODEFLEET_REPO_ALLOWED_HOSTS: "GitHub.com/acme/, git.internal:2222",
      CODEFLEET_SECRET_ENDPOINTS: JSON.stringify({ OPENAI_API_KEY: ["API.openai.com", "llm:8443"], EMPTY: [] }),
      CODEFLEET_SECRET_TENANTS: JSON.stringify({ OPENAI_API_KEY: ["*"], NPM_TOKEN: [" team-a", "default"] }),
    });
    expect(p).toEqual({
      repoUrls: {
        fileRoots: ["/srv/git", "/tmp/repos"],
        httpHosts: ["git.internal:8080", "*"],
        allowedHosts: ["github.com/acme", "git.internal:2222"],
      },
      secretEndpoints: { OPENAI_API_KEY: ["api.openai.com", "llm:8443"], EMPTY: [] },
      secretTenants: { OPENAI_API_KEY: ["*"], NPM_TOKEN: ["team-a", "default"] },
    });
    expect(code(checkRepoUrl("git@github.com:acme/x", p.repoUrls))).toBe("ok");
    expect(code(checkRepoUrl("git@github.com:other/x", p.repoUrls))).toBe("repo_url_host_refused");
  });

  it("throws naming the variable for malformed values", () => {
    const cases: [Record<string, string>, string][] = [
      [{ CODEFLEET_SECRET_ENDPOINTS: "{not json" }, "CODEFLEET_SECRET_ENDPOINTS"],
      [{ CODEFLEET_SECRET_ENDPOINTS: "[]" }, "CODEFLEET_SECRET_ENDPOINTS"],
      [{ CODEFLEET_SECRET_ENDPOINTS: '{"OPENAI_API_KEY": "api.openai.com"}' }, "CODEFLEET_SECRET_ENDPOINTS"],
      [{ CODEFLEET_SECRET_ENDPOINTS: '{"OPENAI_API_KEY": ["https://api.openai.com"]}' }, "CODEFLEET_SECRET_ENDPOINTS"],
      [{ CODEFLEET_SECRET_ENDPOINTS: '{"lower": ["h"]}' }, "CODEFLEET_SECRET_ENDPOINTS"],
      [{ CODEFLEET_REPO_FILE_ROOTS: "relative/dir" }, "CODEFLEET_REPO_FILE_ROOTS"],
      [{ CODEFLEET_REPO_HTTP_HOSTS: "http://h" }, "CODEFLEET_REPO_HTTP_HOSTS"],
      [{ CODEFLEET_REPO_ALLOWED_HOSTS: "github.com/../x" }, "CODEFLEET_REPO_ALLOWED_HOSTS"],
    ];
    for (const [env, name] of cases) expect(() => securityPolicyFromEnv(env), JSON.stringify(env)).toThrow(name);
  });
});

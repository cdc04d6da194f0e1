import { describe, expect, it } from "vitest";
import { type CredentialRule, credentialsFor, loadCredentialRules } from "./credentials.js";

const rules: CredentialRule[] = [
  { match: "github.com", username: "bot", password: "tok-github", sshKeyFile: "/keys/github" },
  { match: "github.com/acme", password: "tok-acme" },
  { match: "github.com/acme/secret-repo", password: "tok-secret-repo" },
  { match: "git.internal:8443", password: "tok-internal-8443" },
  { match: "git.internal", password: "tok-internal", sshKeyFile: "/keys/internal" },
  { match: "[2001:db8::1]/team", password: "tok-v6" },
];

describe("credentialsFor", () => {
  it("sends a password to https remotes of the matching host only", () => {
    expect(credentialsFor("https://github.com/someone/x.git", rules)).toEqual({ username: "bot", password: "tok-github" });
    expect(credentialsFor("https://GitHub.COM/someone/x.git", rules)).toEqual({ username: "bot", password: "tok-github" });
    expect(credentialsFor("https://gitlab.com/someone/x.git", rules)).toBeUndefined();
    expect(credentialsFor("https://github.com.evil.com/acme/x.git", rules)).toBeUndefined();
    expect(credentialsFor("https://evil.com/github.com/acme/x.git", rules)).toBeUndefined();
    expect(credentialsFor("https://evilgithub.com/x.git", rules)).toBeUndefined();
  });

  it("picks the most specific rule by path components", () => {
    expect(credentialsFor("https://github.com/acme/app.git", rules)).toEqual({ username: "x-access-token", password: "tok-acme" });
    expect(credentialsFor("https://github.com/acme/secret-repo.git", rules)).toEqual({
      username: "x-access-token",
      password: "tok-secret-repo",
    });
    expect(credentialsFor("https://github.com/acme/secret-repo/sub", rules)?.password).toBe("tok-secret-repo");
    // whole components: acme-evil is not under acme, secret-repo-2 not under secret-repo
    expect(credentialsFor("https://github.com/acme-evil/x", rules)?.password).toBe("tok-github");
    expect(credentialsFor("https://github.com/acme/secret-repo-2", rules)?.password).toBe("tok-acme");
    // .. is resolved before matching
    expect(credentialsFor("https://github.com/acme/../other/x", rules)?.password).toBe("tok-github");
  });

  it("prefers a rule naming the port, and a port rule covers that port only", () => {
    expect(credentialsFor("https://git.internal:8443/x", rules)?.password).toBe("tok-internal-8443");
    expect(credentialsFor("https://git.internal/x", rules)?.password).toBe("tok-internal");
    expect(credentialsFor("https://git.internal:9443/x", rules)?.password).toBe("tok-internal");
    const only8443: CredentialRule[] = [{ match: "git.internal:8443", password: "p" }];
    expect(credentialsFor("https://git.internal/x", only8443)).toBeUndefined();
    expect(credentialsFor("https://git.internal:443/x", [{ match: "git.internal:443", password: "p" }])?.password).toBe("p");
  });

  it("never sends a password over http, git or file, nor to ssh", () => {
    expect(credentialsFor("http://github.com/acme/x.git", rules)).toBeUndefined();
    expect(credentialsFor("git://github.com/acme/x.git", rules)).toBeUndefined();
    expect(credentialsFor("file:///srv/git/x.git", rules)).toBeUndefined();
    expect(credentialsFor("/srv/git/x.git", rules)).toBeUndefined();
    expect(credentialsFor("ssh://git@github.com/acme/x.git", rules)).toEqual({ sshKeyFile: "/keys/github" });
    expect(credentialsFor("ssh://git@github.com/acme/x.git", rules)?.password).toBeUndefined();
  });

  it("sends an SSH key to ssh:// and scp-like remotes of the matching host only", () => {
    expect(credentialsFor("git@github.com:acme/x.git", rules)).toEqual({ sshKeyFile: "/keys/github" });
    expect(credentialsFor("git@GIT.internal:x.git", rules)).toEqual({ sshKeyFile: "/keys/internal" });
    expect(credentialsFor("git@gitlab.com:acme/x.git", rules)).toBeUndefined();
    expect(credentialsFor("https://gitlab.com/x", [{ match: "gitlab.com", sshKeyFile: "/k" }])).toBeUndefined();
  });

  it("skips rules without a credential for the transport when choosing the most specific", () => {
    // github.com/acme has no key: ssh falls back to the host-wide key
    expect(credentialsFor("git@github.com:acme/app.git", rules)).toEqual({ sshKeyFile: "/keys/github" });
  });

  it("handles IPv6 hosts", () => {
    expect(credentialsFor("https://[2001:DB8:0::1]/team/x", rules)?.password).toBe("tok-v6");
    expect(credentialsFor("https://[2001:db8::1]/other/x", rules)).toBeUndefined();
  });

  it("gives nothing for refused or malformed URLs and ignores malformed rules", () => {
    for (const url of ["ext::sh -c x", "-https://github.com/x", "https://a@b@github.com/x", "not a url", ""]) {
      expect(credentialsFor(url, rules), url).toBeUndefined();
    }
    expect(credentialsFor("https://github.com/x", [{ match: "https://github.com", password: "p" }])).toBeUndefined();
  });

  it("takes the first of equally specific rules", () => {
    const twice: CredentialRule[] = [
      { match: "h", password: "first" },
      { match: "H", password: "second" },
    ];
    expect(credentialsFor("https://h/x", twice)?.password).toBe("first");
  });
});

describe("loadCredentialRules", () => {
  const files = (entries: Record<string, string>) => (path: string) => {
    const content = entries[path];
    if (content === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
    return content;
  };

  it("has no rules by default; empty variables count as unset", () => {
    expect(loadCredentialRules({})).toEqual([]);
    expect(loadCredentialRules({ GIT_PASSWORD: "", GIT_USERNAME: "", GIT_SSH_KEY_FILE: "", GIT_CREDENTIALS_FILE: "" })).toEqual([]);
    expect(loadCredentialRules({ GIT_USERNAME: "bot" })).toEqual([]);
    expect(loadCredentialRules({ GIT_CREDENTIAL_HOSTS: "github.com" })).toEqual([]);
  });

  it("refuses the legacy token or key without GIT_CREDENTIAL_HOSTS", () => {
    expect(() => loadCredentialRules({ GIT_PASSWORD: "tok" })).toThrow(
      "GIT_PASSWORD is set but GIT_CREDENTIAL_HOSTS is not: say which hosts the token may be sent to",
    );
    expect(() => loadCredentialRules({ GIT_PASSWORD: "tok", GIT_CREDENTIAL_HOSTS: "" })).toThrow("GIT_CREDENTIAL_HOSTS");
    expect(() => loadCredentialRules({ GIT_SSH_KEY_FILE: "/k" })).toThrow("GIT_SSH_KEY_FILE is set but GIT_CREDENTIAL_HOSTS is not");
    try {
      loadCredentialRules({ GIT_PASSWORD: "tok-do-not-echo" });
    } catch (err) {
      expect((err as Error).message).not.toContain("tok-do-not-echo");
    }
  });

  it("turns the legacy variables into one rule per host", () => {
    const loaded = loadCredentialRules({
      GIT_PASSWORD: "tok",
      GIT_USERNAME: "bot",
      GIT_SSH_KEY_FILE: "/keys/id",
      GIT_CREDENTIAL_HOSTS: "github.com/acme, git.internal:8443",
    });
    expect(loaded).toEqual([
      { match: "github.com/acme", username: "bot", password: "tok", sshKeyFile: "/keys/id" },
      { match: "git.internal:8443", username: "bot", password: "tok", sshKeyFile: "/keys/id" },
    ]);
    expect(credentialsFor("https://github.com/acme/x", loaded)).toEqual({ username: "bot", password: "tok" });
    expect(credentialsFor("https://github.com/other/x", loaded)).toBeUndefined();
    expect(loadCredentialRules({ GIT_PASSWORD: "tok", GIT_CREDENTIAL_HOSTS: "h" })).toEqual([{ match: "h", password: "tok" }]);
    expect(loadCredentialRules({ GIT_SSH_KEY_FILE: "/k", GIT_PASSWORD: "", GIT_CREDENTIAL_HOSTS: "h" })).toEqual([
      { match: "h", sshKeyFile: "/k" },
    ]);
    expect(() => loadCredentialRules({ GIT_PASSWORD: "tok", GIT_CREDENTIAL_HOSTS: "https://github.com" })).toThrow("GIT_CREDENTIAL_HOSTS");
  });

  it("reads rules from GIT_CREDENTIALS_FILE, with passwordFile read by the injected reader, before the legacy ones", () => {
    const read = files({
      "/etc/codefleet/git.json": JSON.stringify([
        { match: "github.com/acme", username: "acme-bot", passwordFile: "/run/secrets/acme" },
        { match: "gitlab.com", password: "tok-gitlab" },
        { match: "git.internal", sshKeyFile: "/keys/internal" },
      ]),
      "/run/secrets/acme": "tok-acme\n",
    });
    const loaded = loadCredentialRules(
      { GIT_CREDENTIALS_FILE: "/etc/codefleet/git.json", GIT_PASSWORD: "legacy", GIT_CREDENTIAL_HOSTS: "github.com" },
      read,
    );
    expect(loaded).toEqual([
      { match: "github.com/acme", username: "acme-bot", password: "tok-acme" },
      { match: "gitlab.com", password: "tok-gitlab" },
      { match: "git.internal", sshKeyFile: "/keys/internal" },
      { match: "github.com", password: "legacy" },
    ]);
    expect(credentialsFor("https://github.com/acme/x", loaded)).toEqual({ username: "acme-bot", password: "tok-acme" });
    expect(credentialsFor("https://github.com/other/x", loaded)?.password).toBe("legacy");
  });

  it("refuses malformed credential files, naming the variable and never echoing secrets", () => {
    const bad: [string, string][] = [
      ['[{"match": "h", "password": "s3cr3t-value"', "not valid JSON"],
      ['{"match": "h"}', "JSON array"],
      ["[42]", "not an object"],
      ['[{"match": "h", "password": "s3cr3t-value", "pasword": "x"}]', "unknown key"],
      ['[{"match": "h", "password": 5}]', "must be a string"],
      ['[{"password": "s3cr3t-value"}]', "match"],
      ['[{"match": "https://h", "password": "s3cr3t-value"}]', "match"],
      ['[{"match": "h", "password": "s3cr3t-value", "passwordFile": "/p"}]', "not both"],
      ['[{"match": "h", "username": "u"}]', "no password"],
      ['[{"match": "h", "password": ""}]', "no password"],
      ['[{"match": "h", "passwordFile": "/missing"}]', "ENOENT"],
      ['[{"match": "h", "passwordFile": "/empty"}]', "is empty"],
    ];
    for (const [content, expected] of bad) {
      const read = files({ "/c.json": content, "/empty": "\n" });
      let message = "";
      try {
        loadCredentialRules({ GIT_CREDENTIALS_FILE: "/c.json" }, read);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, content).toContain("GIT_CREDENTIALS_FILE");
      expect(message, content).toContain(expected);
      expect(message, content).not.toContain("s3cr3t-value");
    }
    expect(() => loadCredentialRules({ GIT_CREDENTIALS_FILE: "/nope.json" }, files({}))).toThrow(/GIT_CREDENTIALS_FILE.*ENOENT/);
  });
});

describe("plain http", () => {
  it("gets a password only from a rule that opts in with insecureHttp, for its host only", () => {
    const rules = [
      { match: "127.0.0.1:8080", password: "tok-aaaa", insecureHttp: true },
      { match: "git.internal", password: "tok-bbbb" },
    ];
    expect(credentialsFor("http://127.0.0.1:8080/r.git", rules)).toEqual({ username: "x-access-token", password: "tok-aaaa" });
    expect(credentialsFor("http://127.0.0.1:9090/r.git", rules)).toBeUndefined();
    expect(credentialsFor("http://git.internal/r.git", rules)).toBeUndefined();
    expect(credentialsFor("https://git.internal/r.git", rules)).toEqual({ username: "x-access-token", password: "tok-bbbb" });
  });

  it("reads insecureHttp from the credentials file as a boolean only", () => {
    const file = (rules: unknown) => () => JSON.stringify(rules);
    expect(loadCredentialRules({ GIT_CREDENTIALS_FILE: "/f" }, file([{ match: "h", password: "p", insecureHttp: true }]))).toEqual([
      { match: "h", password: "p", insecureHttp: true },
    ]);
    expect(() => loadCredentialRules({ GIT_CREDENTIALS_FILE: "/f" }, file([{ match: "h", password: "p", insecureHttp: "yes" }]))).toThrow(
      /insecureHttp must be a boolean/,
    );
  });
});

import { describe, expect, it } from "vitest";
import { hasRepoUrlCredentials, stripRepoUrlCredentials } from "./repo-credentials.js";
import {
  AccessConfigError,
  accessConfig,
  accessFromSettings,
  canAccessTenant,
  decideAdmission,
  hasScope,
  isDevelopmentToken,
  type Principal,
  parseTokensFile,
  quotaFor,
  quotaLimitsAdmission,
  type Scope,
  sha256Hex,
  submissionTenant,
  tenantFilter,
  tokenVerifier,
} from "./tokens.js";

const A_TOKEN = "team-a-token-0123456789";
const file = `
tokens:
  - name: team-a-bot
    sha256: ${sha256Hex(A_TOKEN).toUpperCase()}
    tenant: team-a
    scopes: [tasks:submit, tasks:read]
  - name: reader
    token: plain-reader-token-0123
    tenant: default
    scopes: [tasks:read, artifacts:read, tasks:read]
  - name: runner
    token: runner-service-token-0123
    tenant: "*"
    scopes: [artifacts:write]
tenants:
  team-a: { maxRunning: 2, maxQueued: 5 }
`;

const principal = (tenant: string, ...scopes: Scope[]): Principal => ({ name: "p", tenant, scopes: new Set(scopes) });

describe("tokens file", () => {
  it("parses tokens (hash or, outside production, plaintext), tenants and quotas", () => {
    const c = parseTokensFile(file, { production: false });
    expect(c.tokens).toEqual([
      { name: "team-a-bot", tenant: "team-a", scopes: ["tasks:submit", "tasks:read"], sha256: sha256Hex(A_TOKEN) },
      { name: "reader", tenant: "default", scopes: ["tasks:read", "artifacts:read"], sha256: sha256Hex("plain-reader-token-0123") },
      { name: "runner", tenant: "*", scopes: ["artifacts:write"], sha256: sha256Hex("runner-service-token-0123") },
    ]);
    expect(c.tenants).toEqual({ "team-a": { maxRunning: 2, maxQueued: 5 } });
  });

  it("refuses plaintext tokens in production", () => {
    expect(() => parseTokensFile(file, { production: true })).toThrow(/tokens\[1\] \(reader\): plaintext 'token' is refused/);
  });

  it.each([
    ["not: [valid", /not valid YAML/],
    ["- a\n- b", /tokens file: /],
    ["tokens: []\nextra: 1", /tokens file: /],
    [`tokens:\n  - { name: a, tenant: t, scopes: [tasks:read] }`, /exactly one of sha256 or token/],
    [`tokens:\n  - { name: a, tenant: t, scopes: [tasks:read], sha256: abc }`, /sha256 must be 64 hex digits/],
    [`tokens:\n  - { name: a, tenant: t, scopes: [tasks:write], token: long-enough-token-xyz }`, /unknown scope 'tasks:write'/],
    [`tokens:\n  - { name: a, tenant: Team A, scopes: [tasks:read], token: long-enough-token-xyz }`, /tenant must match/],
    [`tokens:\n  - { name: a, tenant: t, scopes: [tasks:read], token: short }`, /at least 16 characters/],
    [`tokens:\n  - { name: a, tenant: t, scopes: [], token: long-enough-token-xyz }`, /tokens file: /],
    [
      `tokens:\n  - { name: a, tenant: t, scopes: [tasks:read], token: long-enough-token-xyz }\n  - { name: a, tenant: t, scopes: [tasks:read], token: other-long-token-xyz }`,
      /'a' is used twice/,
    ],
    [
      `tokens:\n  - { name: a, tenant: t, scopes: [tasks:read], token: long-enough-token-xyz }\n  - { name: b, tenant: t, scopes: [tasks:read], token: long-enough-token-xyz }`,
      /the same token as 'a'/,
    ],
    [`tokens: []\ntenants:\n  Bad: { maxQueued: 1 }`, /a tenant name must match/],
    [`tokens: []\ntenants:\n  t: { maxQueued: -1 }`, /tokens file: /],
    [`tokens: []\ntenants:\n  t: { maxQueud: 1 }`, /tokens file: /],
  ])("refuses %j", (text, message) => {
    expect(() => parseTokensFile(text, { production: false })).toThrow(AccessConfigError);
    expect(() => parseTokensFile(text, { production: false })).toThrow(message);
  });

  it("never puts a token in an error message", () => {
    const secret = "a-secret-token-that-must-not-leak";
    const texts = [
      `tokens:\n  - { name: a, tenant: BAD, scopes: [tasks:read], token: ${secret} }`,
      `tokens:\n  - { name: a, tenant: t, scopes: [nope], token: ${secret} }`,
      `tokens:\n  - { name: a, tenant: t, scopes: [tasks:read], token: ${secret}, sha256: ${sha256Hex(secret)} }`,
      `tokens:\n  - { name: a, tenant: t, scopes: [tasks:read], token: ${secret}, extra: 1 }`,
    ];
    for (const t of texts) {
      const err = (() => {
        try {
          parseTokensFile(t, { production: true });
        } catch (e) {
          return e as Error;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(AccessConfigError);
      expect(err?.message).not.toContain(secret);
    }
  });
});

describe("access configuration", () => {
  it("keeps the legacy comma list working: admin tokens of tenant default", () => {
    const c = accessConfig({ legacy: ["t1", "t2"], production: false });
    expect(c.tokens.map((t) => [t.name, t.tenant, t.scopes])).toEqual([
      ["api-token-1", "default", ["admin"]],
      ["api-token-2", "default", ["admin"]],
    ]);
  });

  it("combines the file and the legacy list; a token in both keeps the file's entry", () => {
    const c = accessConfig({ tokensFileText: file, legacy: [A_TOKEN, "another-legacy"], production: false });
    expect(c.tokens.map((t) => t.name)).toEqual(["team-a-bot", "reader", "runner", "api-token-2"]);
  });

  it("refuses an empty configuration and, in production, the development tokens", () => {
    expect(() => accessConfig({ legacy: [], production: false })).toThrow(/no API token is configured/);
    expect(() => accessConfig({ legacy: ["codefleet-dev-token"], production: true })).toThrow(/'api-token-1' is a development token/);
    const hashed = `tokens:\n  - { name: ops, tenant: default, scopes: [admin], sha256: ${sha256Hex("codefleet-dev-other")} }`;
    expect(() => accessConfig({ tokensFileText: hashed, legacy: [], production: true })).toThrow(/'ops' is a development token/);
    expect(accessConfig({ tokensFileText: hashed, legacy: [], production: false }).tokens).toHaveLength(1);
    expect(isDevelopmentToken({ plain: "codefleet-dev-runner" })).toBe(true);
    expect(isDevelopmentToken({ plain: "a-real-token" })).toBe(false);
  });
});

describe("access from a service's settings", () => {
  const files: Record<string, string> = { "/etc/codefleet/tokens.yaml": file };
  const read = (path: string) => {
    const text = files[path];
    if (text === undefined) throw Object.assign(new Error("no such file"), { code: "ENOENT" });
    return text;
  };

  it("reads the tokens file through the given reader and adds the legacy list", () => {
    const c = accessFromSettings(
      { CODEFLEET_ENV: "development", CODEFLEET_TOKENS_FILE: "/etc/codefleet/tokens.yaml", CODEFLEET_API_TOKENS: " a-legacy , ,b-legacy" },
      read,
    );
    expect(c.tokens.map((t) => t.name)).toEqual(["team-a-bot", "reader", "runner", "api-token-1", "api-token-2"]);
  });

  it("names the variable when the file cannot be read, and refuses a development outgoing token in production", () => {
    expect(() => accessFromSettings({ CODEFLEET_ENV: "development", CODEFLEET_TOKENS_FILE: "/nope.yaml" }, read)).toThrow(
      /CODEFLEET_TOKENS_FILE: cannot read \/nope.yaml \(ENOENT\)/,
    );
    expect(() =>
      accessFromSettings(
        { CODEFLEET_ENV: "production", CODEFLEET_API_TOKENS: "a-production-token", CODEFLEET_API_TOKEN: "codefleet-dev-runner" },
        read,
      ),
    ).toThrow(/CODEFLEET_API_TOKEN is a development token/);
    expect(() => accessFromSettings({ CODEFLEET_ENV: "production", CODEFLEET_TOKENS_FILE: "/etc/codefleet/tokens.yaml" }, read)).toThrow(
      /plaintext 'token' is refused/,
    );
  });
});

describe("token verification and checks", () => {
  const verifier = tokenVerifier(accessConfig({ tokensFileText: file, legacy: ["legacy-admin-token"], production: false }));

  it("authenticates by the token's hash, and nothing else", () => {
    expect(verifier.authenticate(A_TOKEN)).toMatchObject({ name: "team-a-bot", tenant: "team-a" });
    expect(verifier.authenticate("legacy-admin-token")).toMatchObject({ name: "api-token-1", tenant: "default" });
    expect(verifier.authenticate(sha256Hex(A_TOKEN))).toBeUndefined();
    expect(verifier.authenticate(`${A_TOKEN} `)).toBeUndefined();
    expect(verifier.authenticate("")).toBeUndefined();
  });

  it("admin holds every scope; others only their own", () => {
    expect(hasScope(principal("t", "admin"), "artifacts:write")).toBe(true);
    expect(hasScope(principal("t", "tasks:read"), "tasks:read")).toBe(true);
    expect(hasScope(principal("t", "tasks:read"), "tasks:cancel")).toBe(false);
    expect(hasScope(principal("*", "artifacts:write"), "admin")).toBe(false);
  });

  it("scopes tenants: own tenant only, '*' every tenant; '*' submits to default", () => {
    expect(canAccessTenant(principal("a"), "a")).toBe(true);
    expect(canAccessTenant(principal("a"), "b")).toBe(false);
    expect(canAccessTenant(principal("default"), undefined)).toBe(true);
    expect(canAccessTenant(principal("a"), undefined)).toBe(false);
    expect(canAccessTenant(principal("*"), "b")).toBe(true);
    expect(submissionTenant(principal("a"))).toBe("a");
    expect(submissionTenant(principal("*"))).toBe("default");
    expect(tenantFilter(principal("a"))).toBe("a");
    expect(tenantFilter(principal("*"))).toBeUndefined();
  });
});

describe("quotas", () => {
  const c = parseTokensFile(file, { production: false });
  const defaults = { maxRunning: 10, maxQueued: 100 };

  it("takes a tenant's own values, else the defaults", () => {
    expect(quotaFor(c, "team-a", defaults)).toEqual({ maxRunning: 2, maxQueued: 5 });
    expect(quotaFor(c, "default", defaults)).toEqual(defaults);
  });

  it("admits while under both limits", () => {
    const q = { maxRunning: 2, maxQueued: 5 };
    expect(decideAdmission({ queued: 0, running: 0 }, q).kind).toBe("admit");
    expect(decideAdmission({ queued: 4, running: 2 }, q).kind).toBe("admit");
    expect(decideAdmission({ queued: 5, running: 0 }, q)).toMatchObject({ kind: "refuse", limit: "maxQueued", max: 5 });
    // more running than allowed (the scheduler is not tenant-aware yet): the queue's allowance is used up
    expect(decideAdmission({ queued: 2, running: 5 }, q)).toMatchObject({ kind: "refuse", limit: "maxRunning", max: 2 });
    expect(decideAdmission({ queued: 1, running: 5 }, q).kind).toBe("admit");
  });

  it("0 means no limit", () => {
    expect(quotaLimitsAdmission({ maxRunning: 5, maxQueued: 0 })).toBe(false);
    expect(quotaLimitsAdmission({ maxRunning: 0, maxQueued: 1 })).toBe(true);
    expect(decideAdmission({ queued: 10_000, running: 10_000 }, { maxRunning: 0, maxQueued: 0 }).kind).toBe("admit");
    expect(decideAdmission({ queued: 10_000, running: 10_000 }, { maxRunning: 1, maxQueued: 0 }).kind).toBe("admit");
    expect(decideAdmission({ queued: 3, running: 10_000 }, { maxRunning: 0, maxQueued: 5 }).kind).toBe("admit");
  });
});

describe("repository URL credentials", () => {
  it.each([
    ["https://user:s3cr3t@git.example.com/a/b.git", true, "https://git.example.com/a/b.git"],
    ["https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/a/b", true, "https://github.com/a/b"],
    ["HTTP://x-access-token:t0k3n@git.internal:8080/app.git", true, "HTTP://git.internal:8080/app.git"],
    ["ssh://git:pw@host/a.git", true, "ssh://git@host/a.git"],
    ["ssh://git@host/a.git", false, "ssh://git@host/a.git"],
    ["git@github.com:acme/app.git", false, "git@github.com:acme/app.git"],
    ["https://github.com/acme/app@v1.git", false, "https://github.com/acme/app@v1.git"],
    ["https://github.com/acme/app.git", false, "https://github.com/acme/app.git"],
    ["/srv/git/app.git", false, "/srv/git/app.git"],
  ])("%s", (url, has, stripped) => {
    expect(hasRepoUrlCredentials(url)).toBe(has);
    expect(stripRepoUrlCredentials(url)).toBe(stripped);
  });
});

import { describe, expect, it } from "vitest";
import {
  agentKeySecret,
  checkRepoUrl,
  DEFAULT_REPO_URL_POLICY,
  hostPatternMatches,
  normalizeAbsolutePath,
  normalizeHost,
  parseEndpointUrl,
  parseHostPattern,
  parseRepoUrl,
  type RepoUrlAccepted,
  splitHostPort,
} from "./security-policy.js";

// The building blocks of the URL policy (security-policy.unit.test.ts covers the policy itself).

describe("normalizeHost", () => {
  it("canonicalizes as the WHATWG URL parser does, so two spellings of one host compare equal", () => {
    expect(normalizeHost("GitHub.COM")).toBe("github.com");
    expect(normalizeHost("0x7f.1")).toBe("127.0.0.1");
    expect(normalizeHost("2130706433")).toBe("127.0.0.1");
    expect(normalizeHost("017700000001")).toBe("127.0.0.1");
    expect(normalizeHost("[2001:DB8:0:0::1]")).toBe("[2001:db8::1]");
    expect(normalizeHost("[::ffff:127.0.0.1]")).toBe("[::ffff:7f00:1]");
    expect(normalizeHost("xn--80ak6aa92e.com")).toBe("xn--80ak6aa92e.com");
  });

  it("refuses what is not a plain host name", () => {
    for (const h of [
      "",
      ".",
      "-a",
      "a b",
      "a/b",
      "a@b",
      "a:1",
      "a%2eb",
      "пример.com",
      "[::1",
      "[1::2::3]",
      "[fe80::1%eth0]",
      "256.1.1.1",
      "1.2.3.4.5",
      "999999999999",
      "xn--a",
      "a".repeat(254),
    ]) {
      expect(normalizeHost(h), JSON.stringify(h)).toBeUndefined();
    }
  });
});

describe("splitHostPort", () => {
  it("splits host and port, IPv6 in brackets", () => {
    expect(splitHostPort("h")).toEqual({ host: "h" });
    expect(splitHostPort("H:8443")).toEqual({ host: "h", port: 8443 });
    expect(splitHostPort("[::1]:22")).toEqual({ host: "[::1]", port: 22 });
    expect(splitHostPort("h:65535")).toEqual({ host: "h", port: 65535 });
  });

  it("refuses empty, zero, out-of-range and doubled ports", () => {
    for (const s of ["h:", "h:0", "h:65536", "h:-1", "h:1e3", "h:22:22", ":22", "[::1]:", "[::1]x", "h: 22", "h:123456"]) {
      expect(splitHostPort(s), s).toBeUndefined();
    }
  });
});

describe("normalizeAbsolutePath", () => {
  it("resolves ., .. and repeated slashes; .. stops at the root", () => {
    expect(normalizeAbsolutePath("/a//b/./c/../d")).toBe("/a/b/d");
    expect(normalizeAbsolutePath("/../../etc/passwd")).toBe("/etc/passwd");
    expect(normalizeAbsolutePath("/")).toBe("/");
    expect(normalizeAbsolutePath("/srv/git/")).toBe("/srv/git");
    expect(normalizeAbsolutePath("/srv/git/..")).toBe("/srv");
    expect(normalizeAbsolutePath("/a/...")).toBe("/a/...");
  });
});

describe("hostPatternMatches", () => {
  const url = (raw: string) => parseRepoUrl(raw) as RepoUrlAccepted;
  const matches = (pattern: string, raw: string) => hostPatternMatches(parseHostPattern(pattern) as never, url(raw));

  it("matches the host exactly, the port when named (default ports count) and whole path components", () => {
    expect(matches("github.com", "https://github.com/acme/app.git")).toBe(true);
    expect(matches("github.com:443", "https://github.com/acme/app.git")).toBe(true);
    expect(matches("github.com:22", "https://github.com/acme/app.git")).toBe(false);
    expect(matches("github.com:22", "git@github.com:acme/app.git")).toBe(true);
    expect(matches("github.com/acme", "https://github.com/acme/app.git")).toBe(true);
    expect(matches("github.com/acme/app", "https://github.com/acme/app.git")).toBe(true);
    expect(matches("github.com/acme/app.git", "https://github.com/acme/app")).toBe(true);
    expect(matches("github.com/acme", "https://github.com/acme-evil/app.git")).toBe(false);
    expect(matches("github.com/acme/app", "https://github.com/acme")).toBe(false);
    expect(matches("github.com", "https://github.com.evil.com/acme")).toBe(false);
    expect(matches("github.com", "file:///github.com/acme")).toBe(false);
  });

  it("compares path components case-sensitively (a server may not)", () => {
    expect(matches("github.com/acme", "https://github.com/ACME/app.git")).toBe(false);
  });
});

describe("parseEndpointUrl", () => {
  it("reads host and effective port of http(s) base URLs", () => {
    expect(parseEndpointUrl("https://api.openai.com/v1")).toEqual({ host: "api.openai.com", port: 443 });
    expect(parseEndpointUrl("http://llm.internal/v1")).toEqual({ host: "llm.internal", port: 80 });
    expect(parseEndpointUrl("HTTPS://LLM:8443")).toEqual({ host: "llm", port: 8443 });
    expect(parseEndpointUrl("https://[::1]:8443/v1")).toEqual({ host: "[::1]", port: 8443 });
    expect(parseEndpointUrl("https://user:pw@h/")).toEqual({ host: "h", port: 443 });
    // an IDN host is compared as the URL parser spells it (an allow-list entry must be punycode)
    expect(parseEndpointUrl("https://пример.com/")).toEqual({ host: "xn--e1afmkfd.com", port: 443 });
  });

  it("refuses other schemes and anything a parser could read two ways", () => {
    for (const u of [
      "",
      "api.openai.com",
      "ftp://h",
      "file:///etc",
      "javascript:alert(1)",
      "https://h\\@evil/",
      "https://h /",
      "https://\u0000h/",
      "https://",
    ]) {
      expect(parseEndpointUrl(u), JSON.stringify(u)).toBeUndefined();
    }
  });
});

describe("agentKeySecret", () => {
  it("names the key each agent kind sends to its model endpoint", () => {
    expect(agentKeySecret({ kind: "openai", model: "m" })).toBe("OPENAI_API_KEY");
    expect(agentKeySecret({ kind: "opencode", model: "p/m", apiKeySecret: "MY_KEY" })).toBe("MY_KEY");
    expect(agentKeySecret({ kind: "claude-code" })).toBe("ANTHROPIC_API_KEY");
    expect(agentKeySecret({ kind: "script", steps: [{ run: "x" }] })).toBeUndefined();
    expect(agentKeySecret({ kind: "command", argv: ["x"] })).toBeUndefined();
  });
});

describe("hostile repository URLs", () => {
  it("are judged in bounded time", () => {
    const started = performance.now();
    const cases: [string, boolean][] = [
      [`https://h/${"a/".repeat(2_000)}`, true],
      [`https://h/${"../".repeat(1_300)}`, false],
      [`https://${"@".repeat(4_000)}h/x`, false],
      [`https://h/${"%".repeat(4_000)}`, false],
      [`git@h:${"a/../".repeat(800)}x`, true],
      [`git@h:${"../".repeat(1_300)}`, false],
      [`${"a".repeat(4_000)}:x`, false],
      ["x".repeat(1_000_000), false],
    ];
    for (const [raw, ok] of cases) expect(checkRepoUrl(raw, DEFAULT_REPO_URL_POLICY).ok, raw.slice(0, 40)).toBe(ok);
    expect(performance.now() - started).toBeLessThan(500);
  });
});

import { describe, expect, it } from "vitest";
import { proxyEnvironment, squidConfig, upstreamOf } from "./egress.js";

const directives = (conf: string) => conf.split("\n").filter((l) => l && !l.startsWith("#"));

describe("squidConfig", () => {
  it("llm: a reverse proxy to the gateway; the forward proxy allows nothing", () => {
    const conf = squidConfig({ mode: "llm", allow: [], agentPorts: [], llmUpstream: { host: "host.docker.internal", port: 8089 } });
    expect(conf).toContain("http_port 8089 accel defaultsite=llm-gateway name=llm");
    expect(conf).toContain(
      "cache_peer host.docker.internal parent 8089 0 no-query originserver login=PASSTHRU connect-fail-limit=1000000 name=llm_gateway",
    );
    const access = directives(conf).filter((l) => l.startsWith("http_access"));
    expect(access).toEqual([
      "http_access allow from_llm",
      "http_access deny !from_forward",
      "http_access deny !safe_ports",
      "http_access deny CONNECT !tls_port",
      "http_access deny non_public",
      "http_access deny all",
    ]);
  });

  it("allow: names as dstdomain (*. for subdomains), addresses as dst, after the non-public refusal", () => {
    const conf = squidConfig({ mode: "allow", allow: ["registry.npmjs.org", "*.pypi.org", "198.51.100.10"], agentPorts: [] });
    const lines = directives(conf);
    expect(lines).toContain("acl allowed_domains dstdomain registry.npmjs.org .pypi.org");
    expect(lines).toContain("acl allowed_addresses dst 198.51.100.10");
    expect(lines.indexOf("http_access deny non_public")).toBeLessThan(lines.indexOf("http_access allow allowed_domains"));
    expect(lines.at(-1)).toBe("http_access deny all");
    expect(conf).not.toContain("llm_gateway");
  });

  it("open: any public address; the host, private and link-local ranges stay refused", () => {
    const lines = directives(squidConfig({ mode: "open", allow: [], agentPorts: [] }));
    const nonPublic = lines.find((l) => l.startsWith("acl non_public dst")) as string;
    for (const range of ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8", "fe80::/10", "fc00::/7"])
      expect(nonPublic).toContain(range);
    expect(lines.indexOf("http_access deny non_public")).toBeLessThan(lines.indexOf("http_access allow all"));
  });

  it("forwards the agent's server ports to the container only", () => {
    const conf = squidConfig({ mode: "llm", allow: [], agentPorts: [4096] });
    expect(conf).toContain("http_port 4096 accel defaultsite=agent name=agent_4096");
    expect(conf).toContain("cache_peer agent parent 4096 0 no-query originserver connect-fail-limit=1000000 name=agent_server_4096");
    expect(conf).toContain("cache_peer_access agent_server_4096 deny all");
  });

  it("refuses what would inject a directive: a line break in a host, an odd upstream, the proxy's own ports", () => {
    expect(() => squidConfig({ mode: "allow", allow: ["example.com\nhttp_access allow all"], agentPorts: [] })).toThrow(/allow-list host/);
    expect(() => squidConfig({ mode: "allow", allow: ["exa mple.com"], agentPorts: [] })).toThrow(/allow-list host/);
    expect(() => squidConfig({ mode: "llm", allow: [], agentPorts: [], llmUpstream: { host: "a b", port: 1 } })).toThrow(/upstream host/);
    expect(() => squidConfig({ mode: "llm", allow: [], agentPorts: [3128] })).toThrow(/agent port/);
    expect(() => squidConfig({ mode: "llm", allow: [], agentPorts: [70000] })).toThrow(/agent port/);
  });
});

describe("proxyEnvironment", () => {
  it("points commands at the proxy under allow and open only", () => {
    expect(proxyEnvironment({ mode: "llm" })).toEqual({});
    expect(proxyEnvironment({ mode: "allow" })).toMatchObject({
      HTTPS_PROXY: "http://egress:3128",
      https_proxy: "http://egress:3128",
      NO_PROXY: "egress",
    });
  });
});

describe("upstreamOf", () => {
  it("takes the host and port of the gateway's advertised URL", () => {
    expect(upstreamOf("http://host.docker.internal:8089")).toEqual({ host: "host.docker.internal", port: 8089 });
    expect(upstreamOf("http://gateway.internal/")).toEqual({ host: "gateway.internal", port: 80 });
  });
});

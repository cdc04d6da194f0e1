import type { NetworkMode } from "@codefleet/contracts";

/**
 * A task container's way out (docs/security.md, "Egress"). The container sits alone on an
 * internal network (no route out, and no address of the host on it); the attempt's egress proxy,
 * Debian's squid in a container of its own, is on that network and on the runner's egress bridge.
 * What the proxy does is all that leaves the container:
 *
 * - port {@link EGRESS_LLM_PORT}: a reverse proxy to the runner's LLM gateway (the agent's base URL);
 * - the agent's server ports (OpenCode's API): a reverse proxy the other way, for the runner only;
 * - port {@link EGRESS_PROXY_PORT}: a forward proxy (HTTP_PROXY/HTTPS_PROXY in the container) that
 *   allows nothing under `llm`, the allow-listed hosts under `allow`, and any public address under
 *   `open`. Never, in any mode: private, loopback, link-local or multicast addresses (the host, the
 *   platform's services, a cloud's metadata endpoint), which squid checks on the addresses a name
 *   resolves to, and never a port other than 80 and 443.
 */
export type EgressSpec = {
  mode: Exclude<NetworkMode, "none">;
  /** Hosts (`*.domain` for subdomains) or IPv4 addresses, for `allow`. */
  allow: readonly string[];
  /** The runner's LLM gateway as the proxy reaches it (its advertised address). */
  llmUpstream?: { host: string; port: number };
  /** Ports of a server in the task's container the runner talks to (through the proxy). */
  agentPorts: readonly number[];
};

/** The proxy's name on the task's internal network. */
export const EGRESS_ALIAS = "egress";
/** The task container's name on its internal network (the proxy's upstream for agent ports). */
export const AGENT_ALIAS = "agent";
export const EGRESS_PROXY_PORT = 3128;
export const EGRESS_LLM_PORT = 8089;

/** The LLM gateway as a task container behind its egress proxy reaches it. */
export const EGRESS_GATEWAY_URL = `http://${EGRESS_ALIAS}:${EGRESS_LLM_PORT}`;

/** Non-public IPv4 ranges: never reached from a task, whatever a name resolves to (the Kubernetes driver's NetworkPolicy uses them too). */
export const NON_PUBLIC_V4 = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.0.0.0/24",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "224.0.0.0/3",
];
/** Non-public IPv6 ranges (IPv4-mapped, NAT64 and 6to4 among them: they carry IPv4 addresses). */
export const NON_PUBLIC_V6 = ["::1/128", "::ffff:0:0/96", "64:ff9b::/96", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8"];
const NON_PUBLIC = [...NON_PUBLIC_V4, "::/128", ...NON_PUBLIC_V6];

const IPV4 = /^(\d{1,3})(\.\d{1,3}){3}$/;
const HOST = /^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

/** Environment of a container whose commands reach allow-listed hosts through the proxy. */
export function proxyEnvironment(spec: Pick<EgressSpec, "mode">): Record<string, string> {
  if (spec.mode === "llm") return {};
  const url = `http://${EGRESS_ALIAS}:${EGRESS_PROXY_PORT}`;
  return { HTTP_PROXY: url, HTTPS_PROXY: url, http_proxy: url, https_proxy: url, NO_PROXY: EGRESS_ALIAS, no_proxy: EGRESS_ALIAS };
}

/**
 * The squid configuration of one attempt. Pure: every value in it was validated (hosts by the
 * task spec's pattern, checked again here, since a line break in a host would be a directive).
 */
export function squidConfig(spec: EgressSpec): string {
  const allow = spec.mode === "allow" ? spec.allow.map(checkedHost) : [];
  const domains = allow.filter((h) => !IPV4.test(h)).map((h) => (h.startsWith("*.") ? h.slice(1) : h));
  const addresses = allow.filter((h) => IPV4.test(h));
  const lines = [
    "# rendered by the codefleet runner for one attempt",
    `http_port ${EGRESS_PROXY_PORT} name=forward`,
    "pid_filename none",
    "cache deny all",
    "cache_mem 0 MB",
    "access_log stdio:/dev/stdout",
    "cache_log stdio:/dev/stderr",
    "cache_store_log none",
    "logfile_rotate 0",
    "coredump_dir /tmp",
    "netdb_filename none",
    "pinger_enable off",
    "shutdown_lifetime 0 seconds",
    "via off",
    "forwarded_for delete",
    "httpd_suppress_version_string on",
    "client_request_buffer_max_size 1 MB",
    "acl from_forward myportname forward",
    "acl CONNECT method CONNECT",
    "acl safe_ports port 80 443",
    "acl tls_port port 443",
    `acl non_public dst ${NON_PUBLIC.join(" ")}`,
  ];
  const reverse: string[] = [];
  if (spec.llmUpstream) {
    const { host, port } = checkedUpstream(spec.llmUpstream);
    lines.push(`http_port ${EGRESS_LLM_PORT} accel defaultsite=llm-gateway name=llm`, "acl from_llm myportname llm");
    lines.push(`cache_peer ${host} parent ${port} 0 no-query originserver login=PASSTHRU connect-fail-limit=1000000 name=llm_gateway`);
    lines.push("cache_peer_access llm_gateway allow from_llm", "cache_peer_access llm_gateway deny all", "never_direct allow from_llm");
    reverse.push("http_access allow from_llm");
  }
  for (const port of spec.agentPorts) {
    const p = checkedPort(port);
    lines.push(`http_port ${p} accel defaultsite=${AGENT_ALIAS} name=agent_${p}`, `acl from_agent_${p} myportname agent_${p}`);
    lines.push(`cache_peer ${AGENT_ALIAS} parent ${p} 0 no-query originserver connect-fail-limit=1000000 name=agent_server_${p}`);
    lines.push(
      `cache_peer_access agent_server_${p} allow from_agent_${p}`,
      `cache_peer_access agent_server_${p} deny all`,
      `never_direct allow from_agent_${p}`,
    );
    reverse.push(`http_access allow from_agent_${p}`);
  }
  lines.push(...reverse);
  lines.push(
    "http_access deny !from_forward",
    "http_access deny !safe_ports",
    "http_access deny CONNECT !tls_port",
    "http_access deny non_public",
  );
  if (spec.mode === "open") lines.push("http_access allow all");
  if (domains.length) lines.push(`acl allowed_domains dstdomain ${domains.join(" ")}`, "http_access allow allowed_domains");
  if (addresses.length) lines.push(`acl allowed_addresses dst ${addresses.join(" ")}`, "http_access allow allowed_addresses");
  lines.push("http_access deny all");
  return `${lines.join("\n")}\n`;
}

function checkedHost(host: string): string {
  const h = host.toLowerCase();
  if (!(IPV4.test(h) || HOST.test(h)) || h.length > 255) throw new Error(`not an allow-list host: ${JSON.stringify(host.slice(0, 100))}`);
  return h;
}

function checkedPort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535 || port === EGRESS_PROXY_PORT || port === EGRESS_LLM_PORT)
    throw new Error(`not a usable agent port: ${port}`);
  return port;
}

function checkedUpstream(u: { host: string; port: number }): { host: string; port: number } {
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(u.host))
    throw new Error(`not an upstream host: ${JSON.stringify(u.host.slice(0, 100))}`);
  if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) throw new Error(`not an upstream port: ${u.port}`);
  return u;
}

/** The gateway's host and port from its advertised URL. */
export function upstreamOf(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || (u.protocol === "https:" ? 443 : 80)) };
}

/** The bridge the proxies' outer side is on (shared by the runners of one engine; made when missing). */
export const DEFAULT_EGRESS_NETWORK = "codefleet-egress";

/** How a driver runs egress proxies. */
export type EgressProxySettings = {
  /** The proxy image (images/egress-proxy: Debian's squid). */
  image: string;
  /** The outer bridge; default {@link DEFAULT_EGRESS_NETWORK}. */
  network?: string;
  /** /etc/hosts entries of the proxy, e.g. `host.docker.internal:host-gateway` to reach a gateway published on the host. */
  extraHosts?: readonly string[];
  /** The deployment label of the egress bridge (stack:down removes it). */
  deployment?: string;
};

import { type Static, Type } from "@sinclair/typebox";

/**
 * What a task's container may reach (docs/security.md, "Egress"). Enforced outside the container:
 * it sits on an internal Docker network with no route out, and its only exit is the attempt's
 * egress proxy (Debian's squid), configured for the attempt:
 *
 * - `none`: no network at all;
 * - `llm`: only the runner's LLM gateway (and, for the runner, the agent's own server);
 * - `{ allow: [hosts] }`: also HTTP(S) to these hosts through the proxy (HTTP_PROXY/HTTPS_PROXY);
 * - `open`: HTTP(S) to any public address through the proxy.
 *
 * Never, in any mode: the host, the platform's services, link-local/metadata or private addresses.
 */
export const NETWORK_MODES = ["none", "llm", "allow", "open"] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

/** A host name (`*.` for its subdomains) or an IPv4 address; no scheme, port or path. */
export const ALLOW_HOST_PATTERN =
  "^(\\*\\.)?(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$|^(\\d{1,3}\\.){3}\\d{1,3}$";

export const NetworkSpec = Type.Union(
  [
    Type.Literal("none"),
    Type.Literal("llm"),
    Type.Literal("open"),
    Type.Object(
      {
        allow: Type.Array(Type.String({ pattern: ALLOW_HOST_PATTERN, maxLength: 255 }), {
          minItems: 1,
          maxItems: 64,
          uniqueItems: true,
          description: "hosts the task's commands may reach over HTTP(S) through the egress proxy (`*.example.com` for subdomains)",
        }),
      },
      { additionalProperties: false },
    ),
  ],
  { description: "what the task's container may reach: none | llm (default) | open | { allow: [hosts] }" },
);
export type NetworkSpec = Static<typeof NetworkSpec>;

export const RUNTIMES = ["runc", "runsc"] as const;
export type Runtime = (typeof RUNTIMES)[number];
export const RuntimeSpec = Type.Union(
  RUNTIMES.map((r) => Type.Literal(r)),
  { description: "the container runtime: runc (default) or runsc (gVisor; only for tasks without network on most hosts)" },
);

/** A task's network policy in one shape. */
export type EgressPolicy = { mode: NetworkMode; allow: string[] };

export function networkPolicyOf(spec: NetworkSpec | undefined, operatorDefault: NetworkMode): EgressPolicy {
  if (spec === undefined) return { mode: operatorDefault, allow: [] };
  if (typeof spec === "string") return { mode: spec, allow: [] };
  return { mode: "allow", allow: [...spec.allow] };
}

const RANK: Record<NetworkMode, number> = { none: 0, llm: 1, allow: 2, open: 3 };

/** Is `mode` within the operator's ceiling? */
export const networkWithin = (mode: NetworkMode, ceiling: NetworkMode): boolean => RANK[mode] <= RANK[ceiling];

/** Agent kinds whose agent calls the model from inside the container (the others call it from the runner). */
export const AGENTS_CALLING_MODEL_FROM_CONTAINER: ReadonlySet<string> = new Set(["opencode", "claude-code"]);

/** The operator's network settings: the mode of tasks that name none, and the most any task may have. */
export type NetworkPolicySettings = { default: NetworkMode; ceiling: NetworkMode };
export const DEFAULT_NETWORK_SETTINGS: NetworkPolicySettings = { default: "llm", ceiling: "open" };

import {
  type NetworkMode,
  type NetworkPolicySettings,
  networkPolicyOf,
  networkPolicyProblem,
  type ResolvedTaskSpec,
  type Runtime,
} from "@codefleet/contracts";
import type { AgentNeeds } from "../agents/agent.js";
import { type EgressSpec, upstreamOf } from "../execution/egress.js";

/** The operator's runtime settings and what this runner's engine has. */
export type RuntimeSettings = {
  /** Runtimes the engine has (Docker's `info.Runtimes`); `runc` always. */
  available: readonly string[];
  /** The runtime of tasks without network that name none (e.g. `runsc` where gVisor is installed). */
  noNetwork?: Runtime;
  /** May runsc containers have a network here? (Debian's runsc registered with --network=none: no.) */
  runscWithNetwork: boolean;
};

/** How an attempt's container is made: its network and egress, and its runtime. */
export type ContainerPlan = {
  network: "bridge" | "none";
  egress?: EgressSpec;
  runtime: string;
  /** The policy as enforced, for run.started. */
  mode: NetworkMode;
  allow: string[];
};

export type ContainerPlanProblem = { code: "network_not_allowed" | "runtime_unavailable"; message: string };

/**
 * Pure: the task's network policy (its own, or the operator's default, under the operator's
 * ceiling) and what its agent needs make the container's network. `llm` gives a container a
 * network only when its agent calls the model from inside it (OpenCode, Claude Code): agents whose
 * loop runs in the runner get none. `allow` and `open` always give one (setup and test commands
 * fetch through the proxy).
 */
export function containerPlan(
  spec: Pick<ResolvedTaskSpec, "network" | "runtime" | "agent">,
  needs: Pick<AgentNeeds, "network" | "modelApi" | "serverPorts">,
  o: { network?: NetworkPolicySettings; gatewayUrl?: string; runtimes: RuntimeSettings },
): ContainerPlan | ContainerPlanProblem {
  const problem = networkPolicyProblem(spec, o.network);
  if (problem) return problem;
  const policy = networkPolicyOf(spec.network, o.network?.default ?? "llm");
  const agentCallsModel = needs.network === "bridge" && needs.modelApi !== undefined;
  const hasNetwork = policy.mode === "allow" || policy.mode === "open" || (policy.mode === "llm" && agentCallsModel);
  const runtime =
    spec.runtime ??
    (!hasNetwork && o.runtimes.noNetwork && o.runtimes.available.includes(o.runtimes.noNetwork) ? o.runtimes.noNetwork : "runc");
  if (!o.runtimes.available.includes(runtime))
    return {
      code: "runtime_unavailable",
      message: `runtime '${runtime}' is not installed on this runner's engine (it has: ${o.runtimes.available.join(", ")})`,
    };
  if (runtime === "runsc" && hasNetwork && !o.runtimes.runscWithNetwork)
    return {
      code: "runtime_unavailable",
      message: `runtime 'runsc' runs only containers without network here, and this task's container needs one (network '${policy.mode}', agent ${spec.agent.kind})`,
    };
  if (!hasNetwork) return { network: "none", runtime, mode: policy.mode === "llm" ? "none" : policy.mode, allow: [] };
  const egress: EgressSpec = {
    mode: policy.mode as EgressSpec["mode"],
    allow: policy.allow,
    agentPorts: needs.serverPorts ?? [],
    ...(agentCallsModel && o.gatewayUrl ? { llmUpstream: upstreamOf(o.gatewayUrl) } : {}),
  };
  return { network: "bridge", egress, runtime, mode: policy.mode, allow: policy.allow };
}

export const isPlanProblem = (p: ContainerPlan | ContainerPlanProblem): p is ContainerPlanProblem => "code" in p;

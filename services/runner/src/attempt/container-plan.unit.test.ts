import type { AgentSpec } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { type ContainerPlan, containerPlan, isPlanProblem, type RuntimeSettings } from "./container-plan.js";

const script: AgentSpec = { kind: "script", steps: ["true"] } as AgentSpec;
const opencode = { kind: "opencode", model: "openai/gpt" } as AgentSpec;
const claude = { kind: "claude-code" } as AgentSpec;
const runnerSideModel = { network: "none" as const, modelApi: "openai" as const };
const openCodeNeeds = { network: "bridge" as const, modelApi: "openai" as const, serverPorts: [4096] };
const claudeNeeds = { network: "bridge" as const, modelApi: "anthropic" as const };
const commandNeeds = { network: "bridge" as const };
const runc: RuntimeSettings = { available: ["runc"], runscWithNetwork: false };
const gvisor: RuntimeSettings = { available: ["runc", "runsc"], noNetwork: "runsc", runscWithNetwork: false };
const gatewayUrl = "http://host.docker.internal:8089";

const plan = (p: ReturnType<typeof containerPlan>): ContainerPlan => {
  if (isPlanProblem(p)) throw new Error(`${p.code}: ${p.message}`);
  return p;
};

describe("containerPlan", () => {
  it("llm (the default): a network behind the proxy only for agents that call the model from their container", () => {
    const oc = plan(containerPlan({ agent: opencode }, openCodeNeeds, { gatewayUrl, runtimes: runc }));
    expect(oc).toEqual({
      network: "bridge",
      egress: { mode: "llm", allow: [], agentPorts: [4096], llmUpstream: { host: "host.docker.internal", port: 8089 } },
      runtime: "runc",
      mode: "llm",
      allow: [],
    });
    expect(plan(containerPlan({ agent: claude }, claudeNeeds, { gatewayUrl, runtimes: runc })).egress?.agentPorts).toEqual([]);
    // the built-in openai agent and scripts run their loop in the runner: no network at all
    expect(plan(containerPlan({ agent: script }, runnerSideModel, { gatewayUrl, runtimes: runc }))).toMatchObject({
      network: "none",
      mode: "none",
    });
    // a command agent has no model session: llm gives it nothing to reach
    expect(plan(containerPlan({ agent: script }, commandNeeds, { gatewayUrl, runtimes: runc })).network).toBe("none");
  });

  it("allow and open give every task a network (setup and tests fetch through the proxy)", () => {
    const allow = plan(
      containerPlan({ agent: script, network: { allow: ["registry.npmjs.org", "*.pypi.org"] } }, runnerSideModel, { runtimes: runc }),
    );
    expect(allow).toMatchObject({ network: "bridge", mode: "allow", allow: ["registry.npmjs.org", "*.pypi.org"] });
    expect(allow.egress?.llmUpstream).toBeUndefined();
    expect(plan(containerPlan({ agent: script, network: "open" }, runnerSideModel, { runtimes: runc })).egress?.mode).toBe("open");
  });

  it("follows the operator's default and refuses above the ceiling", () => {
    expect(
      plan(containerPlan({ agent: script }, runnerSideModel, { network: { default: "open", ceiling: "open" }, runtimes: runc })).mode,
    ).toBe("open");
    const refused = containerPlan({ agent: script, network: "open" }, runnerSideModel, {
      network: { default: "llm", ceiling: "allow" },
      runtimes: runc,
    });
    expect(refused).toMatchObject({ code: "network_not_allowed" });
  });

  it("refuses none for agents that call the model from their container, and private allow-list addresses", () => {
    expect(containerPlan({ agent: opencode, network: "none" }, openCodeNeeds, { runtimes: runc })).toMatchObject({
      code: "network_not_allowed",
    });
    for (const host of ["169.254.169.254", "10.1.2.3", "127.0.0.1", "172.17.0.1", "localhost"])
      expect(containerPlan({ agent: script, network: { allow: [host] } }, runnerSideModel, { runtimes: runc }), host).toMatchObject({
        code: "network_not_allowed",
      });
  });

  it("runs tasks without network under the operator's runtime, and refuses a runtime the engine lacks or cannot network", () => {
    expect(plan(containerPlan({ agent: script }, runnerSideModel, { runtimes: gvisor })).runtime).toBe("runsc");
    expect(plan(containerPlan({ agent: opencode }, openCodeNeeds, { gatewayUrl, runtimes: gvisor })).runtime).toBe("runc");
    expect(plan(containerPlan({ agent: script, runtime: "runc" }, runnerSideModel, { runtimes: gvisor })).runtime).toBe("runc");
    expect(containerPlan({ agent: script, runtime: "runsc" }, runnerSideModel, { runtimes: runc })).toMatchObject({
      code: "runtime_unavailable",
    });
    expect(containerPlan({ agent: opencode, runtime: "runsc" }, openCodeNeeds, { gatewayUrl, runtimes: gvisor })).toMatchObject({
      code: "runtime_unavailable",
    });
    expect(
      plan(
        containerPlan({ agent: opencode, runtime: "runsc" }, openCodeNeeds, {
          gatewayUrl,
          runtimes: { ...gvisor, runscWithNetwork: true },
        }),
      ).runtime,
    ).toBe("runsc");
  });
});

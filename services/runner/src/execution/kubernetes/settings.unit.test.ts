import type { V1Status } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { EXEC_PRELUDE, execInvocation, exitCodeOf } from "./exec.js";
import { kubernetesSettingsFrom, parseEgress, parseLabels } from "./settings.js";
import { unknownFields, wireToModel } from "./wire.js";

describe("kubernetesSettingsFrom", () => {
  it("has safe defaults: in-cluster, no egress, no DNS, no gateway port, the default service account", () => {
    expect(kubernetesSettingsFrom({ K8S_SLOTS_PVC: "slots" })).toEqual({
      namespace: "codefleet",
      kubeconfig: { kind: "in-cluster" },
      slots: { claimName: "slots", mountPath: "/var/lib/codefleet/repo-pool" },
      runtimeClasses: { runsc: "gvisor" },
      imagePullPolicy: "IfNotPresent",
      imagePullSecrets: [],
      serviceAccountName: "default",
      nodeSelector: {},
      egress: [],
      allowDns: false,
      gateway: { podLabels: { "app.kubernetes.io/name": "runner", "app.kubernetes.io/part-of": "codefleet" }, port: 0 },
      podStartTimeoutMs: 180_000,
      tmpfsMb: 512,
    });
  });

  it("reads a kubeconfig file and context, the owner pod, and normalises the mount path", () => {
    const s = kubernetesSettingsFrom({
      K8S_SLOTS_PVC: "slots",
      KUBECONFIG: "/home/me/.kube/config",
      K8S_CONTEXT: "kind-codefleet",
      K8S_SLOTS_MOUNT_PATH: "/data//pool/",
      K8S_RUNNER_POD_NAME: "runner-1",
      K8S_RUNNER_POD_UID: "uid-1",
    });
    expect(s.kubeconfig).toEqual({ kind: "file", path: "/home/me/.kube/config", context: "kind-codefleet" });
    expect(s.slots.mountPath).toBe("/data/pool");
    expect(s.owner).toEqual({ podName: "runner-1", podUid: "uid-1" });
  });

  it("fails fast naming the variable", () => {
    expect(() => kubernetesSettingsFrom({})).toThrow(/K8S_SLOTS_PVC is required/);
    expect(() => kubernetesSettingsFrom({ K8S_SLOTS_PVC: "slots", K8S_NAMESPACE: "Not_A_Namespace" })).toThrow(/K8S_NAMESPACE/);
    expect(() => kubernetesSettingsFrom({ K8S_SLOTS_PVC: "slots", K8S_IMAGE_PULL_POLICY: "Sometimes" })).toThrow(/K8S_IMAGE_PULL_POLICY/);
    expect(() => kubernetesSettingsFrom({ K8S_SLOTS_PVC: "slots", K8S_AGENT_EGRESS: "10.0.0.0:443" })).toThrow(/K8S_AGENT_EGRESS/);
    expect(() => kubernetesSettingsFrom({ K8S_SLOTS_PVC: "slots", K8S_GATEWAY_POD_LABELS: "" })).not.toThrow(); // default applies
    expect(() => kubernetesSettingsFrom({ K8S_SLOTS_PVC: "slots", K8S_GATEWAY_POD_LABELS: "no-equals" })).toThrow(/K8S_GATEWAY_POD_LABELS/);
    expect(() => kubernetesSettingsFrom({ K8S_SLOTS_PVC: "slots", K8S_RUNNER_POD_NAME: "runner-0" })).toThrow(/go together/);
    expect(() => kubernetesSettingsFrom({ K8S_SLOTS_PVC: "slots", K8S_IMAGE_PULL_SECRETS: "Bad_Name" })).toThrow(/K8S_IMAGE_PULL_SECRETS/);
  });

  it("parses egress CIDRs with optional port and protocol, IPv4 and IPv6, and refuses what is not one", () => {
    expect(parseEgress("10.0.0.0/8:443, 10.1.2.3/32:53/UDP,fd00::/8:8443,0.0.0.0/0")).toEqual([
      { cidr: "10.0.0.0/8", port: 443, protocol: "TCP" },
      { cidr: "10.1.2.3/32", port: 53, protocol: "UDP" },
      { cidr: "fd00::/8", port: 8443, protocol: "TCP" },
      { cidr: "0.0.0.0/0", protocol: "TCP" },
    ]);
    for (const bad of ["10.0.0.0/33", "10.0.0/8", "example.com/32:443", "10.0.0.0/8:70000", "10.0.0.0/8:443/ICMP", "::/129"]) {
      expect(() => parseEgress(bad), bad).toThrow(/K8S_AGENT_EGRESS/);
    }
  });

  it("parses label maps", () => {
    expect(parseLabels("X", "a=b, example.com/c=d,e=")).toEqual({ a: "b", "example.com/c": "d", e: "" });
    expect(() => parseLabels("X", "a=b c")).toThrow(/X/);
  });
});

describe("execInvocation: how an exec's environment, directory, timeout and stdin reach the pod", () => {
  it("keeps secrets out of the command line: the environment travels base64-encoded on stdin", () => {
    const inv = execInvocation(["node", "agent.js"], {
      env: { OPENAI_API_KEY: "sk-secret-value", MULTI: "a\nb" },
      workdir: "/workspace/sub",
      timeoutMs: 90_500,
      stdin: "prompt",
    });
    expect(inv.command).toEqual(["sh", "-c", EXEC_PRELUDE, "codefleet-exec", "/workspace/sub", "91", "6", "node", "agent.js"]);
    expect(inv.command.join(" ")).not.toContain("sk-secret-value");
    expect(inv.stdin.toString()).toBe(
      `OPENAI_API_KEY=${Buffer.from("sk-secret-value").toString("base64")}\nMULTI=${Buffer.from("a\nb").toString("base64")}\n\nprompt`,
    );
  });

  it("defaults to /workspace, at least one second, no stdin; refuses names a shell cannot export and empty commands", () => {
    const inv = execInvocation(["true"], { timeoutMs: 10 });
    expect(inv.command.slice(4, 7)).toEqual(["/workspace", "1", "0"]);
    expect(inv.stdin.toString()).toBe("\n");
    expect(() => execInvocation(["true"], { timeoutMs: 1000, env: { "A-B": "x" } })).toThrow(/not a shell name/);
    expect(() => execInvocation(["true"], { timeoutMs: 1000, env: { "A=B": "x" } })).toThrow(/not a shell name/);
    expect(() => execInvocation([], { timeoutMs: 1000 })).toThrow(/needs a command/);
  });

  it("reads the exit code from the exec's final status", () => {
    expect(exitCodeOf({ status: "Success" })).toBe(0);
    const failure = (code: string): V1Status => ({
      status: "Failure",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: code }] },
    });
    expect(exitCodeOf(failure("137"))).toBe(137);
    expect(exitCodeOf(failure("2"))).toBe(2);
    expect(exitCodeOf({ status: "Failure", reason: "InternalError", message: "container not found" })).toBe(-1);
    expect(exitCodeOf(undefined)).toBe(-1);
  });
});

describe("wire and model forms", () => {
  it("finds fields the OpenAPI types do not have, at any depth", () => {
    expect(
      unknownFields(
        { metadata: { name: "p", labelz: {} }, spec: { containers: [{ name: "a", image: "b", securityContext: { privilegd: true } }] } },
        "V1Pod",
      ),
    ).toEqual(["V1Pod.metadata.labelz", "V1Pod.spec.containers[0].securityContext.privilegd"]);
    expect(unknownFields({ spec: { ingress: [{ _from: [] }] } }, "V1NetworkPolicy")).toEqual(["V1NetworkPolicy.spec.ingress[0]._from"]);
  });

  it("renames only what the client model spells differently", () => {
    const model = wireToModel<Record<string, unknown>>(
      { metadata: { labels: { from: "x" } }, spec: { ingress: [{ from: [{ podSelector: {} }] }] } },
      "V1NetworkPolicy",
    );
    expect(model).toEqual({ metadata: { labels: { from: "x" } }, spec: { ingress: [{ _from: [{ podSelector: {} }] }] } });
  });
});

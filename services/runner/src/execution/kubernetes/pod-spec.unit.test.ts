import { CONTAINER_BASE_INDEX, CONTAINER_BASE_OBJECTS, CONTAINER_WORKSPACE } from "@codefleet/contracts";
import type { V1NetworkPolicy, V1Pod } from "@kubernetes/client-node";
import { ObjectSerializer } from "@kubernetes/client-node/dist/gen/models/ObjectSerializer.js";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { Pod } from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { LABELS, type RunContainerSpec } from "../driver.js";
import { labelValue, podName } from "./names.js";
import {
  containerStateOf,
  cpuQuantity,
  networkPolicyFor,
  type PodSettings,
  podSpecFor,
  runLabels,
  slotSubPath,
  startProblem,
} from "./pod-spec.js";
import { isLabelKey, isLabelValue, kubernetesSettingsFrom } from "./settings.js";
import { unknownFields, wireToModel } from "./wire.js";

const MOUNT = "/var/lib/codefleet/repo-pool";

const minimal: PodSettings = kubernetesSettingsFrom({ K8S_SLOTS_PVC: "codefleet-slots" });
const full: PodSettings = kubernetesSettingsFrom({
  K8S_NAMESPACE: "fleet",
  K8S_SLOTS_PVC: "codefleet-slots",
  K8S_SLOTS_MOUNT_PATH: MOUNT,
  K8S_RUNTIME_CLASS: "gvisor",
  K8S_IMAGE_PULL_POLICY: "Always",
  K8S_IMAGE_PULL_SECRETS: "registry-a,registry-b",
  K8S_AGENT_SERVICE_ACCOUNT: "codefleet-agent",
  K8S_AGENT_NODE_SELECTOR: "codefleet.io/agents=true,kubernetes.io/arch=amd64",
  K8S_AGENT_EGRESS: "10.20.0.0/16:443,192.168.7.7/32:8443/TCP,fd00::/8:53/UDP,172.16.0.0/12",
  K8S_AGENT_DNS: "true",
  K8S_GATEWAY_PORT: "8089",
  K8S_TMPFS_MB: "256",
  K8S_RUNNER_POD_NAME: "runner-0",
  K8S_RUNNER_POD_UID: "6f1c2a3e-0d4b-4c55-9a4e-1f2e3d4c5b6a",
});

function spec(over: Partial<RunContainerSpec> = {}): RunContainerSpec {
  return {
    taskId: "tsk_01JABCDEFGHJKMNPQRSTVWXYZ0",
    attempt: 1,
    runnerId: "runner-0",
    image: "codefleet/agent:latest",
    slot: { slotId: "slot_01JABC", path: `${MOUNT}/slots/slot_01JABC`, hostPath: `${MOUNT}/slots/slot_01JABC` },
    memoryMb: 2048,
    cpus: 2,
    pidsLimit: 512,
    network: "none",
    env: {},
    ...over,
  };
}

/** The run specs the runner makes: cold attempts of each network, warm-pool entries, agent servers, odd ids. */
const VARIANTS: [string, RunContainerSpec, PodSettings][] = [
  ["a script task without network, default settings", spec(), minimal],
  [
    "an opencode attempt: network llm, the agent's server port, every setting",
    spec({
      network: "bridge",
      egress: { mode: "llm", allow: [], llmUpstream: { host: "10.1.2.3", port: 8089 }, agentPorts: [4096] },
      env: { OPENCODE_CONFIG: "/tmp/opencode.json", CI: "1" },
      deployment: "codefleet",
    }),
    full,
  ],
  [
    "a task with network open on gVisor",
    spec({ network: "bridge", runtime: "runsc", egress: { mode: "open", allow: [], agentPorts: [] } }),
    full,
  ],
  [
    "a task allowed two addresses, with a server port the old way (exposedPorts)",
    spec({ network: "bridge", exposedPorts: [8080], egress: { mode: "allow", allow: ["93.184.215.14", "140.82.112.3"], agentPorts: [] } }),
    minimal,
  ],
  [
    "a warm-pool entry (reservation owner, extra label)",
    spec({ taskId: "warm-01jabcdefghjkmnpqrstvwxyz0", network: "bridge", labels: { "codefleet.warm": "true" }, cpus: 0.5, memoryMb: 512 }),
    full,
  ],
  [
    "a long task id with characters no label or name takes, and a runner id that is no label value",
    spec({
      taskId: `Task_${"x".repeat(120)}`,
      attempt: 17,
      runnerId: "runner.example.com/with/slashes",
      command: ["node", "/opt/agent/server.js", "--port", "8080"],
      cpus: 0.25,
      memoryMb: 300,
    }),
    { ...minimal, runtimeClassName: "kata" },
  ],
];

function validatePod(obj: V1Pod): void {
  new Pod(obj as ConstructorParameters<typeof Pod>[0]).validate();
  expect(unknownFields(obj, "V1Pod")).toEqual([]);
}

function validatePolicy(obj: unknown): void {
  new NetworkPolicy(obj as ConstructorParameters<typeof NetworkPolicy>[0]).validate();
  expect(unknownFields(obj, "V1NetworkPolicy")).toEqual([]);
}

describe("podSpecFor: the task pod, validated against the Kubernetes OpenAPI schemas", () => {
  for (const [what, s, settings] of VARIANTS) {
    it(`builds a schema-valid, hardened pod for ${what}`, () => {
      const pod = podSpecFor(s, settings);
      validatePod(pod);
      const podSpec = pod.spec!;
      // nothing of the host, no token, no service links
      expect(podSpec.hostNetwork).toBe(false);
      expect(podSpec.hostPID).toBe(false);
      expect(podSpec.hostIPC).toBe(false);
      expect(podSpec.automountServiceAccountToken).toBe(false);
      expect(podSpec.enableServiceLinks).toBe(false);
      expect(podSpec.restartPolicy).toBe("Never");
      expect(podSpec.volumes?.every((v) => v.hostPath === undefined)).toBe(true);
      expect(podSpec.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 1000,
        runAsGroup: 1000,
        seccompProfile: { type: "RuntimeDefault" },
      });
      expect(podSpec.runtimeClassName).toBe(s.runtime === "runsc" ? settings.runtimeClasses.runsc : settings.runtimeClassName);
      expect(podSpec.initContainers).toBeUndefined();
      expect(podSpec.containers).toHaveLength(1);
      const c = podSpec.containers[0]!;
      expect(c.securityContext).toEqual({
        privileged: false,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        runAsNonRoot: true,
        runAsUser: 1000,
        runAsGroup: 1000,
        capabilities: { drop: ["ALL"] },
        seccompProfile: { type: "RuntimeDefault" },
      });
      expect(c.image).toBe(s.image);
      expect(c.command).toEqual(s.command ?? ["sleep", "infinity"]);
      expect(c.resources?.limits).toEqual({ cpu: cpuQuantity(s.cpus), memory: `${s.memoryMb}Mi` });
      expect(c.resources?.requests).toEqual(c.resources?.limits);
      expect(c.env?.find((e) => e.name === "HOME")?.value).toBe("/home/agent");
      for (const [k, v] of Object.entries(s.env)) expect(c.env).toContainEqual({ name: k, value: v });
      expect(pod.metadata?.annotations?.["codefleet.pids-limit"]).toBe(String(s.pidsLimit));
      // the ownership labels of driver.ts, all valid label keys and values; the exact values in annotations
      const labels = pod.metadata?.labels ?? {};
      for (const [k, v] of Object.entries(labels)) {
        expect(isLabelKey(k), k).toBe(true);
        expect(isLabelValue(v), `${k}=${v}`).toBe(true);
      }
      expect(labels[LABELS.managed]).toBe("true");
      expect(labels[LABELS.taskId]).toBe(labelValue(s.taskId));
      expect(labels[LABELS.attempt]).toBe(String(s.attempt));
      expect(labels[LABELS.runnerId]).toBe(labelValue(s.runnerId));
      expect(pod.metadata?.annotations?.["codefleet.task-id"]).toBe(s.taskId);
      expect(pod.metadata?.annotations?.["codefleet.runner-id"]).toBe(s.runnerId);
      expect(pod.metadata?.name).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
      expect(pod.metadata?.namespace).toBe(settings.namespace);
    });

    it(`mounts the slot as the Docker driver does (tree rw, objects and index ro, git dir never) for ${what}`, () => {
      const pod = podSpecFor(s, settings);
      const c = pod.spec!.containers[0]!;
      const slot = `slots/${s.slot.slotId}`;
      const claim = pod.spec!.volumes!.find((v) => v.persistentVolumeClaim)!;
      expect(claim.persistentVolumeClaim).toEqual({ claimName: settings.slots.claimName });
      const fromClaim = c.volumeMounts!.filter((m) => m.name === claim.name);
      expect(fromClaim).toEqual([
        { name: claim.name, mountPath: CONTAINER_WORKSPACE, subPath: `${slot}/tree` },
        { name: claim.name, mountPath: CONTAINER_BASE_OBJECTS, subPath: `${slot}/git/objects`, readOnly: true },
        { name: claim.name, mountPath: CONTAINER_BASE_INDEX, subPath: `${slot}/tree-index/index`, readOnly: true },
      ]);
      // /tmp and HOME are memory-backed and bounded
      for (const path of ["/tmp", "/home/agent"]) {
        const m = c.volumeMounts!.find((v) => v.mountPath === path)!;
        expect(pod.spec!.volumes!.find((v) => v.name === m.name)?.emptyDir).toEqual({
          medium: "Memory",
          sizeLimit: `${settings.tmpfsMb}Mi`,
        });
      }
    });

    it(`builds a schema-valid NetworkPolicy selecting only its own pod for ${what}`, () => {
      const pod = podSpecFor(s, settings);
      const policy = networkPolicyFor(s, settings);
      validatePolicy(policy);
      expect(policy.metadata?.name).toBe(pod.metadata?.name);
      expect(policy.spec.policyTypes).toEqual(["Ingress", "Egress"]);
      const selected = policy.spec.podSelector?.matchLabels ?? {};
      expect(Object.keys(selected).length).toBeGreaterThan(0);
      for (const [k, v] of Object.entries(selected)) expect(pod.metadata?.labels?.[k]).toBe(v);
      // a rule without `to`/`from` would allow every peer: there is none
      for (const rule of policy.spec.egress ?? []) expect(rule.to?.length).toBeGreaterThan(0);
      for (const rule of policy.spec.ingress) expect(rule.from?.length).toBeGreaterThan(0);
    });
  }

  it("denies a run without network every ingress and egress, whatever the settings allow", () => {
    const policy = networkPolicyFor(spec({ network: "none", exposedPorts: [4096] }), full);
    expect(policy.spec.ingress).toEqual([]);
    expect(policy.spec.egress).toEqual([]);
  });

  const runners = { podSelector: { matchLabels: { "app.kubernetes.io/name": "runner", "app.kubernetes.io/part-of": "codefleet" } } };
  const dns = {
    to: [
      {
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
        podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
      },
    ],
    ports: [
      { port: 53, protocol: "UDP" },
      { port: 53, protocol: "TCP" },
    ],
  };
  const web = [
    { port: 80, protocol: "TCP" },
    { port: 443, protocol: "TCP" },
  ];

  it("lets an llm run reach the runners' gateway only, and be reached by runners on its server ports only", () => {
    const policy = networkPolicyFor(
      spec({ network: "bridge", egress: { mode: "llm", allow: [], llmUpstream: { host: "10.1.2.3", port: 9000 }, agentPorts: [4096] } }),
      minimal,
    );
    expect(policy.spec.ingress).toEqual([{ from: [runners], ports: [{ port: 4096, protocol: "TCP" }] }]);
    expect(policy.spec.egress).toEqual([{ to: [runners], ports: [{ port: 9000, protocol: "TCP" }] }]);
    // the operator's list and DNS are for allow and open; without a gateway port, nothing at all
    expect(networkPolicyFor(spec({ network: "bridge" }), { ...full, allowDns: false }).spec.egress).toEqual([
      { to: [runners], ports: [{ port: 8089, protocol: "TCP" }] },
    ]);
    expect(networkPolicyFor(spec({ network: "bridge" }), minimal).spec.egress).toEqual([]);
  });

  it("lets an open run reach public addresses on 80 and 443, never private, link-local or loopback ones, and the cluster DNS", () => {
    const policy = networkPolicyFor(spec({ network: "bridge", egress: { mode: "open", allow: [], agentPorts: [] } }), full);
    expect(policy.spec.egress).toEqual([
      { to: [runners], ports: [{ port: 8089, protocol: "TCP" }] },
      {
        to: [
          {
            ipBlock: {
              cidr: "0.0.0.0/0",
              except: expect.arrayContaining(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"]),
            },
          },
          { ipBlock: { cidr: "::/0", except: expect.arrayContaining(["fc00::/7", "fe80::/10", "::1/128"]) } },
        ],
        ports: web,
      },
      { to: [{ ipBlock: { cidr: "10.20.0.0/16" } }], ports: [{ port: 443, protocol: "TCP" }] },
      { to: [{ ipBlock: { cidr: "192.168.7.7/32" } }], ports: [{ port: 8443, protocol: "TCP" }] },
      { to: [{ ipBlock: { cidr: "fd00::/8" } }], ports: [{ port: 53, protocol: "UDP" }] },
      { to: [{ ipBlock: { cidr: "172.16.0.0/12" } }] },
      dns,
    ]);
  });

  it("lets an allow run reach the listed addresses on 80 and 443, and refuses host names a NetworkPolicy cannot hold", () => {
    const policy = networkPolicyFor(
      spec({ network: "bridge", egress: { mode: "allow", allow: ["93.184.215.14"], agentPorts: [] } }),
      minimal,
    );
    expect(policy.spec.egress).toEqual([{ to: [{ ipBlock: { cidr: "93.184.215.14/32" } }], ports: web }]);
    expect(() =>
      networkPolicyFor(
        spec({ network: "bridge", egress: { mode: "allow", allow: ["registry.npmjs.org", "1.2.3.4"], agentPorts: [] } }),
        full,
      ),
    ).toThrow(expect.objectContaining({ code: "egress_unsupported", retry: { kind: "never" } }));
  });

  it("is sent as the client serializes it: the policy's `from` survives (the client model calls it `_from` and drops unknown keys)", () => {
    const policy = networkPolicyFor(
      spec({ network: "bridge", exposedPorts: [4096], egress: { mode: "open", allow: [], agentPorts: [] } }),
      full,
    );
    const model = wireToModel<V1NetworkPolicy>(policy, "V1NetworkPolicy");
    expect(model.spec?.ingress?.[0]?._from).toEqual(policy.spec.ingress[0]?.from);
    const sent = JSON.parse(JSON.stringify(ObjectSerializer.serialize(model, "V1NetworkPolicy", "")));
    expect(sent).toEqual(JSON.parse(JSON.stringify(policy)));
    const pod = podSpecFor(spec({ network: "bridge", exposedPorts: [4096] }), full);
    expect(JSON.parse(JSON.stringify(ObjectSerializer.serialize(wireToModel<V1Pod>(pod, "V1Pod"), "V1Pod", "")))).toEqual(
      JSON.parse(JSON.stringify(pod)),
    );
  });

  it("owns task pods by the runner's pod when it knows it, so the cluster removes them with it", () => {
    expect(podSpecFor(spec(), full).metadata?.ownerReferences).toEqual([
      { apiVersion: "v1", kind: "Pod", name: "runner-0", uid: "6f1c2a3e-0d4b-4c55-9a4e-1f2e3d4c5b6a" },
    ]);
    expect(podSpecFor(spec(), minimal).metadata?.ownerReferences).toBeUndefined();
  });

  it("refuses a slot outside the claim, and labels that are not Kubernetes labels", () => {
    expect(() => podSpecFor(spec({ slot: { slotId: "s", path: "/elsewhere/slots/s", hostPath: "/elsewhere/slots/s" } }), minimal)).toThrow(
      /not inside the slots claim/,
    );
    expect(() => slotSubPath(`${MOUNT}/slots/../../etc`, MOUNT)).toThrow(/not inside/);
    expect(() => slotSubPath(MOUNT, MOUNT)).toThrow(/not inside/);
    expect(slotSubPath(`${MOUNT}//slots/./s1/`, `${MOUNT}/`)).toBe("slots/s1");
    expect(() => runLabels(spec({ labels: { "bad key!": "x" } }))).toThrow(/not a Kubernetes label/);
    expect(() => runLabels(spec({ labels: { ok: "spaces are not allowed" } }))).toThrow(/not a Kubernetes label/);
  });
});

describe("names and labels", () => {
  it("names pods as DNS labels, unique per task and attempt even when two ids look alike", () => {
    const names = new Set<string>();
    for (const id of ["tsk_A", "tsk-a", "TSK_a", "tsk_a", `t${"_".repeat(200)}`, "x"]) {
      for (const attempt of [1, 2, 20]) {
        const n = podName(id, attempt);
        expect(n).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
        names.add(n);
      }
    }
    expect(names.size).toBe(18);
    expect(podName("tsk_01JABC", 3)).toMatch(/^cf-tsk-01jabc-3-[0-9a-f]{8}$/);
  });

  it("keeps label values that are valid and digests the others, deterministically", () => {
    expect(labelValue("tsk_01JABC")).toBe("tsk_01JABC");
    const long = labelValue("t".repeat(64));
    expect(long).toMatch(/^x-[0-9a-f]{40}$/);
    expect(labelValue("t".repeat(64))).toBe(long);
    expect(isLabelValue(labelValue("has/slash"))).toBe(true);
  });

  it("gives CPU as millicores", () => {
    expect(cpuQuantity(2)).toBe("2000m");
    expect(cpuQuantity(0.25)).toBe("250m");
    expect(cpuQuantity(0.0001)).toBe("1m");
  });
});

describe("containerStateOf and startProblem: a run's state from its pod's status", () => {
  const pod = (status: NonNullable<V1Pod["status"]>, deleting = false): V1Pod => ({
    metadata: { name: "p", ...(deleting ? { deletionTimestamp: new Date() } : {}) },
    status,
  });
  const agent = (state: object, lastState?: object) => ({
    containerStatuses: [
      { name: "agent", image: "i", imageID: "", ready: true, restartCount: 0, state, ...(lastState ? { lastState } : {}) },
    ],
  });

  it("is running while the agent container runs, and not once the pod is being deleted or gone", () => {
    expect(containerStateOf(pod({ phase: "Running", ...agent({ running: { startedAt: new Date() } }) }))).toEqual({
      running: true,
      oomKilled: false,
    });
    expect(containerStateOf(pod({ phase: "Running", ...agent({ running: {} }) }, true)).running).toBe(false);
    expect(containerStateOf(pod({ phase: "Pending", ...agent({ waiting: { reason: "ContainerCreating" } }) })).running).toBe(false);
    expect(containerStateOf(undefined)).toEqual({ running: false, oomKilled: false });
  });

  it("reports OOMKilled and the exit code from the terminated container", () => {
    expect(containerStateOf(pod({ phase: "Failed", ...agent({ terminated: { exitCode: 137, reason: "OOMKilled" } }) }))).toEqual({
      running: false,
      oomKilled: true,
      exitCode: 137,
    });
    expect(containerStateOf(pod({ phase: "Failed", ...agent({ terminated: { exitCode: 1, reason: "Error" } }) }))).toEqual({
      running: false,
      oomKilled: false,
      exitCode: 1,
    });
  });

  it("gives up at once on an image that does not exist, and waits on a registry hiccup or a full cluster", () => {
    const waiting = (reason: string, message: string) => pod({ phase: "Pending", ...agent({ waiting: { reason, message } }) });
    expect(startProblem(waiting("ErrImagePull", 'rpc error: failed to resolve reference "x": not found'))).toMatchObject({
      final: true,
      retry: "never",
    });
    expect(startProblem(waiting("InvalidImageName", "bad"))).toMatchObject({ final: true, retry: "never" });
    expect(startProblem(waiting("ImagePullBackOff", "dial tcp: i/o timeout"))).toMatchObject({ final: false, retry: "backoff" });
    expect(startProblem(waiting("CreateContainerConfigError", "x"))).toMatchObject({ final: true, retry: "backoff" });
    expect(startProblem(waiting("ContainerCreating", ""))).toMatchObject({ final: false });
    expect(
      startProblem(
        pod({ phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/3 nodes" }] }),
      ),
    ).toMatchObject({ reason: "Unschedulable", final: false });
    expect(startProblem(pod({ phase: "Failed", ...agent({ terminated: { exitCode: 0, reason: "Completed" } }) }))).toMatchObject({
      final: true,
    });
    expect(startProblem(pod({ phase: "Pending" }))).toBeUndefined();
  });
});

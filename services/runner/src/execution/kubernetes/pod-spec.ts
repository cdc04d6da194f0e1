import { isIP } from "node:net";
import { posix } from "node:path";
import { CONTAINER_BASE_INDEX, CONTAINER_BASE_OBJECTS, CONTAINER_WORKSPACE, CodefleetError } from "@codefleet/contracts";
import type {
  V1NetworkPolicy,
  V1NetworkPolicyEgressRule,
  V1NetworkPolicyIngressRule,
  V1NetworkPolicyPeer,
  V1NetworkPolicySpec,
  V1Pod,
} from "@kubernetes/client-node";
import { type ContainerState, LABELS, type RunContainerSpec } from "../driver.js";
import { NON_PUBLIC_V4, NON_PUBLIC_V6 } from "../egress.js";
import { AGENT_CONTAINER, ANNOTATIONS, K8S_LABELS, labelValue, podName } from "./names.js";
import { isLabelKey, isLabelValue, type KubernetesSettings } from "./settings.js";

/** The part of the settings a pod spec depends on (pure functions take no more). */
export type PodSettings = Pick<
  KubernetesSettings,
  | "namespace"
  | "slots"
  | "runtimeClassName"
  | "runtimeClasses"
  | "imagePullPolicy"
  | "imagePullSecrets"
  | "serviceAccountName"
  | "nodeSelector"
  | "egress"
  | "allowDns"
  | "gateway"
  | "tmpfsMb"
  | "owner"
>;

/** A NetworkPolicy as the API spells it (the client's model calls an ingress rule's `from` `_from`: wire.ts). */
export type WireIngressRule = Omit<V1NetworkPolicyIngressRule, "_from"> & { from?: V1NetworkPolicyPeer[] };
export type WireNetworkPolicy = Omit<V1NetworkPolicy, "spec"> & {
  spec: Omit<V1NetworkPolicySpec, "ingress"> & { ingress: WireIngressRule[] };
};

export class PodSpecError extends CodefleetError {
  override readonly name = "PodSpecError";
}

/** The agents' uid and gid, as in the Docker driver and the agent image. */
export const AGENT_UID = 1000;

/**
 * A slot's directory as a path inside the slots claim (what `subPath` takes): repo-pool and the
 * runner mount the claim at the same path, so the slot's path there, less that mount path.
 */
export function slotSubPath(slotPath: string, mountPath: string): string {
  const rel = posix.relative(posix.normalize(mountPath), posix.normalize(slotPath));
  if (!rel || posix.isAbsolute(rel) || rel.split("/").some((p) => p === ".." || p === "." || p === "")) {
    throw new PodSpecError("slot_outside_claim", `slot path ${slotPath} is not inside the slots claim mounted at ${mountPath}`, {
      retry: { kind: "never" },
    });
  }
  return rel;
}

/** The labels of everything made for a run: LABELS of driver.ts (values made label-safe) and the spec's own. */
export function runLabels(spec: RunContainerSpec): Record<string, string> {
  const name = podName(spec.taskId, spec.attempt, spec.candidate);
  const extra = spec.labels ?? {};
  for (const [k, v] of Object.entries(extra)) {
    if (!isLabelKey(k) || !isLabelValue(v))
      throw new PodSpecError("invalid_label", `label ${k}=${v} is not a Kubernetes label`, { retry: { kind: "never" } });
  }
  return {
    ...extra,
    [LABELS.managed]: "true",
    [LABELS.taskId]: labelValue(spec.taskId),
    [LABELS.attempt]: String(spec.attempt),
    [LABELS.runnerId]: labelValue(spec.runnerId),
    ...(spec.deployment ? { [LABELS.deployment]: labelValue(spec.deployment) } : {}),
    [K8S_LABELS.pod]: name,
    [K8S_LABELS.component]: "agent",
    [K8S_LABELS.managedBy]: "codefleet-runner",
  };
}

/** The runner's pod owns what it makes: when that pod is deleted, the cluster deletes its task pods and policies. */
function ownerReferences(settings: PodSettings) {
  return settings.owner
    ? { ownerReferences: [{ apiVersion: "v1", kind: "Pod", name: settings.owner.podName, uid: settings.owner.podUid }] }
    : {};
}

function runAnnotations(spec: RunContainerSpec): Record<string, string> {
  return {
    [ANNOTATIONS.taskId]: spec.taskId,
    [ANNOTATIONS.attempt]: String(spec.attempt),
    [ANNOTATIONS.runnerId]: spec.runnerId,
    [ANNOTATIONS.slotId]: spec.slot.slotId,
    // not enforceable per pod: the kubelet's podPidsLimit is (docs/scaling.md)
    [ANNOTATIONS.pidsLimit]: String(spec.pidsLimit),
  };
}

/** CPU as millicores (Docker's NanoCpus, rounded; at least 1m). */
export function cpuQuantity(cpus: number): string {
  return `${Math.max(1, Math.round(cpus * 1000))}m`;
}

/** The pod's and its NetworkPolicy's metadata: the run's name, labels and annotations, owned by the runner's pod. */
function runMetadata(name: string, spec: RunContainerSpec, settings: PodSettings) {
  return { name, namespace: settings.namespace, labels: runLabels(spec), annotations: runAnnotations(spec), ...ownerReferences(settings) };
}

/**
 * The pod of one run (an attempt, or a warm-pool entry an attempt adopts later), hardened as the
 * Docker driver's containers are: uid/gid 1000 and runAsNonRoot, all capabilities dropped, no
 * privilege escalation (no-new-privileges), RuntimeDefault seccomp, read-only root filesystem with
 * memory-backed /tmp and HOME, memory and CPU limits (requests equal: Guaranteed QoS), no service
 * account token, no service links, optionally another runtime (gVisor). The slot comes from the
 * shared ReadWriteMany claim by subPath: its tree read-write at /workspace, its git objects and
 * index read-only; the slot's git directory itself is never mounted.
 *
 * The process namespace is shared with the pod's pause container, which then is PID 1 and reaps
 * orphaned processes as Docker's `--init` does. The pids limit is not expressible per pod: it is
 * the kubelet's `podPidsLimit` (docs/scaling.md); the pod carries the wanted value as an annotation.
 */
export function podSpecFor(spec: RunContainerSpec, settings: PodSettings): V1Pod {
  const name = podName(spec.taskId, spec.attempt, spec.candidate);
  const slot = slotSubPath(spec.slot.path, settings.slots.mountPath);
  const tmpfs = `${settings.tmpfsMb}Mi`;
  const limits = { cpu: cpuQuantity(spec.cpus), memory: `${spec.memoryMb}Mi` };
  const runtimeClassName = spec.runtime === "runsc" ? settings.runtimeClasses.runsc : settings.runtimeClassName;
  const env = Object.entries({ HOME: "/home/agent", ...spec.env }).map(([k, value]) => ({ name: k, value }));
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: runMetadata(name, spec, settings),
    spec: {
      restartPolicy: "Never",
      terminationGracePeriodSeconds: 1,
      automountServiceAccountToken: false,
      serviceAccountName: settings.serviceAccountName,
      enableServiceLinks: false,
      hostNetwork: false,
      hostPID: false,
      hostIPC: false,
      shareProcessNamespace: true,
      ...(runtimeClassName ? { runtimeClassName } : {}),
      ...(Object.keys(settings.nodeSelector).length ? { nodeSelector: { ...settings.nodeSelector } } : {}),
      ...(settings.imagePullSecrets.length ? { imagePullSecrets: settings.imagePullSecrets.map((n) => ({ name: n })) } : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: AGENT_UID,
        runAsGroup: AGENT_UID,
        seccompProfile: { type: "RuntimeDefault" },
      },
      containers: [
        {
          name: AGENT_CONTAINER,
          image: spec.image,
          imagePullPolicy: settings.imagePullPolicy,
          command: spec.command ?? ["sleep", "infinity"],
          workingDir: CONTAINER_WORKSPACE,
          env,
          ...(agentPorts(spec).length ? { ports: agentPorts(spec).map((p) => ({ containerPort: p, protocol: "TCP" })) } : {}),
          resources: { limits, requests: { ...limits } },
          securityContext: {
            privileged: false,
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            runAsNonRoot: true,
            runAsUser: AGENT_UID,
            runAsGroup: AGENT_UID,
            capabilities: { drop: ["ALL"] },
            seccompProfile: { type: "RuntimeDefault" },
          },
          volumeMounts: [
            { name: "slots", mountPath: CONTAINER_WORKSPACE, subPath: `${slot}/tree` },
            { name: "slots", mountPath: CONTAINER_BASE_OBJECTS, subPath: `${slot}/git/objects`, readOnly: true },
            { name: "slots", mountPath: CONTAINER_BASE_INDEX, subPath: `${slot}/tree-index/index`, readOnly: true },
            { name: "tmp", mountPath: "/tmp" },
            { name: "home", mountPath: "/home/agent" },
          ],
        },
      ],
      volumes: [
        { name: "slots", persistentVolumeClaim: { claimName: settings.slots.claimName } },
        { name: "tmp", emptyDir: { medium: "Memory", sizeLimit: tmpfs } },
        { name: "home", emptyDir: { medium: "Memory", sizeLimit: tmpfs } },
      ],
    },
  };
}

/** Ports of a server in the pod the runner talks to (an agent's API). */
function agentPorts(spec: RunContainerSpec): number[] {
  return [...new Set([...(spec.exposedPorts ?? []), ...(spec.egress?.agentPorts ?? [])])].sort((a, b) => a - b);
}

/**
 * Addresses no task pod reaches in any mode (docs/security.md, "Egress"): private, loopback,
 * link-local (a cloud's metadata endpoint), shared, multicast and reserved ranges, which hold the
 * cluster's nodes, pods and services.
 */
export { NON_PUBLIC_V4, NON_PUBLIC_V6 };

const WEB_PORTS = [
  { port: 80, protocol: "TCP" },
  { port: 443, protocol: "TCP" },
];

/**
 * The run's NetworkPolicy, made before its pod; what the task's egress mode (./egress.ts) allows,
 * expressed as a NetworkPolicy instead of Docker's per-attempt egress proxy:
 *
 * - network "none": no ingress, no egress at all;
 * - "llm" (and a network without an egress spec): only the runner pods' LLM gateway port;
 * - "allow": also HTTP(S) to the IPv4 addresses listed. A NetworkPolicy knows addresses, not host
 *   names: a list with names is refused (`egress_unsupported`), never widened;
 * - "open": also HTTP(S) (ports 80 and 443) to any public address, and the cluster DNS;
 *
 * plus, with a network, what the operator allows every task pod (K8S_AGENT_EGRESS, K8S_AGENT_DNS)
 * in "allow" and "open". Never, in any mode but through the operator's own list: private,
 * loopback, link-local or multicast addresses. Ingress only from the runner pods to the agent's
 * server ports. It needs a CNI that enforces NetworkPolicy (docs/scaling.md).
 */
export function networkPolicyFor(spec: RunContainerSpec, settings: PodSettings): WireNetworkPolicy {
  const name = podName(spec.taskId, spec.attempt, spec.candidate);
  const runners = { podSelector: { matchLabels: { ...settings.gateway.podLabels } } };
  const ingress: WireIngressRule[] = [];
  const egress: V1NetworkPolicyEgressRule[] = [];
  if (spec.network === "bridge") {
    const mode = spec.egress?.mode ?? "llm";
    const ports = agentPorts(spec);
    if (ports.length) ingress.push({ from: [runners], ports: ports.map((port) => ({ port, protocol: "TCP" })) });
    const gatewayPort = spec.egress?.llmUpstream?.port ?? settings.gateway.port;
    if (gatewayPort > 0) egress.push({ to: [runners], ports: [{ port: gatewayPort, protocol: "TCP" }] });
    if (mode === "allow") {
      const names = (spec.egress?.allow ?? []).filter((h) => isIP(h) !== 4);
      if (names.length) {
        throw new PodSpecError(
          "egress_unsupported",
          `the Kubernetes driver enforces egress with NetworkPolicies, which know addresses, not host names: it cannot allow only ${names.slice(0, 3).join(", ")}${names.length > 3 ? ", ..." : ""} (list IPv4 addresses, or use network "open" or "llm")`,
          { retry: { kind: "never" } },
        );
      }
      const addresses = (spec.egress?.allow ?? []).map((ip) => ({ ipBlock: { cidr: `${ip}/32` } }));
      if (addresses.length) egress.push({ to: addresses, ports: WEB_PORTS });
    }
    if (mode === "open") {
      egress.push({
        to: [{ ipBlock: { cidr: "0.0.0.0/0", except: NON_PUBLIC_V4 } }, { ipBlock: { cidr: "::/0", except: NON_PUBLIC_V6 } }],
        ports: WEB_PORTS,
      });
    }
    if (mode === "allow" || mode === "open") {
      for (const rule of settings.egress) {
        egress.push({
          to: [{ ipBlock: { cidr: rule.cidr } }],
          ...(rule.port !== undefined ? { ports: [{ port: rule.port, protocol: rule.protocol }] } : {}),
        });
      }
    }
    if (settings.allowDns || mode === "open") {
      egress.push({
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
      });
    }
  }
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: runMetadata(name, spec, settings),
    spec: {
      podSelector: { matchLabels: { [LABELS.managed]: "true", [K8S_LABELS.pod]: name } },
      policyTypes: ["Ingress", "Egress"],
      ingress,
      egress,
    },
  };
}

/**
 * The state of a run from its pod: running while the agent container runs (and the pod is not
 * being deleted); OOM-killed when the container ended for it (the kernel's OOM killer kills the
 * whole container on cgroup v2 since Kubernetes 1.28). A pod that is gone is not running.
 */
export function containerStateOf(pod: V1Pod | undefined): ContainerState {
  const status = pod?.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER);
  const terminated = status?.state?.terminated ?? status?.lastState?.terminated;
  const running = pod?.status?.phase === "Running" && status?.state?.running !== undefined && !pod.metadata?.deletionTimestamp;
  return {
    running,
    oomKilled: terminated?.reason === "OOMKilled",
    ...(terminated ? { exitCode: terminated.exitCode } : {}),
  };
}

/**
 * Why a pod is not running yet. `final`: it will not start by itself (the driver gives up now);
 * otherwise the kubelet or the scheduler may still get it going (the driver waits, up to its
 * start timeout, and reports the last reason).
 */
export type StartProblem = { reason: string; message: string; final: boolean; retry: "never" | "backoff" };

export function startProblem(pod: V1Pod): StartProblem | undefined {
  const phase = pod.status?.phase;
  const status = pod.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER);
  const terminated = status?.state?.terminated;
  if (terminated || phase === "Succeeded" || phase === "Failed") {
    return {
      reason: terminated?.reason ?? phase ?? "Terminated",
      message: terminated?.message ?? pod.status?.message ?? "the agent container ended before it was used",
      final: true,
      retry: "backoff",
    };
  }
  const waiting = status?.state?.waiting;
  if (waiting?.reason) {
    const reason = waiting.reason;
    const message = waiting.message ?? reason;
    if (reason === "InvalidImageName" || reason === "ErrImageNeverPull") return { reason, message, final: true, retry: "never" };
    if (reason === "ErrImagePull" || reason === "ImagePullBackOff") {
      // a tag or repository that does not exist stays so; a registry outage passes
      const missing = /not found|manifest unknown|repository does not exist/i.test(message);
      return { reason, message, final: missing, retry: missing ? "never" : "backoff" };
    }
    if (reason === "CreateContainerConfigError" || reason === "CreateContainerError" || reason === "RunContainerError") {
      return { reason, message, final: true, retry: "backoff" };
    }
    return { reason, message, final: false, retry: "backoff" };
  }
  const unscheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
  if (unscheduled)
    return { reason: unscheduled.reason ?? "Unschedulable", message: unscheduled.message ?? "", final: false, retry: "backoff" };
  return undefined;
}

import { isIP } from "node:net";
import { posix } from "node:path";
import { CodefleetError } from "@codefleet/contracts";
import { csv, loadConfig } from "@codefleet/platform/runtime";
import { type Static, Type } from "@sinclair/typebox";

/**
 * The Kubernetes driver's settings, read from the runner's environment (EXECUTION_DRIVER=kubernetes).
 * The schema's property names are the variable names; `config.ts` may spread `KubernetesEnv` into
 * the runner's schema, or call `kubernetesSettingsFrom(process.env)` once at start-up.
 */
export const KubernetesEnv = Type.Object({
  K8S_NAMESPACE: Type.String({
    default: "codefleet",
    pattern: "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    description: "namespace of the task pods and their NetworkPolicies (the runner's own: deploy/k8s sets it from the downward API)",
  }),
  KUBECONFIG: Type.Optional(
    Type.String({ minLength: 1, description: "a kubeconfig file; unset: the in-cluster service account (the runner's pod)" }),
  ),
  K8S_CONTEXT: Type.Optional(Type.String({ minLength: 1, description: "the kubeconfig context to use (default: its current context)" })),
  K8S_SLOTS_PVC: Type.String({
    minLength: 1,
    pattern: "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
    description: "the ReadWriteMany PersistentVolumeClaim holding repo-pool's data dir (slots are mounted from it by subPath)",
  }),
  K8S_SLOTS_MOUNT_PATH: Type.String({
    default: "/var/lib/codefleet/repo-pool",
    pattern: "^/",
    description: "where that claim is mounted in repo-pool and in the runner (the same path in both: REPO_POOL_DATA_DIR)",
  }),
  K8S_RUNTIME_CLASS: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 253,
      description: "runtimeClassName of every task pod, e.g. gvisor (a RuntimeClass the cluster has); unset: the cluster's default",
    }),
  ),
  K8S_RUNTIME_CLASS_RUNSC: Type.String({
    default: "gvisor",
    minLength: 1,
    maxLength: 253,
    description: "the RuntimeClass of task pods that ask for runtime runsc (gVisor)",
  }),
  K8S_IMAGE_PULL_POLICY: Type.Union([Type.Literal("IfNotPresent"), Type.Literal("Always"), Type.Literal("Never")], {
    default: "IfNotPresent",
  }),
  K8S_IMAGE_PULL_SECRETS: Type.Optional(Type.String({ description: "comma-separated Secret names for pulling agent images" })),
  K8S_AGENT_SERVICE_ACCOUNT: Type.String({
    default: "default",
    pattern: "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
    description: "service account of task pods (its token is never mounted; deploy/k8s makes codefleet-agent, bound to nothing)",
  }),
  K8S_AGENT_NODE_SELECTOR: Type.Optional(
    Type.String({ description: "comma-separated key=value node labels task pods must run on (e.g. the nodes with gVisor)" }),
  ),
  K8S_AGENT_EGRESS: Type.Optional(
    Type.String({
      description:
        "comma-separated CIDR[:port[/TCP|UDP|SCTP]] task pods of egress modes allow and open may also reach (e.g. a package mirror 10.0.12.0/24:443); unset: none",
    }),
  ),
  K8S_AGENT_DNS: Type.Boolean({
    default: false,
    description: "let every task pod with a network ask the cluster DNS (kube-system/kube-dns, port 53); mode open always may",
  }),
  K8S_GATEWAY_POD_LABELS: Type.String({
    default: "app.kubernetes.io/name=runner,app.kubernetes.io/part-of=codefleet",
    description:
      "labels of the runner pods (comma-separated key=value): task pods reach the LLM gateway there, and runners reach agent servers",
  }),
  K8S_GATEWAY_PORT: Type.Integer({
    default: 0,
    minimum: 0,
    maximum: 65535,
    description: "the runner's LLM gateway port task pods may reach (LLM_GATEWAY_PORT; 0: none)",
  }),
  K8S_POD_START_TIMEOUT_MS: Type.Integer({
    default: 180_000,
    minimum: 1000,
    description: "how long a task pod may take to be scheduled, pull its image and start",
  }),
  K8S_TMPFS_MB: Type.Integer({ default: 512, minimum: 16, maximum: 65536, description: "size of each memory-backed /tmp and HOME" }),
  K8S_RUNNER_POD_NAME: Type.Optional(
    Type.String({
      minLength: 1,
      pattern: "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
      description: "the runner's own pod (downward API): task pods are owned by it, so the cluster removes them when it goes",
    }),
  ),
  K8S_RUNNER_POD_UID: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "that pod's uid (downward API)" })),
});

export type EgressRule = { cidr: string; port?: number; protocol: "TCP" | "UDP" | "SCTP" };

export type KubernetesSettings = {
  namespace: string;
  /** Where the API server and the credentials come from. */
  kubeconfig: { kind: "in-cluster" } | { kind: "file"; path: string; context?: string };
  /** The ReadWriteMany claim of repo-pool's data dir, and where it is mounted in repo-pool and the runner. */
  slots: { claimName: string; mountPath: string };
  /** Every task pod's RuntimeClass (unset: the cluster's default)... */
  runtimeClassName?: string;
  /** ...and that of a task that asks for gVisor (runtime `runsc`). */
  runtimeClasses: { runsc: string };
  imagePullPolicy: "IfNotPresent" | "Always" | "Never";
  imagePullSecrets: string[];
  serviceAccountName: string;
  nodeSelector: Record<string, string>;
  /** Where task pods of egress modes allow and open may also connect (the operator's own list). */
  egress: EgressRule[];
  allowDns: boolean;
  /** The runner pods: the LLM gateway's port on them (0: none), and who may reach agents' exposed ports. */
  gateway: { podLabels: Record<string, string>; port: number };
  podStartTimeoutMs: number;
  tmpfsMb: number;
  /** The runner's pod, owner of every task pod it makes (garbage-collected with it), when it runs in one. */
  owner?: { podName: string; podUid: string };
};

export class KubernetesSettingsError extends CodefleetError {
  override readonly name = "KubernetesSettingsError";
}

function invalid(message: string): never {
  throw new KubernetesSettingsError("invalid_config", `invalid configuration: ${message}`, { retry: { kind: "never" } });
}

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** A label or annotation key: an optional DNS-subdomain prefix and a name of at most 63 characters. */
export function isLabelKey(key: string): boolean {
  const slash = key.indexOf("/");
  if (slash < 0) return QUALIFIED_NAME.test(key);
  const prefix = key.slice(0, slash);
  return prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix) && QUALIFIED_NAME.test(key.slice(slash + 1));
}

export function isLabelValue(value: string): boolean {
  return value.length <= 63 && LABEL_VALUE.test(value);
}

/** `k=v,k=v` → a label map (each key and value checked). */
export function parseLabels(name: string, value: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of csv(value)) {
    const eq = pair.indexOf("=");
    const k = eq < 0 ? pair : pair.slice(0, eq).trim();
    const v = eq < 0 ? "" : pair.slice(eq + 1).trim();
    if (eq < 0 || !isLabelKey(k) || !isLabelValue(v)) invalid(`${name}: '${pair}' is not a key=value label`);
    out[k] = v;
  }
  return out;
}

/** `10.0.0.0/8:443/TCP,192.168.1.10/32:8080,fd00::/8:443` → egress rules. A CIDR without a port allows every port. */
export function parseEgress(value: string | undefined): EgressRule[] {
  return csv(value).map((entry) => {
    const m = /^(.+)\/(\d{1,3})(?::(\d{1,5})(?:\/(TCP|UDP|SCTP))?)?$/.exec(entry);
    const addr = m?.[1];
    const bits = Number(m?.[2]);
    const family = addr ? isIP(addr) : 0;
    if (!m || family === 0 || bits > (family === 4 ? 32 : 128))
      invalid(`K8S_AGENT_EGRESS: '${entry}' is not CIDR[:port[/protocol]] (e.g. 10.0.0.0/8:443)`);
    const port = m[3] === undefined ? undefined : Number(m[3]);
    if (port !== undefined && (port < 1 || port > 65535)) invalid(`K8S_AGENT_EGRESS: port ${port} of '${entry}' is out of range`);
    return { cidr: `${addr}/${bits}`, ...(port !== undefined ? { port } : {}), protocol: (m[4] ?? "TCP") as EgressRule["protocol"] };
  });
}

export function kubernetesSettingsFrom(env: Record<string, string | undefined>): KubernetesSettings {
  const c: Static<typeof KubernetesEnv> = loadConfig(KubernetesEnv, env);
  const mountPath = posix.normalize(c.K8S_SLOTS_MOUNT_PATH).replace(/\/+$/, "") || "/";
  const pullSecrets = csv(c.K8S_IMAGE_PULL_SECRETS);
  for (const s of pullSecrets) if (!DNS_SUBDOMAIN.test(s)) invalid(`K8S_IMAGE_PULL_SECRETS: '${s}' is not a Secret name`);
  const gatewayLabels = parseLabels("K8S_GATEWAY_POD_LABELS", c.K8S_GATEWAY_POD_LABELS);
  if (Object.keys(gatewayLabels).length === 0) invalid("K8S_GATEWAY_POD_LABELS must name at least one label of the runner pods");
  if ((c.K8S_RUNNER_POD_NAME === undefined) !== (c.K8S_RUNNER_POD_UID === undefined))
    invalid("K8S_RUNNER_POD_NAME and K8S_RUNNER_POD_UID go together");
  return {
    namespace: c.K8S_NAMESPACE,
    kubeconfig: c.KUBECONFIG
      ? { kind: "file", path: c.KUBECONFIG, ...(c.K8S_CONTEXT ? { context: c.K8S_CONTEXT } : {}) }
      : { kind: "in-cluster" },
    slots: { claimName: c.K8S_SLOTS_PVC, mountPath },
    ...(c.K8S_RUNTIME_CLASS ? { runtimeClassName: c.K8S_RUNTIME_CLASS } : {}),
    runtimeClasses: { runsc: c.K8S_RUNTIME_CLASS_RUNSC },
    imagePullPolicy: c.K8S_IMAGE_PULL_POLICY,
    imagePullSecrets: pullSecrets,
    serviceAccountName: c.K8S_AGENT_SERVICE_ACCOUNT,
    nodeSelector: parseLabels("K8S_AGENT_NODE_SELECTOR", c.K8S_AGENT_NODE_SELECTOR),
    egress: parseEgress(c.K8S_AGENT_EGRESS),
    allowDns: c.K8S_AGENT_DNS,
    gateway: { podLabels: gatewayLabels, port: c.K8S_GATEWAY_PORT },
    podStartTimeoutMs: c.K8S_POD_START_TIMEOUT_MS,
    tmpfsMb: c.K8S_TMPFS_MB,
    ...(c.K8S_RUNNER_POD_NAME && c.K8S_RUNNER_POD_UID ? { owner: { podName: c.K8S_RUNNER_POD_NAME, podUid: c.K8S_RUNNER_POD_UID } } : {}),
  };
}

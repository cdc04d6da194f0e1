import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { V1Container, V1PodTemplateSpec } from "@kubernetes/client-node";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { Role, RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount } from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { REQUIRED_RBAC } from "./kubernetes-driver.js";
import { podSpecFor } from "./pod-spec.js";
import { kubernetesSettingsFrom } from "./settings.js";
import { unknownFields } from "./wire.js";

/**
 * deploy/k8s rendered offline by `kubectl kustomize` (kubectl 1.32 / Kustomize 5.5 on these
 * machines), every document validated against the Kubernetes OpenAPI schemas (kubernetes-models)
 * and checked for fields those types do not have; then what the schemas cannot say: the
 * hardening, the runner's RBAC, and that the settings the manifests give the runner and the
 * Kubernetes driver fit together.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../..");
const K8S = join(ROOT, "deploy/k8s");
const TARGETS = ["base", ...readdirSync(join(K8S, "overlays")).map((o) => `overlays/${o}`)];

function kubectlMissing(): string | undefined {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "pipe" });
    return undefined;
  } catch (err) {
    return `kubectl is not installed (${(err as Error).message.split("\n")[0]}): the rendered manifests were not checked`;
  }
}
const missing = kubectlMissing();
if (missing) console.warn(`[deploy/k8s] SKIPPED: ${missing}`);

/** A rendered document: read by path in assertions. */
// biome-ignore lint/suspicious/noExplicitAny: rendered YAML
type Loose = any;
type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> } } & Record<
  string,
  Loose
>;

function render(target: string): Doc[] {
  const out = execFileSync("kubectl", ["kustomize", join(K8S, target)], { encoding: "utf8", maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(out).map((d) => {
    if (d.errors.length) throw new Error(`${target}: ${d.errors.map((e) => e.message).join("; ")}`);
    const doc = d.toJSON() as Doc;
    // Kustomize folds long base64 values over lines, which the API server's decoder (Go's base64)
    // skips; the JSON schema's "byte" format does not
    if (doc.kind === "Secret" && doc.data) {
      for (const k of Object.keys(doc.data)) doc.data[k] = String(doc.data[k]).replace(/\s+/g, "");
    }
    return doc;
  });
}

/** The schema class and OpenAPI model of every kind deploy/k8s may hold; any other kind fails the test. */
// biome-ignore lint/suspicious/noExplicitAny: each model class takes its own interface
const SCHEMAS: Record<string, { model: { new (d: any): { validate(): void } }; type: string }> = {
  "v1/Namespace": { model: Namespace, type: "V1Namespace" },
  "v1/ConfigMap": { model: ConfigMap, type: "V1ConfigMap" },
  "v1/Secret": { model: Secret, type: "V1Secret" },
  "v1/Service": { model: Service, type: "V1Service" },
  "v1/ServiceAccount": { model: ServiceAccount, type: "V1ServiceAccount" },
  "v1/PersistentVolumeClaim": { model: PersistentVolumeClaim, type: "V1PersistentVolumeClaim" },
  "apps/v1/Deployment": { model: Deployment, type: "V1Deployment" },
  "apps/v1/StatefulSet": { model: StatefulSet, type: "V1StatefulSet" },
  "rbac.authorization.k8s.io/v1/Role": { model: Role, type: "V1Role" },
  "rbac.authorization.k8s.io/v1/RoleBinding": { model: RoleBinding, type: "V1RoleBinding" },
  "networking.k8s.io/v1/NetworkPolicy": { model: NetworkPolicy, type: "V1NetworkPolicy" },
};

const byKind = (docs: Doc[], kind: string) => docs.filter((d) => d.kind === kind);
const named = (docs: Doc[], kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name);
/** A generated ConfigMap or Secret by the name it was declared with (Kustomize appends a content hash). */
const generated = (docs: Doc[], kind: string, name: string) =>
  docs.find((d) => d.kind === kind && (d.metadata.name === name || new RegExp(`^${name}-[a-z0-9]{10}$`).test(d.metadata.name)));
const workloads = (docs: Doc[]) => docs.filter((d) => d.kind === "Deployment" || d.kind === "StatefulSet");
const template = (w: Doc) => w.spec.template as V1PodTemplateSpec;

/** The env a container gets from its ConfigMaps and literal values ($(VAR) resolved against the given downward API values). */
function envOf(docs: Doc[], c: V1Container, downward: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef)
      Object.assign(env, (docs.find((d) => d.kind === "ConfigMap" && d.metadata.name === from.configMapRef?.name) as Doc).data);
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value.replace(/\$\(([A-Z_]+)\)/g, (_m, v: string) => env[v] ?? downward[v] ?? `$(${v})`);
    else if (e.valueFrom?.fieldRef) env[e.name] = downward[e.name] ?? "";
  }
  return env;
}

/** Names a service's code reads: every ALL_CAPS token in its sources, contracts' and the platform's (a typo in a manifest is not one). */
function namesRead(service: string): Set<string> {
  const names = new Set<string>();
  const scan = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory() && e.name !== "node_modules" && e.name !== "dist") scan(p);
      else if (e.name.endsWith(".ts") && !e.name.includes(".test."))
        for (const m of readFileSync(p, "utf8").matchAll(/\b[A-Z][A-Z0-9_]{2,}\b/g)) names.add(m[0]);
    }
  };
  scan(join(ROOT, "services", service, "src"));
  scan(join(ROOT, "contracts/src"));
  scan(join(ROOT, "services/platform/src"));
  if (service === "runner") scan(join(ROOT, "services/repo-pool/src/git")); // the runner's git credentials
  return names;
}

describe.skipIf(missing !== undefined)("deploy/k8s: rendered with kubectl kustomize and validated offline", () => {
  const rendered = new Map(TARGETS.map((t) => [t, render(t)]));

  it("has a base and the dev and production overlays", () => {
    expect(TARGETS).toEqual(expect.arrayContaining(["base", "overlays/dev", "overlays/production"]));
  });

  for (const target of TARGETS) {
    describe(target, () => {
      const docs = rendered.get(target) as Doc[];

      it("validates every document against the Kubernetes OpenAPI schemas, with no field the schemas do not have", () => {
        expect(docs.length).toBeGreaterThan(15);
        for (const doc of docs) {
          const schema = SCHEMAS[`${doc.apiVersion}/${doc.kind}`];
          expect(schema, `${doc.apiVersion} ${doc.kind} ${doc.metadata.name}: no schema in this test`).toBeDefined();
          expect(() => new (schema as NonNullable<typeof schema>).model(doc).validate(), `${doc.kind}/${doc.metadata.name}`).not.toThrow();
          expect(unknownFields(doc, (schema as NonNullable<typeof schema>).type), `${doc.kind}/${doc.metadata.name}`).toEqual([]);
        }
      });

      it("puts everything in the codefleet namespace, and nothing cluster-wide but that namespace", () => {
        for (const doc of docs) {
          if (doc.kind === "Namespace") expect(doc.metadata.name).toBe("codefleet");
          else expect(doc.metadata.namespace, `${doc.kind}/${doc.metadata.name}`).toBe("codefleet");
        }
        expect(docs.filter((d) => /^Cluster/.test(d.kind))).toEqual([]);
      });

      it("hardens every pod: no privilege, no host namespaces or paths, read-only roots, limits and probes", () => {
        expect(workloads(docs).length).toBeGreaterThanOrEqual(4);
        for (const w of workloads(docs)) {
          const t = template(w);
          const spec = t.spec!;
          const where = `${w.kind}/${w.metadata.name}`;
          expect(spec.hostNetwork ?? false, where).toBe(false);
          expect(spec.hostPID ?? false, where).toBe(false);
          expect(spec.hostIPC ?? false, where).toBe(false);
          expect(spec.enableServiceLinks, where).toBe(false);
          expect(spec.securityContext?.seccompProfile?.type, where).toBe("RuntimeDefault");
          expect(
            (spec.volumes ?? []).filter((v) => v.hostPath),
            where,
          ).toEqual([]);
          // only the runner talks to the API
          expect(spec.automountServiceAccountToken, where).toBe(w.metadata.name === "runner");
          expect(spec.initContainers, where).toBeUndefined();
          for (const c of spec.containers) {
            const sc = c.securityContext ?? {};
            expect(sc.privileged ?? false, `${where} ${c.name}`).toBe(false);
            expect(sc.allowPrivilegeEscalation, `${where} ${c.name}`).toBe(false);
            expect(sc.readOnlyRootFilesystem, `${where} ${c.name}`).toBe(true);
            expect(sc.capabilities?.drop, `${where} ${c.name}`).toEqual(["ALL"]);
            const nonRoot = sc.runAsNonRoot ?? spec.securityContext?.runAsNonRoot;
            if (w.metadata.name === "repo-pool") {
              // root only to run git as two other uids: a short list of capabilities, nothing that escapes a container
              expect(sc.capabilities?.add).toEqual(["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"]);
            } else {
              expect(nonRoot, `${where} ${c.name}`).toBe(true);
              expect(sc.capabilities?.add, `${where} ${c.name}`).toBeUndefined();
            }
            for (const r of ["cpu", "memory"]) {
              expect(c.resources?.requests?.[r], `${where} ${c.name} requests.${r}`).toBeDefined();
              expect(c.resources?.limits?.[r], `${where} ${c.name} limits.${r}`).toBeDefined();
            }
            expect(c.livenessProbe, `${where} ${c.name}`).toBeDefined();
            expect(c.readinessProbe, `${where} ${c.name}`).toBeDefined();
          }
        }
      });

      it("probes the services' /healthz (liveness) and /readyz (readiness) on a port they expose", () => {
        for (const name of ["task-registry", "artifact-store", "repo-pool", "runner"]) {
          const w = workloads(docs).find((d) => d.metadata.name === name) as Doc;
          const c = template(w).spec!.containers[0]!;
          expect(c.livenessProbe?.httpGet?.path, name).toBe("/healthz");
          expect(c.readinessProbe?.httpGet?.path, name).toBe("/readyz");
          expect(c.ports?.map((p) => p.name)).toContain(c.livenessProbe?.httpGet?.port);
          // the same port as the service's PORT setting
          const port = envOf(docs, c, {}).PORT;
          expect(c.ports?.find((p) => p.name === "http")?.containerPort, name).toBe(Number(port));
        }
        expect(named(docs, "Service", "task-registry")?.spec.ports).toEqual([
          { name: "http", port: 8080, targetPort: "http", protocol: "TCP" },
        ]);
      });

      it("gives the runner a Role on pods, pods/exec, pods/log and networkpolicies in its namespace only, covering what the driver calls", () => {
        const roles = byKind(docs, "Role");
        expect(roles.map((r) => r.metadata.name)).toEqual(["codefleet-runner"]);
        const rules = roles[0]?.rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[];
        for (const rule of rules) {
          expect(
            rule.apiGroups.every((g) => g === "" || g === "networking.k8s.io"),
            JSON.stringify(rule),
          ).toBe(true);
          expect(
            rule.resources.every((r) => ["pods", "pods/exec", "pods/log", "networkpolicies"].includes(r)),
            JSON.stringify(rule),
          ).toBe(true);
          expect(rule.verbs.includes("*") || rule.resources.includes("*") || rule.apiGroups.includes("*")).toBe(false);
          expect(rule).not.toHaveProperty("resourceNames");
        }
        for (const need of REQUIRED_RBAC) {
          for (const verb of need.verbs) {
            const granted = rules.some(
              (r) => r.apiGroups.includes(need.apiGroup) && r.resources.includes(need.resource) && r.verbs.includes(verb),
            );
            expect(granted, `${verb} ${need.resource}`).toBe(true);
          }
        }
        const bindings = byKind(docs, "RoleBinding");
        expect(bindings.map((b) => [b.roleRef, b.subjects])).toEqual([
          [
            { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "codefleet-runner" },
            [{ kind: "ServiceAccount", name: "codefleet-runner", namespace: "codefleet" }],
          ],
        ]);
        const runner = workloads(docs).find((w) => w.metadata.name === "runner") as Doc;
        expect(template(runner).spec?.serviceAccountName).toBe("codefleet-runner");
        // no other workload runs as the runner's account
        expect(workloads(docs).filter((w) => template(w).spec?.serviceAccountName === "codefleet-runner")).toHaveLength(1);
      });

      it("denies task pods all traffic by default, selecting them by the label the driver puts on them", () => {
        const deny = named(docs, "NetworkPolicy", "codefleet-agents-default-deny") as Doc;
        expect(deny.spec).toEqual({ podSelector: { matchLabels: { "codefleet.managed": "true" } }, policyTypes: ["Ingress", "Egress"] });
        const pod = podSpecFor(
          {
            taskId: "t",
            attempt: 1,
            runnerId: "r",
            image: "i",
            slot: { slotId: "s", path: "/var/lib/codefleet/repo-pool/slots/s", hostPath: "" },
            memoryMb: 512,
            cpus: 1,
            pidsLimit: 64,
            network: "none",
            env: {},
          },
          kubernetesSettingsFrom({ K8S_SLOTS_PVC: "codefleet-slots" }),
        );
        for (const [k, v] of Object.entries(deny.spec.podSelector.matchLabels)) expect(pod.metadata?.labels?.[k]).toBe(v);
      });

      it("gives the runner settings the Kubernetes driver accepts, and that fit the rest of the manifests", () => {
        const runner = workloads(docs).find((w) => w.metadata.name === "runner") as Doc;
        const c = template(runner).spec!.containers[0]!;
        const env = envOf(docs, c, { POD_NAME: "runner-0", POD_UID: "0f0e0d0c-uid", POD_NAMESPACE: "codefleet", POD_IP: "10.1.2.3" });
        const settings = kubernetesSettingsFrom(env);
        expect(settings.namespace).toBe("codefleet");
        expect(settings.owner).toEqual({ podName: "runner-0", podUid: "0f0e0d0c-uid" });
        expect(env.RUNNER_ID).toBe("runner-0");
        expect(env.LLM_GATEWAY_ADVERTISE_URL).toBe("http://10.1.2.3:{port}");
        // task pods find the gateway on the runner pods, at the port it listens on
        for (const [k, v] of Object.entries(settings.gateway.podLabels)) expect(template(runner).metadata?.labels?.[k], k).toBe(v);
        expect(settings.gateway.port).toBe(Number(env.LLM_GATEWAY_PORT));
        expect(c.ports?.find((p) => p.name === "llm-gateway")?.containerPort).toBe(settings.gateway.port);
        // the slots claim exists, and repo-pool and the runner mount it at the path the driver computes subPaths from
        const claim = named(docs, "PersistentVolumeClaim", settings.slots.claimName) as Doc;
        expect(claim).toBeDefined();
        expect(claim.spec.accessModes).toEqual(target === "overlays/dev" ? ["ReadWriteOnce"] : ["ReadWriteMany"]);
        const repoPool = workloads(docs).find((w) => w.metadata.name === "repo-pool") as Doc;
        const rp = template(repoPool).spec!.containers[0]!;
        expect(envOf(docs, rp, {}).REPO_POOL_DATA_DIR).toBe(settings.slots.mountPath);
        for (const [w, ct] of [
          [runner, c],
          [repoPool, rp],
        ] as const) {
          const vol = template(w).spec?.volumes?.find((v) => v.persistentVolumeClaim?.claimName === settings.slots.claimName);
          expect(ct.volumeMounts?.find((m) => m.name === vol?.name)?.mountPath).toBe(settings.slots.mountPath);
        }
        // task pods run as an account bound to nothing, without its token
        const agentAccount = named(docs, "ServiceAccount", settings.serviceAccountName) as Doc;
        expect(agentAccount.automountServiceAccountToken).toBe(false);
        expect(byKind(docs, "RoleBinding").flatMap((b) => b.subjects.map((s: { name: string }) => s.name))).not.toContain(
          settings.serviceAccountName,
        );
        // setups' results would live in Docker volumes: off with this driver
        expect(env.ENV_CACHE_MAX_BYTES).toBe("0");
      });

      it("sets only variables the services read", () => {
        const extra = (n: string) => n.startsWith("OTEL_") || n.startsWith("POD_") || n === "EXECUTION_DRIVER";
        for (const w of workloads(docs)) {
          const service = w.metadata.name;
          if (!["task-registry", "artifact-store", "repo-pool", "runner"].includes(service)) continue;
          const read = namesRead(service);
          const c = template(w).spec!.containers[0]!;
          const names = [...Object.keys(envOf(docs, c, {})), ...(c.env ?? []).map((e) => e.name)];
          const unknown = [...new Set(names)].filter((n) => !read.has(n) && !extra(n));
          expect(unknown, service).toEqual([]);
        }
      });

      it("references only ConfigMaps and Secrets it has, or the Secrets an operator provides", () => {
        const outOfBand = new Set([
          "codefleet-task-registry-secrets",
          "codefleet-artifact-store-secrets",
          "codefleet-repo-pool-secrets",
          "codefleet-runner-secrets",
          "codefleet-api-tokens",
          "codefleet-model-keys",
        ]);
        const have = (kind: string, name: string) => docs.some((d) => d.kind === kind && d.metadata.name === name);
        for (const w of workloads(docs)) {
          const t = JSON.stringify(template(w));
          for (const m of t.matchAll(/"(?:configMapRef|configMapKeyRef|configMap)":\{[^}]*?"name":"([^"]+)"/g))
            expect(have("ConfigMap", m[1] as string), `${w.metadata.name} → ConfigMap ${m[1]}`).toBe(true);
          for (const m of t.matchAll(/"(?:secretRef|secretKeyRef)":\{[^}]*?"name":"([^"]+)"|"secretName":"([^"]+)"/g)) {
            const name = (m[1] ?? m[2]) as string;
            const ok = have("Secret", name) || (target !== "overlays/dev" && outOfBand.has(name)) || name === "codefleet-model-keys";
            expect(ok, `${w.metadata.name} → Secret ${name}`).toBe(true);
          }
        }
      });

      it("holds no secret values but the compose stack's public development ones, and those only in overlays/dev", () => {
        const secrets = byKind(docs, "Secret");
        if (target !== "overlays/dev") {
          expect(secrets).toEqual([]);
          return;
        }
        for (const s of secrets) {
          for (const [k, b64] of Object.entries(s.data as Record<string, string>)) {
            const value = Buffer.from(b64, "base64").toString("utf8");
            const isDev =
              /^codefleet-dev[-a-z]*$/.test(value) ||
              value.includes(":codefleet-dev@") ||
              value === readFileSync(join(ROOT, "deploy/dev-tokens.yaml"), "utf8");
            expect(isDev, `${s.metadata.name}/${k}`).toBe(true);
          }
        }
      });
    });
  }

  it("runs deploy/nats's configuration and the development tokens in overlays/dev, byte for byte", () => {
    for (const [copy, original] of [
      ["overlays/dev/nats/nats.conf", "../nats/nats.conf"],
      ["overlays/dev/nats/auth.conf", "../nats/auth.conf"],
      ["overlays/dev/dev-tokens.yaml", "../dev-tokens.yaml"],
    ] as const) {
      expect(readFileSync(join(K8S, copy), "utf8"), copy).toBe(readFileSync(join(K8S, original), "utf8"));
    }
    const dev = rendered.get("overlays/dev") as Doc[];
    const nats = generated(dev, "ConfigMap", "codefleet-nats-config") as Doc;
    expect(Object.keys(nats.data).sort()).toEqual(["auth.conf", "nats.conf"]);
    // every $PASSWORD the NATS config reads is in the server's Secret
    const wanted = [...readFileSync(join(K8S, "../nats/auth.conf"), "utf8").matchAll(/password: \$([A-Z_]+)/g)].map((m) => m[1]);
    const secret = generated(dev, "Secret", "codefleet-nats-server") as Doc;
    expect(wanted.length).toBeGreaterThan(3);
    for (const w of wanted) expect(Object.keys(secret.data), w).toContain(w);
    expect(existsSync(join(K8S, "overlays/dev/nats.yaml"))).toBe(true);
  });

  it("points overlays/production at external NATS and PostgreSQL: it runs neither", () => {
    const prod = rendered.get("overlays/production") as Doc[];
    expect(
      workloads(prod)
        .map((w) => w.metadata.name)
        .sort(),
    ).toEqual(["artifact-store", "repo-pool", "runner", "task-registry"]);
    const common = generated(prod, "ConfigMap", "codefleet-common") as Doc;
    expect(common.data.NATS_URL).not.toBe("nats://nats:4222");
    expect(common.data.CODEFLEET_ENV).toBe("production");
  });
});

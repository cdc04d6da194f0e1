import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LABELS, type RunContainerSpec, type RunHandle } from "../driver.js";
import { KubernetesDriver } from "./kubernetes-driver.js";
import { labelValue, podName } from "./names.js";
import { type KubernetesSettings, kubernetesSettingsFrom } from "./settings.js";

/**
 * The driver against a real API server: the cluster KUBECONFIG names (kind, k3d, minikube, or a
 * real one), in K8S_NAMESPACE (default: default). It uses the claim K8S_SLOTS_PVC if set, else
 * makes a 1 GiB ReadWriteOnce claim of the default storage class for the test and deletes it
 * after. The image (K8S_TEST_IMAGE, default busybox:1.36) needs sh, timeout, head and base64.
 * Without KUBECONFIG (as on the machines this project is built on, where no cluster can run) it
 * does not run, and says so.
 */
const why = process.env.KUBECONFIG
  ? undefined
  : "KUBECONFIG is not set: there is no Kubernetes API server to run the driver against (none can run on this machine)";
if (why) console.warn(`[kubernetes-driver.int.test] SKIPPED: ${why}`);

describe.skipIf(why === undefined)("KubernetesDriver against a real cluster", () => {
  it.skip(`did not run: ${why}`, () => undefined);
});

describe.skipIf(why !== undefined)("KubernetesDriver against a real cluster", () => {
  const suffix = randomBytes(4).toString("hex");
  const ownClaim = process.env.K8S_SLOTS_PVC ? undefined : `codefleet-int-${suffix}`;
  const mount = "/var/lib/codefleet/repo-pool";
  // made in beforeAll: nothing reads a kubeconfig while the tests are only collected
  let settings: KubernetesSettings;
  let driver: KubernetesDriver;
  const runnerId = `int-runner-${suffix}`;
  const spec = (over: Partial<RunContainerSpec> = {}): RunContainerSpec => ({
    taskId: `tsk_int_${suffix}`,
    attempt: 1,
    runnerId,
    image: process.env.K8S_TEST_IMAGE ?? "busybox:1.36",
    slot: { slotId: `int-${suffix}`, path: `${mount}/slots/int-${suffix}`, hostPath: `${mount}/slots/int-${suffix}` },
    memoryMb: 128,
    cpus: 0.2,
    pidsLimit: 64,
    network: "none",
    env: { GREETING: "hello from the spec" },
    ...over,
  });
  const runs: RunHandle[] = [];

  beforeAll(async () => {
    settings = kubernetesSettingsFrom({
      ...process.env,
      K8S_NAMESPACE: process.env.K8S_NAMESPACE ?? "default",
      K8S_SLOTS_PVC: process.env.K8S_SLOTS_PVC ?? ownClaim,
      K8S_SLOTS_MOUNT_PATH: mount,
      K8S_POD_START_TIMEOUT_MS: process.env.K8S_POD_START_TIMEOUT_MS ?? "300000",
    });
    driver = new KubernetesDriver(settings, { pollMs: 250, removeWaitMs: 120_000 });
    await driver.ping();
    if (ownClaim) {
      await driver.core.createNamespacedPersistentVolumeClaim({
        namespace: settings.namespace,
        body: {
          metadata: { name: ownClaim, labels: { [LABELS.managed]: "int-test" } },
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
        },
      });
    }
  }, 60_000);

  afterAll(async () => {
    for (const r of runs) await r.remove().catch(() => undefined);
    if (!driver) return;
    await driver.sweep(runnerId).catch(() => undefined);
    if (ownClaim)
      await driver.core.deleteNamespacedPersistentVolumeClaim({ name: ownClaim, namespace: settings.namespace }).catch(() => undefined);
  }, 180_000);

  it("creates a hardened pod, execs in it, reads its state and address, and removes it (idempotently)", async () => {
    const run = await driver.createRun(spec());
    runs.push(run);
    expect(run.id).toBe(podName(`tsk_int_${suffix}`, 1));
    const out: string[] = [];
    const echo = await run.exec(["echo", "hello"], { timeoutMs: 30_000, onOutput: (_s, c) => out.push(c.toString()) });
    expect(echo).toMatchObject({ exitCode: 0, timedOut: false, idleTimedOut: false, canceled: false });
    expect(out.join("")).toBe("hello\n");

    const seen: string[] = [];
    const env = await run.exec(["sh", "-c", 'id -u; printf "%s|%s|" "$GREETING" "$SECRET"; pwd; cat; exit 3'], {
      env: { SECRET: "not in any URL" },
      workdir: "/tmp",
      stdin: "from stdin",
      timeoutMs: 30_000,
      onOutput: (_s, c) => seen.push(c.toString()),
    });
    expect(env.exitCode).toBe(3);
    expect(seen.join("")).toBe("1000\nhello from the spec|not in any URL|/tmp\nfrom stdin");

    // the root filesystem is read-only, /tmp is not
    const ro = await run.exec(["sh", "-c", "touch /etc/x 2>/dev/null && echo writable || echo read-only; touch /tmp/x && echo tmp-ok"], {
      timeoutMs: 30_000,
      onOutput: (_s, c) => seen.push(c.toString()),
    });
    expect(ro.exitCode).toBe(0);
    expect(seen.join("")).toContain("read-only\ntmp-ok\n");

    const slow = await run.exec(["sleep", "30"], { timeoutMs: 2000 });
    expect(slow).toMatchObject({ exitCode: 137, timedOut: true });

    expect(await run.state()).toMatchObject({ running: true, oomKilled: false });
    expect(await run.address()).toMatch(/^[0-9a-f.:]+$/);
    expect(await driver.running(runnerId)).toBe(1);

    await run.remove();
    expect(await driver.readPod(run.id)).toBeUndefined();
    expect((await run.state()).running).toBe(false);
    await run.remove();
    expect(await driver.running(runnerId)).toBe(0);
  }, 600_000);

  it("gives a bridge run its NetworkPolicy, relabels an adopted warm pod, and removes stale attempts by label", async () => {
    const warm = await driver.createRun(spec({ taskId: `warm-${suffix}`, network: "bridge", labels: { "codefleet.warm": "true" } }));
    runs.push(warm);
    const policy = await driver.net.readNamespacedNetworkPolicy({ name: warm.id, namespace: settings.namespace });
    expect(policy.spec?.policyTypes).toEqual(["Ingress", "Egress"]);

    await warm.adopt({ taskId: `tsk_adopter_${suffix}`, attempt: 2 });
    const pod = await driver.readPod(warm.id);
    expect(pod?.metadata?.labels?.[LABELS.taskId]).toBe(labelValue(`tsk_adopter_${suffix}`));
    expect(pod?.metadata?.annotations?.["codefleet.reservation"]).toBe(`warm-${suffix}`);

    expect(await driver.removeStale(`tsk_adopter_${suffix}`, 2)).toBe(0);
    expect(await driver.removeStale(`tsk_adopter_${suffix}`)).toBe(1);
    expect(await driver.readPod(warm.id)).toBeUndefined();
    await expect(driver.net.readNamespacedNetworkPolicy({ name: warm.id, namespace: settings.namespace })).rejects.toMatchObject({
      code: 404,
    });
  }, 600_000);

  it("sweeps the pods of its runner that it does not track", async () => {
    const other = new KubernetesDriver(settings, { pollMs: 250 });
    const orphan = await other.createRun(spec({ taskId: `tsk_orphan_${suffix}` }));
    runs.push(orphan);
    expect(await driver.sweep(runnerId)).toBe(1);
    expect(await other.sweep(runnerId)).toBe(0);
  }, 600_000);
});

import { PassThrough, Writable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { CodefleetError, errorMessage } from "@codefleet/contracts";
import type { GitRunner } from "@codefleet/repo-pool/git";
import {
  CoreV1Api,
  Exec,
  KubeConfig,
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1NetworkPolicy,
  type V1Pod,
  type V1Status,
} from "@kubernetes/client-node";
// not re-exported by the package's index; its default streams are the process's own (see inertStreams)
import { WebSocketHandler } from "@kubernetes/client-node/dist/web-socket-handler.js";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import {
  type ContainerState,
  type ExecOptions,
  type ExecResult,
  type ExecutionDriver,
  LABELS,
  type RunContainerSpec,
  type RunHandle,
  type SlotMount,
  type WorkspaceReader,
} from "../driver.js";
import { watchExec } from "../exec-watch.js";
import { openSlotWorkspace, slotBlobIds } from "../slot-git.js";
import { execInvocation, exitCodeOf } from "./exec.js";
import { AGENT_CONTAINER, ANNOTATIONS, labelValue, ownerLabels, selector } from "./names.js";
import { containerStateOf, networkPolicyFor, podSpecFor, type StartProblem, startProblem } from "./pod-spec.js";
import type { KubernetesSettings } from "./settings.js";
import { wireToModel } from "./wire.js";

const tracer = trace.getTracer("@codefleet/runner");

export class KubernetesDriverError extends CodefleetError {
  override readonly name = "KubernetesDriverError";
}

/**
 * What this driver asks of the API, all in its one namespace: deploy/k8s/base/rbac.yaml grants
 * exactly this (and pods/log for people), which a unit test checks.
 */
export const REQUIRED_RBAC = [
  { apiGroup: "", resource: "pods", verbs: ["create", "get", "list", "patch", "delete"] },
  { apiGroup: "", resource: "pods/exec", verbs: ["create"] },
  { apiGroup: "networking.k8s.io", resource: "networkpolicies", verbs: ["create", "list", "patch", "delete"] },
] as const;

/** Wraps an API call in a client span. */
async function traced<T>(name: string, attrs: Record<string, string | number>, f: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(
    name,
    { kind: SpanKind.CLIENT, attributes: { "codefleet.driver": "kubernetes", ...attrs } },
    async (span) => {
      try {
        return await f();
      } catch (err) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
        throw err;
      } finally {
        span.end();
      }
    },
  );
}

/** The HTTP status of a failed API call (client-node's ApiException), if it is one. */
function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "number" ? code : undefined;
}

function apiError(what: string, err: unknown): KubernetesDriverError {
  if (err instanceof CodefleetError) return err as KubernetesDriverError;
  const status = statusOf(err);
  const body = (err as { body?: unknown }).body;
  const reason = typeof body === "string" ? body.slice(0, 500) : ((body as { message?: string } | undefined)?.message ?? errorMessage(err));
  return new KubernetesDriverError("kubernetes_api", `${what}: ${status ? `HTTP ${status}: ` : ""}${reason}`, {
    cause: err,
    retry: { kind: "backoff" },
    ...(status ? { details: { status } } : {}),
  });
}

const ignoreNotFound = (err: unknown) => {
  if (statusOf(err) !== 404) throw err;
};

/** A kubeconfig from the settings: a file (and context), or the pod's service account. */
export function kubeConfigFrom(settings: Pick<KubernetesSettings, "kubeconfig">): KubeConfig {
  const kc = new KubeConfig();
  if (settings.kubeconfig.kind === "file") {
    kc.loadFromFile(settings.kubeconfig.path);
    if (settings.kubeconfig.context) kc.setCurrentContext(settings.kubeconfig.context);
  } else {
    kc.loadFromCluster();
  }
  return kc;
}

/** Streams that the websocket handler falls back to when a server closes a stream: never the process's own. */
function inertStreams() {
  const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
  return { stdin: new PassThrough(), stdout: sink(), stderr: sink() };
}

/**
 * Runs each task attempt in one hardened pod (`podSpecFor`) with its own NetworkPolicy
 * (`networkPolicyFor`), in one namespace; the slot reaches the pod through the ReadWriteMany claim
 * that repo-pool and the runner share, so the runner reads the workspace back where repo-pool
 * keeps it, as the Docker driver does. Needs, in that namespace only: pods (create, get, list,
 * watch, patch, delete), pods/exec (create, get), networkpolicies (create, get, list, patch, delete).
 */
export class KubernetesDriver implements ExecutionDriver {
  readonly name = "kubernetes";
  // No `environmentCache`: setups' results are kept in Docker volumes, which a cluster does not
  // have; every setup runs (docs/scaling.md).
  readonly core: CoreV1Api;
  readonly net: NetworkingV1Api;
  private readonly execClient: Exec;
  /** Pods (and their policies, same names) this driver made and has not removed: everything else of its runner is an orphan. */
  private readonly live = new Set<string>();
  /** What image references resolved to, as the kubelet reported for pods of this driver. */
  private readonly imageIds = new Map<string, { id: string; at: number }>();

  constructor(
    readonly settings: KubernetesSettings,
    private readonly opts: {
      /** The runner's hardened git (never root): to read trees back from the shared claim. */
      git?: { runner: GitRunner; owner?: { uid: number; gid: number } };
      /** Default: from the settings (kubeconfig file or in-cluster). */
      kubeConfig?: KubeConfig;
      /** How often a starting or ending pod is looked at. */
      pollMs?: number;
      /** How long `remove` waits for the kubelet to confirm a pod is gone. */
      removeWaitMs?: number;
    } = {},
  ) {
    const kc = opts.kubeConfig ?? kubeConfigFrom(settings);
    this.core = kc.makeApiClient(CoreV1Api);
    this.net = kc.makeApiClient(NetworkingV1Api);
    this.execClient = new Exec(kc, new WebSocketHandler(kc, undefined, inertStreams()));
  }

  private get namespace(): string {
    return this.settings.namespace;
  }

  private get pollMs(): number {
    return this.opts.pollMs ?? 500;
  }

  blobIds(slot: SlotMount, sha: string, paths: readonly string[]): Promise<Record<string, string>> {
    return slotBlobIds(this.opts.git, slot, sha, paths);
  }

  /**
   * What an image is, as far as a client of the API can tell without pulling it: the digest of a
   * reference pinned by one; else the image id the kubelet reported for this driver's last pod of
   * that reference (within a minute); else the reference itself. Pin agent images by digest
   * (`image@sha256:…`) for an exact answer.
   */
  async imageId(image: string): Promise<string> {
    const pinned = /@(sha256:[0-9a-f]{64})$/.exec(image);
    if (pinned) return pinned[1] as string;
    const known = this.imageIds.get(image);
    if (known && Date.now() - known.at < 60_000) return known.id;
    return image;
  }

  /** Runner and repo-pool share the slots claim, mounted at the same path: the tree is read where repo-pool keeps it. */
  openWorkspace(slot: SlotMount, scratchDir: string): Promise<WorkspaceReader> {
    return openSlotWorkspace(this.opts.git, slot, scratchDir);
  }

  /** The API server answers, and lets this runner list pods in its namespace. */
  async ping(): Promise<void> {
    try {
      await this.core.listNamespacedPod({ namespace: this.namespace, labelSelector: `${LABELS.managed}=true`, limit: 1 });
    } catch (err) {
      throw new KubernetesDriverError(
        "kubernetes_unreachable",
        `Kubernetes API unreachable or forbidden: ${apiError("list pods", err).message}`,
        {
          cause: err,
          retry: { kind: "backoff" },
        },
      );
    }
  }

  /** A client cannot tell whether a node can pull an image: a missing one fails the pod's start (image_missing). */
  async imageExists(_image: string): Promise<boolean> {
    return true;
  }

  private async listPods(labels: Record<string, string>): Promise<V1Pod[]> {
    const list = await this.core.listNamespacedPod({ namespace: this.namespace, labelSelector: selector(labels) });
    return list.items;
  }

  private async listPolicies(labels: Record<string, string>): Promise<V1NetworkPolicy[]> {
    const list = await this.net.listNamespacedNetworkPolicy({ namespace: this.namespace, labelSelector: selector(labels) });
    return list.items;
  }

  async running(runnerId: string): Promise<number> {
    const pods = await this.listPods({ [LABELS.managed]: "true", [LABELS.runnerId]: labelValue(runnerId) });
    return pods.filter(
      (p) =>
        p.metadata?.annotations?.[ANNOTATIONS.runnerId] === runnerId &&
        !p.metadata?.deletionTimestamp &&
        (p.status?.phase === "Running" || p.status?.phase === "Pending"),
    ).length;
  }

  async removeStale(taskId: string, keepAttempt?: number): Promise<number> {
    const labels = { [LABELS.managed]: "true", [LABELS.taskId]: labelValue(taskId) };
    const mine = (o: V1Pod | V1NetworkPolicy) =>
      o.metadata?.annotations?.[ANNOTATIONS.taskId] === taskId &&
      (keepAttempt === undefined || o.metadata?.labels?.[LABELS.attempt] !== String(keepAttempt));
    const pods = (await this.listPods(labels)).filter(mine);
    const names = pods.map((p) => p.metadata?.name as string);
    await Promise.all(names.map((n) => this.deletePod(n)));
    const policies = (await this.listPolicies(labels)).filter(mine).map((p) => p.metadata?.name as string);
    await Promise.all([...new Set([...names, ...policies])].map((n) => this.deletePolicy(n)));
    await Promise.all(names.map((n) => this.waitGone(n)));
    return names.length;
  }

  async sweep(runnerId: string): Promise<number> {
    const labels = { [LABELS.managed]: "true", [LABELS.runnerId]: labelValue(runnerId) };
    const orphan = (o: V1Pod | V1NetworkPolicy) =>
      o.metadata?.annotations?.[ANNOTATIONS.runnerId] === runnerId && !this.live.has(o.metadata?.name as string);
    let removed = 0;
    for (const pod of (await this.listPods(labels)).filter(orphan)) {
      await this.deletePod(pod.metadata?.name as string).then(
        () => removed++,
        () => undefined,
      );
    }
    for (const policy of (await this.listPolicies(labels)).filter(orphan)) {
      await this.deletePolicy(policy.metadata?.name as string).catch(() => undefined);
    }
    return removed;
  }

  async createRun(spec: RunContainerSpec): Promise<RunHandle> {
    const pod = podSpecFor(spec, this.settings);
    const policy = networkPolicyFor(spec, this.settings);
    const name = pod.metadata?.name as string;
    const attrs = { "codefleet.task_id": spec.taskId, "codefleet.attempt": spec.attempt, "k8s.pod.name": name };
    this.live.add(name);
    const run = new KubernetesRun(this, name, spec.taskId, () => this.live.delete(name));
    try {
      // the policy first: the pod never runs without it
      await traced("k8s networkpolicy create", attrs, () =>
        this.net.createNamespacedNetworkPolicy({
          namespace: this.namespace,
          body: wireToModel<V1NetworkPolicy>(policy, "V1NetworkPolicy"),
        }),
      ).catch((err) => {
        if (statusOf(err) !== 409) throw apiError(`create NetworkPolicy ${name}`, err);
      });
      await traced("k8s pod create", { ...attrs, "container.image.name": spec.image }, () =>
        this.core.createNamespacedPod({ namespace: this.namespace, body: wireToModel<V1Pod>(pod, "V1Pod") }),
      ).catch((err) => {
        if (statusOf(err) === 409) {
          // another run of this very attempt: not ours to remove
          run.disown();
          throw new KubernetesDriverError("pod_exists", `pod ${name} of task ${spec.taskId} attempt ${spec.attempt} already exists`, {
            cause: err,
            retry: { kind: "backoff" },
          });
        }
        throw apiError(`create pod ${name}`, err);
      });
      await traced("k8s pod start", attrs, () => this.waitRunning(name, spec.image));
    } catch (err) {
      await run.remove();
      throw err;
    }
    return run;
  }

  /** Until the agent container runs; fails at once when it never will (a missing image), or at the start timeout. */
  private async waitRunning(name: string, image: string): Promise<void> {
    const deadline = Date.now() + this.settings.podStartTimeoutMs;
    let last: StartProblem | undefined;
    for (;;) {
      const pod = await this.readPod(name);
      if (!pod) throw new KubernetesDriverError("pod_vanished", `pod ${name} was deleted while it started`, { retry: { kind: "backoff" } });
      if (containerStateOf(pod).running) {
        const id = pod.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER)?.imageID;
        if (id) this.imageIds.set(image, { id: id.replace(/^docker-pullable:\/\//, ""), at: Date.now() });
        return;
      }
      last = startProblem(pod) ?? last;
      if (last?.final) {
        throw new KubernetesDriverError(
          last.retry === "never" ? "image_missing" : "pod_start_failed",
          last.retry === "never"
            ? `agent image '${image}' cannot be pulled (${last.reason}: ${last.message})`
            : `pod ${name} did not start (${last.reason}: ${last.message})`,
          { retry: { kind: last.retry } },
        );
      }
      if (Date.now() > deadline) {
        throw new KubernetesDriverError(
          "pod_start_timeout",
          `pod ${name} was not running after ${this.settings.podStartTimeoutMs} ms${last ? ` (${last.reason}: ${last.message})` : ""}`,
          { retry: { kind: "backoff" } },
        );
      }
      await delay(this.pollMs);
    }
  }

  /** The pod, or undefined when there is none. */
  async readPod(name: string): Promise<V1Pod | undefined> {
    try {
      return await this.core.readNamespacedPod({ name, namespace: this.namespace });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw apiError(`read pod ${name}`, err);
    }
  }

  /** Deletes a pod (idempotent): SIGTERM, SIGKILL a second later; the kubelet confirms before it is gone. */
  async deletePod(name: string): Promise<void> {
    await traced("k8s pod delete", { "k8s.pod.name": name }, () =>
      this.core.deleteNamespacedPod({ name, namespace: this.namespace, gracePeriodSeconds: 1 }),
    ).catch(ignoreNotFound);
  }

  async deletePolicy(name: string): Promise<void> {
    await this.net.deleteNamespacedNetworkPolicy({ name, namespace: this.namespace }).catch(ignoreNotFound);
  }

  /** Until the pod is gone (nothing of the task runs any more), bounded: the sweep takes over a pod stuck terminating. */
  async waitGone(name: string): Promise<boolean> {
    const deadline = Date.now() + (this.opts.removeWaitMs ?? 60_000);
    while (Date.now() < deadline) {
      const gone = await this.readPod(name).then(
        (p) => p === undefined,
        () => false,
      );
      if (gone) return true;
      await delay(this.pollMs);
    }
    return false;
  }

  /** Relabels a pod and its policy for the attempt that adopts it (labels are mutable in Kubernetes: no rename needed). */
  async relabel(name: string, owner: { taskId: string; attempt: number }, reservation: string): Promise<void> {
    const body = {
      metadata: {
        labels: ownerLabels(owner.taskId, owner.attempt),
        annotations: {
          [ANNOTATIONS.taskId]: owner.taskId,
          [ANNOTATIONS.attempt]: String(owner.attempt),
          [ANNOTATIONS.reservation]: reservation,
        },
      },
    };
    const merge = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
    await this.core.patchNamespacedPod({ name, namespace: this.namespace, body }, merge).catch((err) => {
      throw apiError(`relabel pod ${name}`, err);
    });
    await this.net.patchNamespacedNetworkPolicy({ name, namespace: this.namespace, body }, merge).catch(ignoreNotFound);
  }

  /** Opens an exec's websocket (see exec.ts for the framing). */
  openExec(
    name: string,
    command: string[],
    stdout: Writable,
    stderr: Writable,
    stdin: PassThrough,
    onStatus: (s: V1Status) => void,
  ): ReturnType<Exec["exec"]> {
    return this.execClient.exec(this.namespace, name, AGENT_CONTAINER, command, stdout, stderr, stdin, false, onStatus);
  }
}

class KubernetesRun implements RunHandle {
  private removed = false;
  private killed = false;

  constructor(
    private readonly driver: KubernetesDriver,
    readonly id: string,
    /** The task that owns the pod now (a warm pod is made for a reservation and adopted later). */
    private taskId: string,
    private readonly forget: () => void,
  ) {}

  /** The pod belongs to someone else (a create that found it existing): remove() leaves it alone. */
  disown(): void {
    this.removed = true;
    this.forget();
  }

  async adopt(owner: { taskId: string; attempt: number }): Promise<void> {
    await this.driver.relabel(this.id, owner, this.taskId);
    this.taskId = owner.taskId;
  }

  async exec(cmd: string[], opts: ExecOptions): Promise<ExecResult> {
    const started = Date.now();
    // `timeout` inside the pod kills the process tree on the wall-clock limit; the runner also
    // deletes the pod if the exec outlives its limit (a process ignoring signals), as Docker's kill.
    const invocation = execInvocation(cmd, opts);
    let lastOutput = Date.now();
    const sink = (stream: "stdout" | "stderr") =>
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          lastOutput = Date.now();
          opts.onOutput?.(stream, chunk);
          cb();
        },
      });
    const stdin = new PassThrough();
    let status: V1Status | undefined;
    const ws = await traced("k8s pod exec", { "k8s.pod.name": this.id }, () =>
      this.driver.openExec(this.id, invocation.command, sink("stdout"), sink("stderr"), stdin, (s) => {
        status = s;
      }),
    ).catch((err) => {
      stdin.destroy();
      throw apiError(`exec in pod ${this.id}`, err);
    });
    // the environment block and the command's stdin, whose length the prelude knows: stdin is never
    // closed (the v4 protocol would close the whole exec), the websocket ends with the command
    stdin.write(invocation.stdin);
    const ended = new Promise<void>((resolve) => {
      ws.on("close", () => resolve());
      ws.on("error", () => resolve());
    });
    let forceClose: NodeJS.Timeout | undefined;
    const kill = async () => {
      // the exec API cannot kill what it started: end the pod, the run is over either way; a pod
      // deleted under the exec may leave its websocket open, so close it ourselves
      forceClose ??= setTimeout(() => ws.terminate(), 2000);
      this.killed = true;
      await this.driver.deletePod(this.id).catch(() => undefined);
    };
    const watch = watchExec(opts, { startedAt: started, lastOutputAt: () => lastOutput, kill });
    try {
      await ended;
    } finally {
      watch.stop();
      if (forceClose) clearTimeout(forceClose);
      stdin.destroy();
    }
    const exitCode = exitCodeOf(status);
    // coreutils timeout exits 137 when it had to KILL
    if (exitCode === 137 && Date.now() - started >= opts.timeoutMs - 100) watch.stops.timedOut = true;
    return { exitCode, ...watch.stops, durationMs: Date.now() - started };
  }

  async state(): Promise<ContainerState> {
    try {
      const pod = await this.driver.readPod(this.id);
      if (!pod && this.killed) return { running: false, oomKilled: false, exitCode: 137 };
      return containerStateOf(pod);
    } catch {
      return { running: false, oomKilled: false };
    }
  }

  async address(): Promise<string | undefined> {
    const pod = await this.driver.readPod(this.id);
    return pod?.status?.podIP || undefined;
  }

  /** Deletes the pod and its NetworkPolicy, and waits until the kubelet says the pod is gone. Idempotent. */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    // whatever happens below, the sweep takes over what is left
    this.forget();
    await this.driver.deletePod(this.id).catch(() => undefined);
    await this.driver.waitGone(this.id).catch(() => undefined);
    await this.driver.deletePolicy(this.id).catch(() => undefined);
  }
}

import { hostname } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import {
  CONTAINER_BASE_INDEX,
  CONTAINER_BASE_OBJECTS,
  CONTAINER_WORKSPACE,
  CodefleetError,
  errorMessage,
  slotLayout,
} from "@codefleet/contracts";
import type { GitRunner } from "@codefleet/repo-pool/git";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import Docker from "dockerode";
import { WorkspaceGit } from "../workspace/workspace-git.js";
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
} from "./driver.js";
import { DockerEnvironmentCache, type DockerEnvironmentCacheOptions, type EnvironmentCache } from "./env-cache.js";

const tracer = trace.getTracer("@codefleet/runner");

export class DriverError extends CodefleetError {
  override readonly name = "DriverError";
}

/** Wraps a dockerode call in a client span. */
async function traced<T>(name: string, attrs: Record<string, string | number>, f: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, { kind: SpanKind.CLIENT, attributes: { "codefleet.driver": "docker", ...attrs } }, async (span) => {
    try {
      return await f();
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

/**
 * Runs each task attempt in one hardened container: non-root, all capabilities dropped,
 * no-new-privileges, read-only root filesystem with tmpfs /tmp and HOME, pids/memory/CPU limits,
 * the default seccomp profile, its own bridge network (or none), and ownership labels.
 */
export class DockerDriver implements ExecutionDriver {
  readonly name = "docker";
  readonly docker: Docker;
  /** Containers and networks this driver made and has not removed: everything else of its runner is an orphan. */
  private readonly live = { containers: new Set<string>(), networks: new Set<string>() };
  /** Images seen present (a vanished one fails at create with Docker's own message). */
  private readonly images = new Set<string>();

  constructor(
    private readonly opts: {
      socketPath?: string;
      host?: string;
      port?: number;
      /** The runner's hardened git (never root), and the owner of scratch dirs when the runner is root: to read trees back. */
      git?: { runner: GitRunner; owner?: { uid: number; gid: number } };
      /** Keep setups' results in named volumes of this engine. */
      environmentCache?: Omit<DockerEnvironmentCacheOptions, "docker">;
    } = {},
  ) {
    this.docker = opts.host
      ? new Docker({ host: opts.host, port: opts.port ?? 2375 })
      : new Docker({ socketPath: opts.socketPath ?? "/var/run/docker.sock" });
    if (opts.environmentCache) this.environmentCache = new DockerEnvironmentCache({ docker: this.docker, ...opts.environmentCache });
  }

  readonly environmentCache?: EnvironmentCache;

  async blobIds(slot: SlotMount, sha: string, paths: readonly string[]): Promise<Record<string, string>> {
    if (!this.opts.git) throw new DriverError("no_git", "this driver was made without a git runner: it cannot read workspaces");
    if (paths.length === 0) return {};
    const out = await this.opts.git.runner.run(["--git-dir", slotLayout(slot.path).gitDir, "ls-tree", "-z", sha, "--", ...paths]);
    const ids: Record<string, string> = {};
    for (const entry of out.split("\0")) {
      const m = /^\d+ blob ([0-9a-f]+)\t(.+)$/s.exec(entry);
      if (m) ids[m[2] as string] = m[1] as string;
    }
    return ids;
  }

  private readonly imageIds = new Map<string, { id: string; at: number }>();

  /** Asked again after a minute: a tag rebuilt is another image (and another environment). */
  async imageId(image: string): Promise<string> {
    const known = this.imageIds.get(image);
    if (known && Date.now() - known.at < 60_000) return known.id;
    const id = (await this.docker.getImage(image).inspect()).Id;
    this.imageIds.set(image, { id, at: Date.now() });
    return id;
  }

  /** Runner and repo-pool share the slot directory: the tree is read where repo-pool keeps it. */
  async openWorkspace(slot: SlotMount, scratchDir: string): Promise<WorkspaceReader> {
    if (!this.opts.git) throw new DriverError("no_git", "this driver was made without a git runner: it cannot read workspaces");
    return WorkspaceGit.open(this.opts.git.runner, slotLayout(slot.path), scratchDir, this.opts.git.owner);
  }

  async ping(): Promise<void> {
    try {
      await this.docker.ping();
    } catch (err) {
      throw new DriverError("docker_unreachable", `Docker engine unreachable: ${errorMessage(err)}`, {
        cause: err,
        retry: { kind: "backoff" },
      });
    }
  }

  async imageExists(image: string): Promise<boolean> {
    if (this.images.has(image)) return true;
    try {
      await this.docker.getImage(image).inspect();
      this.images.add(image);
      return true;
    } catch {
      return false;
    }
  }

  async running(runnerId: string): Promise<number> {
    const list = await this.docker.listContainers({ filters: { label: [`${LABELS.managed}=true`, `${LABELS.runnerId}=${runnerId}`] } });
    return list.length;
  }

  async removeStale(taskId: string, keepAttempt?: number): Promise<number> {
    const labelled = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABELS.managed}=true`, `${LABELS.taskId}=${taskId}`] },
    });
    // a warm container an attempt adopted is labelled with its reservation, and named after the attempt
    const prefix = `/${containerName(taskId, "")}`;
    const named = (await this.docker.listContainers({ all: true, filters: { label: [`${LABELS.managed}=true`], name: [prefix.slice(1)] } }))
      .filter((c) => c.Names.some((n) => n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length))))
      .filter((c) => !labelled.some((l) => l.Id === c.Id));
    let removed = 0;
    for (const c of [...labelled, ...named]) {
      const attempt =
        c.Labels[LABELS.taskId] === taskId
          ? c.Labels[LABELS.attempt]
          : c.Names.map((n) => n.slice(prefix.length)).find((n) => /^\d+$/.test(n));
      if (keepAttempt !== undefined && attempt === String(keepAttempt)) continue;
      await this.docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined);
      removed++;
    }
    const networks = await this.docker.listNetworks({ filters: { label: [`${LABELS.managed}=true`, `${LABELS.taskId}=${taskId}`] } });
    for (const n of networks) {
      if (keepAttempt !== undefined && n.Labels?.[LABELS.attempt] === String(keepAttempt)) continue;
      await this.docker
        .getNetwork(n.Id)
        .remove()
        .catch(() => undefined);
    }
    return removed;
  }

  async sweep(runnerId: string): Promise<number> {
    const filters = { label: [`${LABELS.managed}=true`, `${LABELS.runnerId}=${runnerId}`] };
    let removed = 0;
    for (const c of await this.docker.listContainers({ all: true, filters })) {
      if (this.live.containers.has(c.Id)) continue;
      await this.docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .then(() => removed++)
        .catch(() => undefined);
    }
    const self = await this.selfContainer();
    for (const n of await this.docker.listNetworks({ filters })) {
      if (this.live.networks.has(n.Name)) continue;
      const network = this.docker.getNetwork(n.Id);
      if (self) await network.disconnect({ Container: self, Force: true }).catch(() => undefined);
      await network.remove().catch(() => undefined);
    }
    return removed;
  }

  async createRun(spec: RunContainerSpec): Promise<RunHandle> {
    const labels = {
      [LABELS.managed]: "true",
      [LABELS.taskId]: spec.taskId,
      [LABELS.attempt]: String(spec.attempt),
      [LABELS.runnerId]: spec.runnerId,
      ...(spec.deployment ? { [LABELS.deployment]: spec.deployment } : {}),
      ...(spec.labels ?? {}),
    };
    if (!(await this.imageExists(spec.image))) {
      throw new DriverError(
        "image_missing",
        `agent image '${spec.image}' is not present on the Docker engine (build it with npm run images:offline, or pull it)`,
        {
          retry: { kind: "never" },
        },
      );
    }
    let networkName: string | undefined;
    if (spec.network === "bridge") {
      networkName = containerName(spec.taskId, spec.attempt).slice(0, 60);
      this.live.networks.add(networkName);
      await traced("docker network create", { "codefleet.task_id": spec.taskId }, () =>
        this.docker.createNetwork({ Name: networkName as string, Driver: "bridge", Labels: labels, CheckDuplicate: true }),
      ).catch(async (err) => {
        if (!errorMessage(err).includes("already exists")) throw err;
      });
    }
    const host = slotLayout(spec.slot.hostPath);
    const container = await traced(
      "docker container create",
      { "codefleet.task_id": spec.taskId, "codefleet.attempt": spec.attempt, "container.image.name": spec.image },
      () =>
        this.docker.createContainer({
          name: containerName(spec.taskId, spec.attempt),
          Image: spec.image,
          Cmd: spec.command ?? ["sleep", "infinity"],
          User: "1000:1000",
          WorkingDir: "/workspace",
          Env: Object.entries({ HOME: "/home/agent", ...spec.env }).map(([k, v]) => `${k}=${v}`),
          Labels: labels,
          ExposedPorts: Object.fromEntries((spec.exposedPorts ?? []).map((p) => [`${p}/tcp`, {}])),
          HostConfig: {
            Binds: [
              `${host.tree}:${CONTAINER_WORKSPACE}:rw`,
              `${join(host.gitDir, "objects")}:${CONTAINER_BASE_OBJECTS}:ro`,
              `${host.index}:${CONTAINER_BASE_INDEX}:ro`,
            ],
            Memory: spec.memoryMb * 1024 * 1024,
            MemorySwap: spec.memoryMb * 1024 * 1024,
            NanoCpus: Math.round(spec.cpus * 1e9),
            PidsLimit: spec.pidsLimit,
            CapDrop: ["ALL"],
            SecurityOpt: ["no-new-privileges:true"],
            ReadonlyRootfs: true,
            Tmpfs: { "/tmp": "rw,nosuid,nodev,size=512m", "/home/agent": "rw,nosuid,nodev,size=512m,uid=1000,gid=1000,mode=0700" },
            NetworkMode: networkName ?? "none",
            ...(networkName && spec.extraHosts?.length ? { ExtraHosts: spec.extraHosts } : {}),
            Init: true,
            AutoRemove: false,
            LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "1" } },
          },
        }),
    );
    this.live.containers.add(container.id);
    const run = new DockerRun(
      this.docker,
      container,
      networkName,
      () => this.selfContainer(),
      () => {
        this.live.containers.delete(container.id);
        if (networkName) this.live.networks.delete(networkName);
      },
    );
    try {
      await traced("docker container start", { "container.id": container.id }, () => container.start());
    } catch (err) {
      await run.remove();
      throw err;
    }
    return run;
  }

  private self: Promise<string | undefined> | undefined;

  /**
   * The runner's own container when it runs in one (compose): found by its hostname, which Docker
   * sets to the container id. It joins an attempt's network to reach a server in the task's
   * container (OpenCode), and leaves it when the attempt ends.
   */
  selfContainer(): Promise<string | undefined> {
    this.self ??= this.docker
      .getContainer(hostname())
      .inspect()
      .then(
        (info) => info.Id,
        () => undefined,
      );
    return this.self;
  }
}

/** Name of an attempt's container (and network): what removeStale finds an adopted warm container by. */
function containerName(taskId: string, attempt: number | string): string {
  return `codefleet-${taskId}-${attempt}`.toLowerCase().slice(0, 120);
}

class DockerRun implements RunHandle {
  private removed = false;
  private joined: string | undefined;

  constructor(
    private readonly docker: Docker,
    private readonly container: Docker.Container,
    private readonly networkName: string | undefined,
    private readonly runnerContainer: () => Promise<string | undefined>,
    private readonly forget: () => void,
  ) {}

  get id(): string {
    return this.container.id;
  }

  async adopt(owner: { taskId: string; attempt: number }): Promise<void> {
    await this.container.rename({ name: containerName(owner.taskId, owner.attempt) });
  }

  async exec(cmd: string[], opts: ExecOptions): Promise<ExecResult> {
    const started = Date.now();
    // `timeout` inside the container kills the process tree on the wall-clock limit; the runner
    // also kills the container if the exec outlives its limit (a process ignoring signals).
    const seconds = Math.max(1, Math.ceil(opts.timeoutMs / 1000));
    const wrapped = ["timeout", "-s", "KILL", String(seconds), ...cmd];
    const exec = await this.container.exec({
      Cmd: wrapped,
      Env: Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`),
      WorkingDir: opts.workdir ?? "/workspace",
      AttachStdout: true,
      AttachStderr: true,
      AttachStdin: opts.stdin !== undefined,
      Tty: false,
    });
    const stream = await exec.start({ hijack: true, stdin: opts.stdin !== undefined });
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let lastOutput = Date.now();
    stdout.on("data", (c: Buffer) => {
      lastOutput = Date.now();
      opts.onOutput?.("stdout", c);
    });
    stderr.on("data", (c: Buffer) => {
      lastOutput = Date.now();
      opts.onOutput?.("stderr", c);
    });
    this.docker.modem.demuxStream(stream, stdout, stderr);
    if (opts.stdin !== undefined) {
      stream.write(opts.stdin);
      (stream as unknown as { end(): void }).end();
    }
    let timedOut = false;
    let idleTimedOut = false;
    let canceled = false;
    const ended = new Promise<void>((resolve) => {
      stream.on("end", resolve);
      stream.on("close", resolve);
      stream.on("error", () => resolve());
    });
    let forceClose: NodeJS.Timeout | undefined;
    const kill = async () => {
      // Docker has no API to kill an exec: kill the container; the run is over either way. A
      // container removed under the exec may leave its stream open: close it ourselves.
      forceClose ??= setTimeout(() => (stream as unknown as { destroy(): void }).destroy(), 2000);
      await this.container.kill({ signal: "SIGKILL" }).catch(() => undefined);
    };
    const watchdog = setInterval(() => {
      const now = Date.now();
      if (!timedOut && now - started > opts.timeoutMs + 10_000) {
        timedOut = true;
        void kill();
      }
      if (!idleTimedOut && opts.idleTimeoutMs && now - lastOutput > opts.idleTimeoutMs) {
        idleTimedOut = true;
        void kill();
      }
    }, 500);
    const onAbort = () => {
      canceled = true;
      void kill();
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.signal?.aborted) onAbort();
    try {
      await ended;
    } finally {
      clearInterval(watchdog);
      if (forceClose) clearTimeout(forceClose);
      opts.signal?.removeEventListener("abort", onAbort);
    }
    let exitCode = -1;
    for (let i = 0; i < 20; i++) {
      const info = await exec.inspect().catch(() => undefined);
      if (!info?.Running) {
        exitCode = info?.ExitCode ?? -1;
        break;
      }
      await delay(50);
    }
    // coreutils timeout exits 137 when it had to KILL
    if (exitCode === 137 && Date.now() - started >= opts.timeoutMs - 100) timedOut = true;
    return { exitCode, timedOut, idleTimedOut, canceled, durationMs: Date.now() - started };
  }

  async state(): Promise<ContainerState> {
    try {
      const info = await this.container.inspect();
      return { running: info.State.Running, oomKilled: info.State.OOMKilled, exitCode: info.State.ExitCode };
    } catch {
      return { running: false, oomKilled: false };
    }
  }

  async address(): Promise<string | undefined> {
    // A runner in a container reaches the task's container only on the attempt's network.
    const self = this.networkName ? await this.runnerContainer() : undefined;
    if (self && !this.joined) {
      await this.docker
        .getNetwork(this.networkName as string)
        .connect({ Container: self })
        .catch((err) => {
          if (!errorMessage(err).includes("already exists")) throw err;
        });
      this.joined = self;
    }
    const info = await this.container.inspect();
    const nets = info.NetworkSettings.Networks ?? {};
    const net = (this.networkName && nets[this.networkName]) || Object.values(nets)[0];
    return net?.IPAddress || undefined;
  }

  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    // whatever happens below, the sweep takes over what is left
    this.forget();
    await traced("docker container remove", { "container.id": this.container.id }, () =>
      this.container.remove({ force: true, v: true }),
    ).catch(() => undefined);
    if (this.networkName) {
      if (this.joined)
        await this.docker
          .getNetwork(this.networkName)
          .disconnect({ Container: this.joined, Force: true })
          .catch(() => undefined);
      await this.docker
        .getNetwork(this.networkName)
        .remove()
        .catch(() => undefined);
    }
  }
}

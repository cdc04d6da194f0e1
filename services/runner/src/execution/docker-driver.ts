import { connect } from "node:net";
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
import {
  AGENT_ALIAS,
  DEFAULT_EGRESS_NETWORK,
  EGRESS_ALIAS,
  EGRESS_GATEWAY_URL,
  EGRESS_PROXY_PORT,
  type EgressProxySettings,
  type EgressSpec,
  proxyEnvironment,
  squidConfig,
} from "./egress.js";
import { DockerEnvironmentCache, type DockerEnvironmentCacheOptions, type EnvironmentCache } from "./env-cache.js";
import { watchExec } from "./exec-watch.js";
import { openSlotWorkspace, slotBlobIds } from "./slot-git.js";

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
      /** The egress proxies of containers with a network (see ./egress.ts). */
      egress?: EgressProxySettings;
    } = {},
  ) {
    this.docker = opts.host
      ? new Docker({ host: opts.host, port: opts.port ?? 2375 })
      : new Docker({ socketPath: opts.socketPath ?? "/var/run/docker.sock" });
    if (opts.environmentCache) this.environmentCache = new DockerEnvironmentCache({ docker: this.docker, ...opts.environmentCache });
  }

  readonly environmentCache?: EnvironmentCache;

  blobIds(slot: SlotMount, sha: string, paths: readonly string[]): Promise<Record<string, string>> {
    return slotBlobIds(this.opts.git, slot, sha, paths);
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
  openWorkspace(slot: SlotMount, scratchDir: string): Promise<WorkspaceReader> {
    return openSlotWorkspace(this.opts.git, slot, scratchDir);
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

  async runtimes(): Promise<string[]> {
    const info = (await this.docker.info()) as { Runtimes?: Record<string, unknown> };
    return [...new Set(["runc", ...Object.keys(info.Runtimes ?? {})])];
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
    const egress = spec.network === "bridge" ? spec.egress : undefined;
    if (spec.network === "bridge" && !egress)
      throw new DriverError("no_egress", "a container with a network needs its egress (see execution/egress.ts)");
    const runtime = spec.runtime && spec.runtime !== "runc" ? spec.runtime : undefined;
    const name = containerName(spec.taskId, spec.candidate ? `${spec.attempt}-c${spec.candidate}` : spec.attempt);
    const networkName = egress ? name.slice(0, 60) : undefined;
    if (egress && networkName) {
      this.live.networks.add(networkName);
      await this.createInternalNetwork(networkName, labels);
    }
    const host = slotLayout(spec.slot.hostPath);
    const container = await traced(
      "docker container create",
      { "codefleet.task_id": spec.taskId, "codefleet.attempt": spec.attempt, "container.image.name": spec.image },
      () =>
        this.docker.createContainer({
          name,
          Image: spec.image,
          Cmd: spec.command ?? ["sleep", "infinity"],
          User: "1000:1000",
          WorkingDir: "/workspace",
          Env: Object.entries({ HOME: "/home/agent", ...(egress ? proxyEnvironment(egress) : {}), ...spec.env }).map(
            ([k, v]) => `${k}=${v}`,
          ),
          Labels: labels,
          ExposedPorts: Object.fromEntries((spec.exposedPorts ?? []).map((p) => [`${p}/tcp`, {}])),
          ...(networkName ? { NetworkingConfig: { EndpointsConfig: { [networkName]: { Aliases: [AGENT_ALIAS] } } } } : {}),
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
            // names outside the internal network never resolve: fail in a second, not in Docker's ten
            ...(networkName ? { DnsOptions: ["timeout:1", "attempts:1"] } : {}),
            ...(runtime ? { Runtime: runtime } : {}),
            Init: true,
            AutoRemove: false,
            LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "1" } },
          },
        }),
    ).catch(async (err) => {
      await this.removeInternalNetwork(networkName);
      throw err;
    });
    this.live.containers.add(container.id);
    const egressOf: { proxy?: Docker.Container } = {};
    const run = new DockerRun(
      this.docker,
      container,
      networkName ? { network: networkName, outer: this.egressNetwork, of: egressOf } : undefined,
      () => this.joinEgressNetwork(),
      () => {
        this.live.containers.delete(container.id);
        if (egressOf.proxy) this.live.containers.delete(egressOf.proxy.id);
        if (networkName) this.live.networks.delete(networkName);
      },
    );
    try {
      await traced("docker container start", { "container.id": container.id }, () => container.start());
      // the proxy after the container: squid resolves its peers (`agent`) when it starts
      if (egress && networkName) egressOf.proxy = await this.startEgressProxy(name, networkName, egress, labels);
    } catch (err) {
      await run.remove();
      throw err;
    }
    return run;
  }

  private get egressNetwork(): string {
    return this.opts.egress?.network ?? DEFAULT_EGRESS_NETWORK;
  }

  private egressNetworkReady: Promise<void> | undefined;

  /** The bridge every egress proxy of this engine's runners has its outer side on: made once, kept. */
  private ensureEgressNetwork(): Promise<void> {
    this.egressNetworkReady ??= (async () => {
      const name = this.egressNetwork;
      const found = await this.docker.listNetworks({ filters: { name: [name] } });
      if (found.some((n) => n.Name === name)) return;
      await this.docker
        .createNetwork({
          Name: name,
          Driver: "bridge",
          CheckDuplicate: true,
          Labels: {
            [LABELS.managed]: "true",
            ...(this.opts.egress?.deployment ? { [LABELS.deployment]: this.opts.egress.deployment } : {}),
          },
        })
        .catch((err) => {
          if (!errorMessage(err).includes("already exists")) throw err;
        });
    })().catch((err) => {
      this.egressNetworkReady = undefined;
      throw err;
    });
    return this.egressNetworkReady;
  }

  /**
   * The attempt's internal network: no address of the host on it (inhibit_ipv4), since Docker's
   * internal networks otherwise still reach every port the host listens on. The egress bridge is
   * made too when missing, and the proxy's image checked, before anything of the attempt exists.
   */
  private async createInternalNetwork(networkName: string, labels: Record<string, string>): Promise<void> {
    const settings = this.opts.egress;
    if (!settings) throw new DriverError("no_egress", "this driver was made without an egress proxy image: containers can have no network");
    if (!(await this.imageExists(settings.image)))
      throw new DriverError(
        "image_missing",
        `egress proxy image '${settings.image}' is not present on the Docker engine (build it with npm run images:offline)`,
        { retry: { kind: "never" } },
      );
    await Promise.all([
      this.ensureEgressNetwork(),
      traced("docker network create", { "codefleet.task_id": labels[LABELS.taskId] ?? "" }, () =>
        this.docker.createNetwork({
          Name: networkName,
          Driver: "bridge",
          Internal: true,
          CheckDuplicate: true,
          Options: { "com.docker.network.bridge.inhibit_ipv4": "true" },
          Labels: labels,
        }),
      ).catch((err) => {
        if (!errorMessage(err).includes("already exists")) throw err;
      }),
    ]);
  }

  /** The attempt's egress proxy on its internal network (alias `egress`), its outer side on the egress bridge. */
  private async startEgressProxy(
    name: string,
    networkName: string,
    egress: EgressSpec,
    labels: Record<string, string>,
  ): Promise<Docker.Container> {
    const settings = this.opts.egress as EgressProxySettings;
    const proxy = await traced("docker container create", { "container.image.name": settings.image, "codefleet.role": "egress" }, () =>
      this.docker.createContainer({
        name: `${name}-egress`.slice(0, 128),
        Image: settings.image,
        Env: [`SQUID_CONF=${squidConfig(egress)}`],
        Labels: { ...labels, [LABELS.role]: "egress" },
        HostConfig: {
          NetworkMode: this.egressNetwork,
          ...(settings.extraHosts?.length ? { ExtraHosts: [...settings.extraHosts] } : {}),
          Memory: 256 * 1024 * 1024,
          MemorySwap: 256 * 1024 * 1024,
          NanoCpus: 500_000_000,
          PidsLimit: 64,
          CapDrop: ["ALL"],
          SecurityOpt: ["no-new-privileges:true"],
          ReadonlyRootfs: true,
          Tmpfs: { "/tmp": "rw,nosuid,nodev,noexec,size=64m" },
          Init: true,
          LogConfig: { Type: "json-file", Config: { "max-size": "5m", "max-file": "1" } },
        },
      }),
    );
    this.live.containers.add(proxy.id);
    try {
      await this.docker.getNetwork(networkName).connect({ Container: proxy.id, EndpointConfig: { Aliases: [EGRESS_ALIAS] } });
      await traced("docker container start", { "container.id": proxy.id, "codefleet.role": "egress" }, () => proxy.start());
    } catch (err) {
      this.live.containers.delete(proxy.id);
      await proxy.remove({ force: true }).catch(() => undefined);
      throw err;
    }
    return proxy;
  }

  private async removeInternalNetwork(networkName: string | undefined): Promise<void> {
    if (!networkName) return;
    this.live.networks.delete(networkName);
    await this.docker
      .getNetwork(networkName)
      .remove()
      .catch(() => undefined);
  }

  private joinedEgress: Promise<void> | undefined;

  /** A runner in a container (compose) reaches the proxies' outer side by joining the egress bridge, once. */
  private joinEgressNetwork(): Promise<void> {
    this.joinedEgress ??= (async () => {
      const self = await this.selfContainer();
      if (!self) return;
      await this.ensureEgressNetwork();
      await this.docker
        .getNetwork(this.egressNetwork)
        .connect({ Container: self })
        .catch((err) => {
          if (!/already exists|already attached/.test(errorMessage(err))) throw err;
        });
    })().catch((err) => {
      this.joinedEgress = undefined;
      throw err;
    });
    return this.joinedEgress;
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
  private proxyReady: Promise<void> | undefined;

  constructor(
    private readonly docker: Docker,
    private readonly container: Docker.Container,
    /** The internal network and, once it started, the egress proxy (`of.proxy`). */
    private readonly egress: { network: string; outer: string; of: { proxy?: Docker.Container } } | undefined,
    private readonly joinEgressNetwork: () => Promise<void>,
    private readonly forget: () => void,
  ) {}

  get id(): string {
    return this.container.id;
  }

  get gatewayUrl(): string | undefined {
    return this.egress ? EGRESS_GATEWAY_URL : undefined;
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
    const watch = watchExec(opts, { startedAt: started, lastOutputAt: () => lastOutput, kill });
    try {
      await ended;
    } finally {
      watch.stop();
      if (forceClose) clearTimeout(forceClose);
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
    if (exitCode === 137 && Date.now() - started >= opts.timeoutMs - 100) watch.stops.timedOut = true;
    return { exitCode, ...watch.stops, durationMs: Date.now() - started };
  }

  async state(): Promise<ContainerState> {
    try {
      const info = await this.container.inspect();
      return { running: info.State.Running, oomKilled: info.State.OOMKilled, exitCode: info.State.ExitCode };
    } catch {
      return { running: false, oomKilled: false };
    }
  }

  /**
   * The egress proxy's address on its outer side: it forwards the agent's server ports to the
   * container (the runner never joins the task's internal network). Waits until the proxy answers.
   */
  async address(): Promise<string | undefined> {
    const proxy = this.egress?.of.proxy;
    if (!this.egress || !proxy) return undefined;
    await this.joinEgressNetwork();
    const info = await proxy.inspect();
    const ip = info.NetworkSettings.Networks?.[this.egress.outer]?.IPAddress || undefined;
    if (ip) {
      this.proxyReady ??= waitForPort(ip, EGRESS_PROXY_PORT, 15_000);
      await this.proxyReady;
    }
    return ip;
  }

  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    // whatever happens below, the sweep takes over what is left
    this.forget();
    await traced("docker container remove", { "container.id": this.container.id }, () =>
      this.container.remove({ force: true, v: true }),
    ).catch(() => undefined);
    if (this.egress) {
      await this.egress.of.proxy?.remove({ force: true }).catch(() => undefined);
      await this.docker
        .getNetwork(this.egress.network)
        .remove()
        .catch(() => undefined);
    }
  }
}

/** Resolves once something accepts TCP connections at host:port (or rejects after `withinMs`). */
async function waitForPort(host: string, port: number, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port, timeout: 1000 });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
      socket.once("timeout", () => {
        socket.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new DriverError("egress_unready", `the task's egress proxy did not answer at ${host}:${port}`);
    await delay(50);
  }
}

/**
 * The execution-driver seam: the phase logic knows a run has a container it can exec into, not
 * how that container is run. `docker` is implemented; a Kubernetes Job driver would implement the
 * same interface for multi-machine fleets.
 */

export type RunContainerSpec = {
  taskId: string;
  attempt: number;
  runnerId: string;
  image: string;
  /**
   * Host paths of the slot's parts: the working tree (mounted read-write at /workspace), and the
   * slot's git objects and the tree's index (read-only, for the agent's own git). The slot's git
   * directory itself is never mounted.
   */
  workspace: { tree: string; baseObjects: string; baseIndex: string };
  memoryMb: number;
  cpus: number;
  pidsLimit: number;
  /** "bridge": a dedicated network for this run; "none": no network at all. */
  network: "bridge" | "none";
  /** Plain environment of the container (no secrets: those go to individual execs). */
  env: Record<string, string>;
  /** The deployment label value (see LABELS.deployment). */
  deployment?: string;
  /** Extra labels on everything created for the run. */
  labels?: Record<string, string>;
  /** Container entrypoint command; default keeps the container idle for execs. */
  command?: string[];
  /** Ports of the command a runner needs to reach over the run's network (e.g. an agent server). */
  exposedPorts?: number[];
  /** Extra /etc/hosts entries, e.g. host.docker.internal:host-gateway for a model server on the host. */
  extraHosts?: string[];
};

export type ExecOptions = {
  env?: Record<string, string>;
  workdir?: string;
  /** Wall-clock limit; the exec is killed (SIGKILL) after it. */
  timeoutMs: number;
  /** Kill when there was no output for this long (agents known to hang). */
  idleTimeoutMs?: number;
  stdin?: string | Buffer;
  onOutput?: (stream: "stdout" | "stderr", chunk: Buffer) => void;
  signal?: AbortSignal;
};

export type ExecResult = {
  exitCode: number;
  timedOut: boolean;
  idleTimedOut: boolean;
  canceled: boolean;
  durationMs: number;
};

export type ContainerState = { running: boolean; oomKilled: boolean; exitCode?: number };

export interface RunHandle {
  readonly id: string;
  exec(cmd: string[], opts: ExecOptions): Promise<ExecResult>;
  state(): Promise<ContainerState>;
  /** Address of the container on the run's network, for reaching a server inside it. */
  address(): Promise<string | undefined>;
  /** Stops and removes the container and the run's network. Idempotent. */
  remove(): Promise<void>;
}

export interface ExecutionDriver {
  readonly name: string;
  createRun(spec: RunContainerSpec): Promise<RunHandle>;
  /** Removes containers and networks left by earlier attempts of a task (found by labels). */
  removeStale(taskId: string, keepAttempt?: number): Promise<number>;
  /** Count of containers this runner manages right now. */
  running(runnerId: string): Promise<number>;
  /**
   * Removes the containers and networks of this runner that belong to no attempt in `active`
   * (task id and attempt, "tsk_…/2"): the orphans of a runner that died, swept at start and
   * periodically. Returns how many containers went.
   */
  sweep(runnerId: string, active: ReadonlySet<string>): Promise<number>;
  ping(): Promise<void>;
  imageExists(image: string): Promise<boolean>;
}

export const LABELS = {
  managed: "codefleet.managed",
  taskId: "codefleet.task-id",
  attempt: "codefleet.attempt",
  runnerId: "codefleet.runner-id",
  /** The deployment (compose project or namespace) that made it: `stack:down` removes by it. */
  deployment: "codefleet.deployment",
} as const;

export const attemptKey = (taskId: string, attempt: number | string) => `${taskId}/${attempt}`;

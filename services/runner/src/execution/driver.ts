import type { AllocateResult } from "@codefleet/contracts";
import type { WorkspaceGit } from "../workspace/workspace-git.js";
import type { EgressSpec } from "./egress.js";
import type { EnvironmentCache } from "./env-cache.js";

/**
 * The execution-driver seam: phases know a run has a container they can exec into and a workspace
 * they can read back after it, not how either is provided. `docker` is implemented; a Kubernetes
 * driver implements the same interface (pods, and the slot on a volume) without touching phases.
 */

/** A workspace slot as repo-pool hands it out; the driver alone knows how a container gets it. */
export type SlotMount = Pick<AllocateResult, "slotId" | "path" | "hostPath">;

/** What the runner reads of a workspace once nothing of the task runs: staging, commit, diff, push. */
export type WorkspaceReader = Pick<
  WorkspaceGit,
  "stage" | "commit" | "diff" | "addedText" | "commitMessage" | "remoteBranch" | "fetchBranch" | "push"
>;

export type RunContainerSpec = {
  /** The owner: a task attempt, or a warm-pool reservation that an attempt adopts later. */
  taskId: string;
  attempt: number;
  /** One of a best-of-N attempt's candidates (2..N; candidate 1 is the attempt's own container). */
  candidate?: number;
  runnerId: string;
  image: string;
  /**
   * The slot: its working tree is mounted read-write at /workspace, its git objects and the tree's
   * index read-only (for the agent's own git). The slot's git directory itself is never mounted.
   */
  slot: SlotMount;
  memoryMb: number;
  cpus: number;
  pidsLimit: number;
  /** "bridge": a network of its own, behind the attempt's egress proxy (`egress`); "none": no network at all. */
  network: "bridge" | "none";
  /** What leaves the container when it has a network: see ./egress.ts. */
  egress?: EgressSpec;
  /** The OCI runtime (`runc` when absent; `runsc` for gVisor, where the engine has it). */
  runtime?: string;
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
  /** A warm container now works for this attempt: it is named after it (earlier attempts' clean-up finds it). */
  adopt(owner: { taskId: string; attempt: number }): Promise<void>;
  exec(cmd: string[], opts: ExecOptions): Promise<ExecResult>;
  state(): Promise<ContainerState>;
  /** Where the runner reaches a server inside the container (its ports are forwarded by the egress proxy). */
  address(): Promise<string | undefined>;
  /** The runner's LLM gateway as the container reaches it, when it has a way to. */
  readonly gatewayUrl?: string;
  /** Stops and removes the container and the run's network. Idempotent. */
  remove(): Promise<void>;
}

export interface ExecutionDriver {
  readonly name: string;
  createRun(spec: RunContainerSpec): Promise<RunHandle>;
  /**
   * Opens a slot's working tree for reading as data (into the attempt's scratch store in
   * `scratchDir`), once the attempt's container is gone.
   */
  openWorkspace(slot: SlotMount, scratchDir: string): Promise<WorkspaceReader>;
  /**
   * Blob ids of files at a commit of the slot's trusted git (lockfiles keying the environment
   * cache); a path that is not a file there has none.
   */
  blobIds(slot: SlotMount, sha: string, paths: readonly string[]): Promise<Record<string, string>>;
  /** The id of an image (what it is, not what it is called). */
  imageId(image: string): Promise<string>;
  /** Where setups' results are kept for later tasks, when the driver has such a place. */
  readonly environmentCache?: EnvironmentCache;
  /** Removes containers and networks left by earlier attempts of a task (found by labels or name). */
  removeStale(taskId: string, keepAttempt?: number): Promise<number>;
  /** Count of containers this runner manages right now. */
  running(runnerId: string): Promise<number>;
  /**
   * Removes the containers and networks of this runner that this driver did not make (or that it
   * made and no longer tracks): the orphans of a runner that died, swept at start and
   * periodically. Returns how many containers went.
   */
  sweep(runnerId: string): Promise<number>;
  ping(): Promise<void>;
  imageExists(image: string): Promise<boolean>;
  /** The container runtimes the driver can run (absent: only the default, `runc`). */
  runtimes?(): Promise<string[]>;
}

export const LABELS = {
  managed: "codefleet.managed",
  taskId: "codefleet.task-id",
  attempt: "codefleet.attempt",
  runnerId: "codefleet.runner-id",
  /** The deployment (compose project or namespace) that made it: `stack:down` removes by it. */
  deployment: "codefleet.deployment",
  /** `egress` on an attempt's egress proxy. */
  role: "codefleet.role",
} as const;

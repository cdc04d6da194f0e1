import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { lchown, lstat, mkdir, readdir, readFile, rm, rmdir, stat } from "node:fs/promises";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { CONTAINER_BASE_INDEX, CONTAINER_BASE_OBJECTS, CONTAINER_WORKSPACE, CodefleetError, slotLayout } from "@codefleet/contracts";
import type { GitRunner } from "@codefleet/repo-pool/git";
import type {
  ContainerState,
  ExecOptions,
  ExecResult,
  ExecutionDriver,
  RunContainerSpec,
  RunHandle,
  SlotMount,
  WorkspaceReader,
} from "./driver.js";
import { openSlotWorkspace, slotBlobIds } from "./slot-git.js";

/**
 * The local-process driver: every phase of a task runs as an ordinary process on the runner's
 * host, in the slot's working tree, for single-user development without Docker.
 *
 * IT OFFERS NO ISOLATION. The agent runs as the runner's user (as `user`, 1000:1000 by default,
 * when the runner is root: never as root), with that user's view of the host: it can read the
 * host's files (the slot's trusted git directory included) and, as the runner's user, the runner's
 * own process (its environment and its secrets, through /proc), reach any network, use all memory
 * and CPU. Nothing of a task's spec that asks for confinement is enforced: `network: "none"`, memory,
 * CPU and pids limits are ignored; only the wall-clock and idle timeouts apply. The runner refuses
 * it unless the operator turns it on explicitly (EXECUTION_DRIVER=local with
 * LOCAL_DRIVER_ALLOW_UNISOLATED=true): run only agents and repositories you trust as you trust
 * your own shell.
 *
 * What it does keep of a container:
 * - The container paths phases and agents use are mapped to the run's places on the host, in
 *   every argument, the working directory and environment values (see `localPathMap`):
 *   /workspace is the slot's tree, the slot's objects and index are where the agent's own git
 *   (`setUpAgentGit`) finds them, /tmp/codefleet and /home/agent are the run's own directories.
 * - A minimal environment: PATH, HOME and TMPDIR of the run, the spec's and the exec's variables;
 *   never the runner's own environment is handed over (hygiene, not a boundary: see above).
 * - Each exec is a process group of its own: a timeout, an idle timeout or an abort kills the
 *   whole group. Every process also carries an owner marker in its environment
 *   (CODEFLEET_LOCAL_OWNER), by which descendants that left the group (setsid, daemons) are found
 *   in /proc and killed too, on Linux, unless they cleared their environment.
 * - The image is not used (imageExists is always true, imageId a constant); there is no warm pool
 *   and no environment cache.
 *
 * Runs are tracked in memory. A runner that restarts finds its predecessor's leftovers only by
 * what is on disk (run directories) and, on Linux, by the owner marker of live processes: its
 * sweep removes both. A process of a dead runner that cleared its environment is not found.
 */

export class LocalDriverError extends CodefleetError {
  override readonly name = "LocalDriverError";
}

export const LOCAL_IMAGE_ID = "local";
/** Environment variable every process of a local run carries: `<runner key>:<run id>:<exec number>`. */
export const OWNER_VAR = "CODEFLEET_LOCAL_OWNER";
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** Host paths are pasted into shell scripts where the container path was: nothing that a shell would read twice. */
const SAFE_PATH = /^\/[A-Za-z0-9_./-]*$/;
const FORCE_CLOSE_MS = 2000;
/** setTimeout's limit (a longer delay fires at once). */
const MAX_TIMER_MS = 2_147_483_647;

export type LocalUser = { uid: number; gid: number };

export type LocalProcessDriverOptions = {
  /** The runner's hardened git (never root), and the owner of scratch dirs when the runner is root: to read trees back. */
  git?: { runner: GitRunner; owner?: { uid: number; gid: number } };
  /** Where run directories (HOME and TMPDIR of each run) go; default `<tmpdir>/codefleet-local`. */
  runRoot?: string;
  /** PATH of every process (the runner's own, typically); default the usual system directories. */
  path?: string;
  /** Who the processes run as when the runner is root (repo-pool's SLOT_UID/SLOT_GID); ignored otherwise. */
  user?: LocalUser;
};

/** The container paths a run's commands may name, and where they are for a local run. */
export function localPathMap(slotRoot: string, runDir: string): Record<string, string> {
  const slot = slotLayout(slotRoot);
  return {
    [CONTAINER_WORKSPACE]: slot.tree,
    [CONTAINER_BASE_OBJECTS]: join(slot.gitDir, "objects"),
    [CONTAINER_BASE_INDEX]: slot.index,
    "/tmp/codefleet": join(runDir, "tmp", "codefleet"),
    "/home/agent": join(runDir, "home"),
  };
}

/**
 * Replaces whole container paths in a string (an argument, a script, an environment value):
 * `/workspace` and `/workspace/x` are, `/workspaces` and `/a/workspace` are not.
 */
export function containerPathRewriter(map: Record<string, string>): (s: string) => string {
  const keys = Object.keys(map).sort((a, b) => b.length - a.length);
  if (keys.length === 0) return (s) => s;
  const alternatives = keys.map((k) => k.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
  const re = new RegExp(`(?<![A-Za-z0-9_.~/-])(${alternatives})(?![A-Za-z0-9_.-])`, "g");
  return (s) => s.replace(re, (m) => map[m] ?? m);
}

/** A fixed-length, path-safe key of a runner id (run directories and owner markers are grouped by it). */
export function runnerKey(runnerId: string): string {
  return createHash("sha256").update(runnerId).digest("hex").slice(0, 16);
}

/** The exit code a shell reports for a process killed by `signal`. */
function signalExitCode(signal: NodeJS.Signals | null): number {
  const n = signal ? constants.signals[signal] : undefined;
  return n === undefined ? -1 : 128 + n;
}

/** Whether an executable of this name is in one of PATH's directories (as far as the runner can see). */
function onPath(file: string, path: string): boolean {
  return path.split(":").some((dir) => dir !== "" && existsSync(join(dir, file)));
}

function killGroup(pgid: number | undefined): void {
  if (!pgid) return;
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // gone already
  }
}

/**
 * Processes whose owner marker starts with `prefix`, from /proc (Linux; elsewhere none). Reads
 * the environment each process started with, a bounded number at a time.
 */
export async function findMarkedProcesses(prefix: string): Promise<{ pid: number; owner: string }[]> {
  let names: string[];
  try {
    names = (await readdir("/proc")).filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid);
  } catch {
    return [];
  }
  const needle = `${OWNER_VAR}=${prefix}`;
  const found: { pid: number; owner: string }[] = [];
  for (let i = 0; i < names.length; i += 64) {
    await Promise.all(
      names.slice(i, i + 64).map(async (n) => {
        const environ = await readFile(`/proc/${n}/environ`, "latin1").catch(() => "");
        if (!environ.includes(needle)) return;
        for (const entry of environ.split("\0")) {
          if (entry.startsWith(needle)) {
            found.push({ pid: Number(n), owner: entry.slice(OWNER_VAR.length + 1) });
            return;
          }
        }
      }),
    );
  }
  return found;
}

async function killMarked(prefix: string, exact = false): Promise<string[]> {
  const owners: string[] = [];
  for (const p of await findMarkedProcesses(prefix)) {
    if (exact && p.owner !== prefix) continue;
    try {
      process.kill(p.pid, "SIGKILL");
      owners.push(p.owner);
    } catch {
      // gone already
    }
  }
  return owners;
}

/** Runs a short helper command (as `user` when given) and waits for it; never throws. */
function runQuietly(file: string, args: string[], user: LocalUser | undefined, path: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      stdio: "ignore",
      env: { PATH: path },
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    child.on("error", () => resolve(-1));
    child.on("close", (code) => resolve(code ?? -1));
  });
}

type RunEntry = { run: LocalRun; runnerId: string };

export class LocalProcessDriver implements ExecutionDriver {
  readonly name = "local";
  private readonly runRoot: string;
  private readonly path: string;
  /** Set only when the runner is root: the processes run as this user, never as root. */
  private readonly user: LocalUser | undefined;
  private readonly runs = new Map<string, RunEntry>();

  constructor(private readonly opts: LocalProcessDriverOptions = {}) {
    this.runRoot = opts.runRoot ?? join(tmpdir(), "codefleet-local");
    this.path = opts.path || DEFAULT_PATH;
    this.user = process.getuid?.() === 0 ? (opts.user ?? { uid: 1000, gid: 1000 }) : undefined;
    if (this.user && (this.user.uid === 0 || this.user.gid === 0))
      throw new LocalDriverError("local_root", "the local driver never runs tasks as root: give it an unprivileged user", {
        retry: { kind: "never" },
      });
  }

  /** The run root, made if needed: a directory of the runner's own user (not a symlink, nobody else's). */
  private async ensureDir(dir: string, mode: number): Promise<void> {
    await mkdir(dir, { recursive: true, mode });
    const st = await lstat(dir);
    const uid = process.getuid?.();
    if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0)
      throw new LocalDriverError(
        "local_run_root",
        `the local driver's run directory ${dir} must be a directory of the runner's user that nobody else can write`,
        { retry: { kind: "never" } },
      );
  }

  async ping(): Promise<void> {
    if (!SAFE_PATH.test(this.runRoot))
      throw new LocalDriverError("local_run_root", `the local driver's run directory ${this.runRoot} has characters a shell would read`, {
        retry: { kind: "never" },
      });
    await this.ensureDir(this.runRoot, 0o755);
  }

  async imageExists(_image: string): Promise<boolean> {
    return true;
  }

  async imageId(_image: string): Promise<string> {
    return LOCAL_IMAGE_ID;
  }

  openWorkspace(slot: SlotMount, scratchDir: string): Promise<WorkspaceReader> {
    return openSlotWorkspace(this.opts.git, slot, scratchDir);
  }

  blobIds(slot: SlotMount, sha: string, paths: readonly string[]): Promise<Record<string, string>> {
    return slotBlobIds(this.opts.git, slot, sha, paths);
  }

  async running(runnerId: string): Promise<number> {
    let n = 0;
    for (const e of this.runs.values()) if (e.runnerId === runnerId) n++;
    return n;
  }

  async removeStale(taskId: string, keepAttempt?: number): Promise<number> {
    let removed = 0;
    for (const { run } of [...this.runs.values()]) {
      if (run.owner.taskId !== taskId || run.owner.attempt === keepAttempt) continue;
      await run.remove();
      removed++;
    }
    return removed;
  }

  /**
   * Removes what runs of this runner left that no live run owns: processes still carrying their
   * owner marker (Linux) and run directories. Returns how many runs went.
   */
  async sweep(runnerId: string): Promise<number> {
    const key = runnerKey(runnerId);
    const live = new Set([...this.runs.keys()]);
    const gone = new Set<string>();
    for (const p of await findMarkedProcesses(`${key}:`)) {
      const runId = p.owner.split(":")[1] ?? "";
      if (live.has(runId)) continue;
      try {
        process.kill(p.pid, "SIGKILL");
        gone.add(runId);
      } catch {
        // gone already
      }
    }
    const dir = join(this.runRoot, key);
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (live.has(name)) continue;
      await this.removeDir(join(dir, name));
      gone.add(name);
    }
    return gone.size;
  }

  /**
   * Removes a run directory. The agent's files are removed as the agent's user when the runner is
   * root: root never walks a tree the agent can change under it (a directory swapped for a
   * symlink). The run directory itself sits in a directory of the runner's.
   */
  private async removeDir(dir: string): Promise<void> {
    if (this.user) {
      await runQuietly("rm", ["-rf", "--", dir], this.user, this.path);
      await rmdir(dir).catch(() => undefined);
    } else {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  async createRun(spec: RunContainerSpec): Promise<RunHandle> {
    const slotRoot = spec.slot.path;
    if (!SAFE_PATH.test(slotRoot))
      throw new LocalDriverError(
        "local_unsafe_path",
        `the slot path ${slotRoot} has characters a shell would read: the local driver cannot use it`,
        {
          retry: { kind: "never" },
        },
      );
    const tree = slotLayout(slotRoot).tree;
    const st = await stat(tree).catch(() => undefined);
    if (!st?.isDirectory())
      throw new LocalDriverError("local_no_tree", `the slot ${spec.slot.slotId} has no working tree at ${tree}`, {
        retry: { kind: "backoff" },
      });
    await this.ping();
    const key = runnerKey(spec.runnerId);
    const keyDir = join(this.runRoot, key);
    await this.ensureDir(keyDir, 0o755);
    const id = `local-${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
    const runDir = join(keyDir, id);
    const run = new LocalRun({
      id,
      owner: { taskId: spec.taskId, attempt: spec.attempt },
      markerPrefix: `${key}:${id}:`,
      runDir,
      slotRoot,
      path: this.path,
      user: this.user,
      env: spec.env,
      forget: () => this.runs.delete(id),
      removeDir: (d) => this.removeDir(d),
    });
    // tracked before anything is on disk: a concurrent sweep never takes it for an orphan
    this.runs.set(id, { run, runnerId: spec.runnerId });
    try {
      // made by the runner in a directory nobody else can write, then handed to the agent's
      // user, the run directory last: until then nothing in it can be swapped under root
      await mkdir(runDir, { mode: 0o700 });
      for (const d of ["home", "tmp"]) await mkdir(join(runDir, d), { mode: 0o700 });
      if (this.user) for (const d of ["home", "tmp", ""]) await lchown(join(runDir, d), this.user.uid, this.user.gid);
    } catch (err) {
      await run.remove();
      throw err;
    }
    return run;
  }
}

type LocalRunInit = {
  id: string;
  owner: { taskId: string; attempt: number };
  markerPrefix: string;
  runDir: string;
  slotRoot: string;
  path: string;
  user: LocalUser | undefined;
  env: Record<string, string>;
  forget: () => void;
  removeDir: (dir: string) => Promise<void>;
};

type LiveExec = { kill: () => void };

class LocalRun implements RunHandle {
  readonly id: string;
  owner: { taskId: string; attempt: number };
  private removed = false;
  private seq = 0;
  private readonly execs = new Set<LiveExec>();
  private readonly rewrite: (s: string) => string;

  constructor(private readonly o: LocalRunInit) {
    this.id = o.id;
    this.owner = o.owner;
    this.rewrite = containerPathRewriter(localPathMap(o.slotRoot, o.runDir));
  }

  async adopt(owner: { taskId: string; attempt: number }): Promise<void> {
    this.owner = owner;
  }

  private environment(extra: Record<string, string> | undefined, marker: string): Record<string, string> {
    const env: Record<string, string> = {
      PATH: this.o.path,
      HOME: join(this.o.runDir, "home"),
      TMPDIR: join(this.o.runDir, "tmp"),
      // the agent's git stops at its tree: never a repository around the slot
      GIT_CEILING_DIRECTORIES: this.o.slotRoot,
    };
    for (const [k, v] of Object.entries({ ...this.o.env, ...(extra ?? {}) })) env[k] = this.rewrite(v);
    env[OWNER_VAR] = marker;
    return env;
  }

  async exec(cmd: string[], opts: ExecOptions): Promise<ExecResult> {
    if (this.removed) throw new LocalDriverError("run_removed", `run ${this.id} was removed`, { retry: { kind: "never" } });
    const started = Date.now();
    const [file, ...args] = cmd.map(this.rewrite);
    if (!file) throw new LocalDriverError("empty_command", "no command to run", { retry: { kind: "never" } });
    const flags = { timedOut: false, idleTimedOut: false, canceled: false };
    if (opts.signal?.aborted) return { exitCode: -1, ...flags, canceled: true, durationMs: 0 };
    const cwd = this.rewrite(opts.workdir ?? CONTAINER_WORKSPACE);
    const failEarly = (exitCode: number, message: string): ExecResult => {
      opts.onOutput?.("stderr", Buffer.from(`${message}\n`));
      return { exitCode, ...flags, durationMs: Date.now() - started };
    };
    if (!(await stat(cwd).catch(() => undefined))?.isDirectory())
      return failEarly(126, `codefleet: no working directory ${opts.workdir ?? CONTAINER_WORKSPACE}`);
    if (this.removed) throw new LocalDriverError("run_removed", `run ${this.id} was removed`, { retry: { kind: "never" } });
    const marker = `${this.o.markerPrefix}${++this.seq}`;
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        cwd,
        env: this.environment(opts.env, marker),
        detached: true,
        stdio: [opts.stdin !== undefined ? "pipe" : "ignore", "pipe", "pipe"],
        ...(this.o.user ? { uid: this.o.user.uid, gid: this.o.user.gid } : {}),
      });
    } catch (err) {
      return failEarly(126, `codefleet: cannot start ${cmd[0]}: ${(err as Error).message}`);
    }
    return new Promise<ExecResult>((resolve) => {
      let lastOutput = Date.now();
      let done = false;
      let forceClose: NodeJS.Timeout | undefined;
      const live: LiveExec = {
        kill: () => {
          killGroup(child.pid);
          void killMarked(marker, true);
          // a process that left the group and cleared its marker may hold the pipes open
          forceClose ??= setTimeout(() => {
            child.stdout?.destroy();
            child.stderr?.destroy();
          }, FORCE_CLOSE_MS);
        },
      };
      this.execs.add(live);
      const wall = setTimeout(
        () => {
          if (done) return;
          flags.timedOut = true;
          live.kill();
        },
        Math.min(opts.timeoutMs, MAX_TIMER_MS),
      );
      const idleMs = opts.idleTimeoutMs;
      const idle = idleMs
        ? setInterval(
            () => {
              if (done || flags.idleTimedOut || Date.now() - lastOutput <= idleMs) return;
              flags.idleTimedOut = true;
              live.kill();
            },
            Math.min(1000, Math.max(50, Math.floor(idleMs / 4))),
          )
        : undefined;
      const onAbort = () => {
        if (done) return;
        flags.canceled = true;
        live.kill();
      };
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      const finish = (exitCode: number) => {
        if (done) return;
        done = true;
        clearTimeout(wall);
        if (idle) clearInterval(idle);
        if (forceClose) clearTimeout(forceClose);
        opts.signal?.removeEventListener("abort", onAbort);
        this.execs.delete(live);
        resolve({ exitCode, ...flags, durationMs: Date.now() - started });
      };
      child.stdout?.on("data", (c: Buffer) => {
        lastOutput = Date.now();
        opts.onOutput?.("stdout", c);
      });
      child.stderr?.on("data", (c: Buffer) => {
        lastOutput = Date.now();
        opts.onOutput?.("stderr", c);
      });
      if (opts.stdin !== undefined && child.stdin) {
        // a command that does not read its input closes the pipe: not an error of the runner's
        child.stdin.on("error", () => undefined);
        child.stdin.end(opts.stdin);
      }
      child.on("error", (err: NodeJS.ErrnoException) => {
        if (child.pid !== undefined) return;
        // what a shell says when it cannot run a command (execvp says EACCES when a directory
        // of PATH is closed to the user, even if the command is nowhere)
        const notFound = err.code === "ENOENT" || (err.code === "EACCES" && !file.includes("/") && !onPath(file, this.o.path));
        opts.onOutput?.("stderr", Buffer.from(`codefleet: ${cmd[0]}: ${notFound ? "command not found" : err.message}\n`));
        finish(notFound ? 127 : 126);
      });
      child.on("close", (code, signal) => finish(code ?? signalExitCode(signal)));
    });
  }

  async state(): Promise<ContainerState> {
    // there is no container to die or be OOM-killed: the run is up until it is removed
    return { running: !this.removed, oomKilled: false };
  }

  /** An agent server of a local run listens on the runner's host. */
  async address(): Promise<string | undefined> {
    return "127.0.0.1";
  }

  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    this.o.forget();
    for (const e of this.execs) e.kill();
    // background processes of finished execs, and descendants that left their group
    await killMarked(this.o.markerPrefix);
    await this.o.removeDir(this.o.runDir);
  }
}

import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { slotLayout } from "@codefleet/contracts";
import { SecretMasker } from "@codefleet/platform/runtime";
import { ASKPASS_SCRIPT, createGitRunner, GLOBAL_GIT_CONFIG } from "@codefleet/repo-pool/git";
import { waitFor } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_BRANCH, setUpAgentGit } from "../workspace/agent-git.js";
import type { ExecOptions, RunContainerSpec, RunHandle } from "./driver.js";
import { LocalProcessDriver, OWNER_VAR, runnerKey } from "./local-process-driver.js";

const execFileP = promisify(execFile);
const isRoot = process.getuid?.() === 0;
/** Who task processes run as: the runner's user, or 1000 (never root) when the runner is root. */
const AGENT = isRoot ? { uid: 1000, gid: 1000 } : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

let root: string;
let runRoot: string;
let baseSha: string;
const slotRoot = () => join(root, "slot-1");

async function gitIn(env: Record<string, string>, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP("git", ["-c", "safe.directory=*", ...args], {
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@example.com",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@example.com",
      ...env,
    },
  });
  return stdout.trim();
}

/** A slot as repo-pool lays it out: a bare git directory, the working tree and its index beside it. */
async function makeSlot(path: string): Promise<string> {
  const l = slotLayout(path);
  mkdirSync(l.tree, { recursive: true });
  mkdirSync(l.indexDir, { recursive: true });
  await execFileP("git", ["init", "--quiet", "--bare", "--initial-branch=main", l.gitDir]);
  writeFileSync(join(l.tree, "README.md"), "# sample\n");
  writeFileSync(join(l.tree, "package-lock.json"), "{}\n");
  const env = { GIT_DIR: l.gitDir, GIT_WORK_TREE: l.tree, GIT_INDEX_FILE: l.index };
  await gitIn(env, "add", "-A");
  const tree = await gitIn(env, "write-tree");
  const sha = await gitIn(env, "commit-tree", tree, "-m", "base");
  await gitIn(env, "update-ref", "HEAD", sha);
  if (isRoot) await execFileP("chown", ["-R", `${AGENT.uid}:${AGENT.gid}`, l.tree, l.indexDir]);
  return sha;
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "cf-local-driver-"));
  chmodSync(root, 0o755); // the agents' user reaches the slot
  runRoot = join(root, "runs");
  baseSha = await makeSlot(slotRoot());
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

function spec(over: Partial<RunContainerSpec> = {}): RunContainerSpec {
  return {
    taskId: "01TASKLOCALDRIVER",
    attempt: 1,
    runnerId: "runner-local-test",
    image: "ignored:latest",
    slot: { slotId: "slot-1", path: slotRoot(), hostPath: "/elsewhere/slot-1" },
    memoryMb: 512,
    cpus: 1,
    pidsLimit: 64,
    network: "none",
    env: { FROM_SPEC: "spec-value" },
    ...over,
  };
}

function newDriver(): LocalProcessDriver {
  return new LocalProcessDriver({ runRoot, path: process.env.PATH ?? "/usr/bin:/bin" });
}

/** Runs a command and collects its output (small outputs only: this is a test). */
async function run(r: RunHandle, cmd: string[], opts: Partial<ExecOptions> = {}) {
  let stdout = "";
  let stderr = "";
  const res = await r.exec(cmd, {
    timeoutMs: 20_000,
    ...opts,
    onOutput: (s, c) => {
      if (s === "stdout") stdout += c.toString();
      else stderr += c.toString();
      opts.onOutput?.(s, c);
    },
  });
  return { ...res, stdout, stderr };
}

/** A process is gone when it is not there or only a zombie waiting for a parent that does not reap. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function readPid(file: string): Promise<number> {
  let pid = 0;
  await waitFor(`pid in ${file}`, async () => {
    pid = Number((await readFile(file, "utf8").catch(() => "")).trim());
    return pid > 0;
  });
  return pid;
}

describe("local driver: processes in the slot's tree", () => {
  let driver: LocalProcessDriver;
  let r: RunHandle;
  beforeAll(async () => {
    driver = newDriver();
    await driver.ping();
    r = await driver.createRun(spec());
  });
  afterAll(async () => {
    await r.remove();
  });

  it("runs a real command in the working tree, as the agents' user (never root)", async () => {
    const res = await run(r, ["sh", "-c", "pwd; id -u; echo made > made.txt; cat /workspace/made.txt"]);
    expect(res).toMatchObject({ exitCode: 0, timedOut: false, idleTimedOut: false, canceled: false });
    expect(res.stdout.split("\n")).toEqual([slotLayout(slotRoot()).tree, String(AGENT.uid), "made", ""]);
    expect(readFileSync(join(slotLayout(slotRoot()).tree, "made.txt"), "utf8")).toBe("made\n");
    rmSync(join(slotLayout(slotRoot()).tree, "made.txt"));
  });

  it("gives the spec's and the exec's variables, a HOME and TMPDIR of the run, and none of the runner's environment", async () => {
    process.env.CODEFLEET_SECRET_X = "runner-secret-value";
    try {
      const res = await run(r, ["sh", "-c", "env"], { env: { FROM_EXEC: "exec-value", XDG_CACHE_HOME: "/home/agent/.cache" } });
      expect(res.exitCode).toBe(0);
      const env = Object.fromEntries(
        res.stdout
          .split("\n")
          .filter(Boolean)
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
      );
      expect(env.FROM_SPEC).toBe("spec-value");
      expect(env.FROM_EXEC).toBe("exec-value");
      expect(env.PATH).toBe(process.env.PATH);
      expect(env.HOME).toMatch(new RegExp(`^${runRoot}/${runnerKey("runner-local-test")}/local-[^/]+/home$`));
      expect(env.TMPDIR).toBe(env.HOME?.replace(/home$/, "tmp"));
      expect(env.XDG_CACHE_HOME).toBe(`${env.HOME}/.cache`);
      expect(env[OWNER_VAR]).toMatch(new RegExp(`^${runnerKey("runner-local-test")}:${r.id}:\\d+$`));
      expect(res.stdout).not.toContain("runner-secret-value");
      expect(env.CODEFLEET_SECRET_X).toBeUndefined();
      // whatever the runner has that the process was not given (the shell sets PWD, SHLVL and _ itself)
      const given = ["PATH", "HOME", "TMPDIR", "PWD", "SHLVL", "_"];
      for (const k of Object.keys(process.env).filter((k) => !given.includes(k))) expect(env[k], k).toBeUndefined();
      expect(Object.keys(env).sort()).toEqual(
        ["FROM_EXEC", "FROM_SPEC", "GIT_CEILING_DIRECTORIES", "HOME", OWNER_VAR, "PATH", "PWD", "TMPDIR", "XDG_CACHE_HOME"].sort(),
      );
    } finally {
      delete process.env.CODEFLEET_SECRET_X;
    }
  });

  it("reports exit codes as a shell does", async () => {
    expect((await run(r, ["sh", "-c", "exit 3"])).exitCode).toBe(3);
    expect((await run(r, ["sh", "-c", "kill -TERM $$"])).exitCode).toBe(143);
    const missing = await run(r, ["no-such-command-codefleet"]);
    expect(missing.exitCode).toBe(127);
    expect(missing.stderr).toContain("command not found");
    const noDir = await run(r, ["true"], { workdir: "/workspace/not-there" });
    expect(noDir.exitCode).toBe(126);
  });

  it("feeds stdin, and survives a command that does not read it", async () => {
    const patch = ["--- a/README.md", "+++ b/README.md", "@@ -1 +1,2 @@", " # sample", "+patched through stdin", ""].join("\n");
    const applied = await run(r, ["git", "apply", "--whitespace=nowarn", "-"], { stdin: patch });
    expect(applied.stderr).toBe("");
    expect(applied.exitCode).toBe(0);
    expect(readFileSync(join(slotLayout(slotRoot()).tree, "README.md"), "utf8")).toBe("# sample\npatched through stdin\n");
    writeFileSync(join(slotLayout(slotRoot()).tree, "README.md"), "# sample\n");
    const counted = await run(r, ["wc", "-c"], { stdin: Buffer.alloc(300_000, 97) });
    expect(counted.stdout.trim()).toBe("300000");
    const ignored = await run(r, ["true"], { stdin: Buffer.alloc(4 * 1024 * 1024, 97) });
    expect(ignored.exitCode).toBe(0);
    expect((await run(r, ["cat"])).stdout).toBe(""); // no stdin: /dev/null, never the runner's
  });

  it("streams output as it comes, in chunks, never the whole of it at once", async () => {
    const seen: { at: number; text: string }[] = [];
    const started = Date.now();
    const res = await r.exec(["sh", "-c", "echo first; sleep 1; echo second >&2"], {
      timeoutMs: 10_000,
      onOutput: (s, c) => seen.push({ at: Date.now() - started, text: `${s}:${c.toString().trim()}` }),
    });
    expect(res.exitCode).toBe(0);
    expect(seen.map((s) => s.text)).toEqual(["stdout:first", "stderr:second"]);
    expect(seen[0]?.at).toBeLessThan(res.durationMs - 500);

    const total = 64 * 1024 * 1024;
    let bytes = 0;
    let chunks = 0;
    let largest = 0;
    let heapGrowth = 0;
    const heap0 = process.memoryUsage().heapUsed;
    const big = await r.exec(["head", "-c", String(total), "/dev/zero"], {
      timeoutMs: 30_000,
      onOutput: (_s, c) => {
        bytes += c.length;
        chunks++;
        largest = Math.max(largest, c.length);
        heapGrowth = Math.max(heapGrowth, process.memoryUsage().heapUsed - heap0);
      },
    });
    expect(big.exitCode).toBe(0);
    expect(bytes).toBe(total);
    expect(chunks).toBeGreaterThan(100);
    expect(largest).toBeLessThanOrEqual(1024 * 1024);
    expect(heapGrowth).toBeLessThan(total / 2);
  });

  it("kills the whole process tree on the wall-clock limit, descendants that left the group included", async () => {
    const tmp = join(slotLayout(slotRoot()).tree, ".pids-timeout");
    mkdirSync(tmp, { recursive: true, mode: 0o777 });
    chmodSync(tmp, 0o777);
    const started = Date.now();
    const res = await run(
      r,
      [
        "sh",
        "-c",
        // a grandchild in the group, and one in a session of its own (what a daemon does)
        "sleep 300 & echo $! > .pids-timeout/child; setsid sleep 301 > /dev/null 2>&1 < /dev/null & echo $! > .pids-timeout/escaped; wait",
      ],
      { timeoutMs: 1500 },
    );
    expect(res).toMatchObject({ exitCode: 137, timedOut: true, idleTimedOut: false, canceled: false });
    expect(Date.now() - started).toBeLessThan(8000);
    const child = await readPid(join(tmp, "child"));
    const escaped = await readPid(join(tmp, "escaped"));
    await waitFor("the grandchildren gone", async () => !alive(child) && !alive(escaped), 5000, 50);
    rmSync(tmp, { recursive: true, force: true });
  });

  it("kills on the idle timeout, and not while there is output", async () => {
    const stalled = await run(r, ["sh", "-c", "echo start; sleep 60"], { timeoutMs: 30_000, idleTimeoutMs: 600 });
    expect(stalled).toMatchObject({ exitCode: 137, idleTimedOut: true, timedOut: false });
    expect(stalled.stdout).toBe("start\n");
    expect(stalled.durationMs).toBeLessThan(5000);
    const chatty = await run(r, ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.2; done"], { idleTimeoutMs: 700 });
    expect(chatty).toMatchObject({ exitCode: 0, idleTimedOut: false });
  });

  it("stops on abort, and starts nothing when already aborted", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const res = await run(r, ["sh", "-c", "sleep 60"], { signal: ac.signal });
    expect(res).toMatchObject({ canceled: true, timedOut: false, exitCode: 137 });
    expect(res.durationMs).toBeLessThan(5000);
    const marker = join(slotLayout(slotRoot()).tree, "should-not-exist");
    const pre = await run(r, ["touch", marker], { signal: AbortSignal.abort() });
    expect(pre.canceled).toBe(true);
    expect(existsSync(marker)).toBe(false);
  });

  it("is a container to the rest of the runner: running, on localhost, any image", async () => {
    expect(await r.state()).toEqual({ running: true, oomKilled: false });
    expect(await r.address()).toBe("127.0.0.1");
    expect(await driver.imageExists("whatever:tag")).toBe(true);
    expect(await driver.imageId("whatever:tag")).toBe("local");
    expect(driver.environmentCache).toBeUndefined();
  });
});

describe("local driver: the agent's own git, as in a container", () => {
  it("sets up /workspace/.git with the slot's objects and index, and git works on the tree", async () => {
    const driver = newDriver();
    const r = await driver.createRun(spec({ taskId: "01TASKAGENTGIT" }));
    try {
      const setup = await setUpAgentGit(r, { baseSha, signal: new AbortController().signal });
      expect(setup).toEqual({ ok: true, detail: "" });
      const tree = slotLayout(slotRoot()).tree;
      expect(readFileSync(join(tree, ".git/objects/info/alternates"), "utf8").trim()).toBe(join(slotLayout(slotRoot()).gitDir, "objects"));
      const head = await run(r, ["sh", "-c", "git rev-parse HEAD; git branch --show-current; git status --porcelain"]);
      expect(head.stderr).toBe("");
      expect(head.stdout).toBe(`${baseSha}\n${AGENT_BRANCH}\n`);
      writeFileSync(join(tree, "README.md"), "# changed\n");
      const diff = await run(r, ["git", "diff", "--stat"]);
      expect(diff.stdout).toContain("README.md");
      writeFileSync(join(tree, "README.md"), "# sample\n");
    } finally {
      await r.remove();
      rmSync(join(slotLayout(slotRoot()).tree, ".git"), { recursive: true, force: true });
    }
  });

  it("opens the workspace and reads blob ids with the runner's git, as the Docker driver does", async () => {
    const gitHome = mkdtempSync(join(tmpdir(), "cf-local-git-"));
    chmodSync(gitHome, 0o755);
    try {
      writeFileSync(join(gitHome, "askpass.sh"), ASKPASS_SCRIPT, { mode: 0o755 });
      writeFileSync(join(gitHome, "gitconfig"), GLOBAL_GIT_CONFIG, { mode: 0o644 });
      const runner = createGitRunner({
        askPassPath: join(gitHome, "askpass.sh"),
        masker: new SecretMasker([]),
        globalConfigPath: join(gitHome, "gitconfig"),
      });
      const driver = new LocalProcessDriver({ runRoot, git: { runner } });
      const slot = spec().slot;
      const ids = await driver.blobIds(slot, baseSha, ["package-lock.json", "missing.lock"]);
      expect(Object.keys(ids)).toEqual(["package-lock.json"]);
      expect(ids["package-lock.json"]).toBe(
        await gitIn({ GIT_DIR: slotLayout(slotRoot()).gitDir }, "rev-parse", `${baseSha}:package-lock.json`),
      );
      const tree = slotLayout(slotRoot()).tree;
      writeFileSync(join(tree, "NEW.txt"), "new\n");
      const ws = await driver.openWorkspace(slot, join(gitHome, "scratch"));
      await ws.stage();
      const { sha } = await ws.commit("local", { name: "t", email: "t@example.com" }, baseSha);
      let diff = "";
      await ws.diff(baseSha, sha, (c) => {
        diff += c.toString();
      });
      expect(diff).toContain("+new");
      rmSync(join(tree, "NEW.txt"));
    } finally {
      rmSync(gitHome, { recursive: true, force: true });
    }
  });
});

describe("local driver: runs it tracks, and what a dead runner left", () => {
  it("remove kills what is left, removes the run's directory, and is idempotent", async () => {
    const driver = newDriver();
    const r = await driver.createRun(spec({ taskId: "01TASKREMOVE" }));
    const home = (await run(r, ["sh", "-c", 'echo "$HOME"'])).stdout.trim();
    const bg = await run(r, ["sh", "-c", "sleep 300 > /dev/null 2>&1 < /dev/null & echo $!"]);
    expect(bg.exitCode).toBe(0);
    const pid = Number(bg.stdout.trim());
    expect(alive(pid)).toBe(true); // as in a container, a background process outlives its exec
    let started = false;
    const pending = run(r, ["sh", "-c", "echo started; sleep 300"], { onOutput: () => (started = true) });
    await waitFor("the exec started", async () => started, 5000, 20);
    await r.remove();
    await expect(pending).resolves.toMatchObject({ exitCode: 137 });
    await waitFor("the background process gone", async () => !alive(pid), 5000, 50);
    expect(existsSync(home.replace(/\/home$/, ""))).toBe(false);
    expect(await r.state()).toEqual({ running: false, oomKilled: false });
    await r.remove();
    await expect(r.exec(["true"], { timeoutMs: 1000 })).rejects.toThrow(/removed/);
  });

  it("counts, adopts and removes stale runs of a task", async () => {
    const driver = newDriver();
    const one = await driver.createRun(spec({ taskId: "01TASKSTALE", attempt: 1 }));
    const two = await driver.createRun(spec({ taskId: "01TASKSTALE", attempt: 2 }));
    const warm = await driver.createRun(spec({ taskId: "warm-reservation", attempt: 1 }));
    expect(await driver.running("runner-local-test")).toBe(3);
    expect(await driver.running("another-runner")).toBe(0);
    expect(await driver.removeStale("01TASKSTALE", 2)).toBe(1);
    expect(await one.state()).toMatchObject({ running: false });
    expect(await two.state()).toMatchObject({ running: true });
    await warm.adopt({ taskId: "01TASKADOPTED", attempt: 3 });
    expect(await driver.removeStale("01TASKADOPTED")).toBe(1);
    expect(await driver.removeStale("01TASKSTALE")).toBe(1);
    expect(await driver.running("runner-local-test")).toBe(0);
  });

  it("a restarted runner's sweep kills its predecessor's processes and removes its run directories, not its own runs", async () => {
    const dead = newDriver();
    const left = await dead.createRun(spec({ taskId: "01TASKDEADRUNNER" }));
    const bg = await run(left, ["sh", "-c", "setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $!"]);
    const pid = Number(bg.stdout.trim());
    await waitFor("the orphan started", async () => alive(pid), 5000, 50);
    // the runner dies: nothing of it remains but what is on disk and in /proc
    const restarted = newDriver();
    const mine = await restarted.createRun(spec({ taskId: "01TASKALIVE" }));
    const mineBg = await run(mine, ["sh", "-c", "sleep 300 > /dev/null 2>&1 < /dev/null & echo $!"]);
    const minePid = Number(mineBg.stdout.trim());
    expect(await restarted.sweep("another-runner")).toBe(0);
    expect(await restarted.sweep("runner-local-test")).toBe(1);
    await waitFor("the orphan gone", async () => !alive(pid), 5000, 50);
    expect(alive(minePid)).toBe(true);
    expect((await run(mine, ["true"])).exitCode).toBe(0);
    expect(await restarted.sweep("runner-local-test")).toBe(0);
    await mine.remove();
    await waitFor("its own process gone with its run", async () => !alive(minePid), 5000, 50);
  });

  it("refuses a slot path a shell would read twice, a missing tree, and a run root others can write", async () => {
    const driver = newDriver();
    await expect(driver.createRun(spec({ slot: { slotId: "s", path: `${root}/bad slot`, hostPath: "/x" } }))).rejects.toMatchObject({
      code: "local_unsafe_path",
    });
    await expect(driver.createRun(spec({ slot: { slotId: "s", path: `${root}/no-such-slot`, hostPath: "/x" } }))).rejects.toMatchObject({
      code: "local_no_tree",
    });
    const open = join(root, "open-runs");
    mkdirSync(open, { mode: 0o777 });
    chmodSync(open, 0o777);
    await expect(new LocalProcessDriver({ runRoot: open }).ping()).rejects.toMatchObject({ code: "local_run_root" });
  });

  it.runIf(isRoot)("never runs tasks as root", () => {
    expect(() => new LocalProcessDriver({ runRoot, user: { uid: 0, gid: 0 } })).toThrow(/never runs tasks as root/);
  });
});

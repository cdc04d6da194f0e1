import { CONTAINER_BASE_INDEX, CONTAINER_BASE_OBJECTS, CONTAINER_WORKSPACE } from "@codefleet/contracts";
import type { RunHandle } from "../execution/driver.js";

/**
 * The container's half of a rebase: what runs in the task's container (the sandbox), never on the
 * host. The runner cannot read the tree while the container runs (an agent's process could swap
 * a path for a symlink under its feet), so the container makes the snapshot itself, as a commit on
 * the base in a private git directory of its own `/tmp` (never the agent's `.git`, no config file
 * but the repository's own), hands its objects out as a pack (the runner takes it as untrusted
 * data: WorkspaceGit.importPack), and later applies the patch the runner computed from objects.
 * Whatever the agent planted (a `git` on its PATH, a `~/.gitconfig`) can only make its own task's
 * rebase wrong: the runner still stages the tree as data after the container is gone.
 */

/** Where the container has the workspace and the slot's objects and index (tests run the scripts on the host). */
export type ContainerPaths = { workspace: string; baseObjects: string; baseIndex: string };
export const CONTAINER_PATHS: ContainerPaths = {
  workspace: CONTAINER_WORKSPACE,
  baseObjects: CONTAINER_BASE_OBJECTS,
  baseIndex: CONTAINER_BASE_INDEX,
};

/** A snapshot in the container: its private git directory and the commit of the tree. */
export type Snapshot = { dir: string; commit: string };

type Run = Pick<RunHandle, "exec">;
type Opts = { signal: AbortSignal; timeoutMs: number; paths?: ContainerPaths };

/** No system or user config (the agent's HOME is its own), a fixed identity for the snapshot commit. */
const GIT_ENV = {
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  XDG_CONFIG_HOME: "/nonexistent",
  GIT_TERMINAL_PROMPT: "0",
  GIT_AUTHOR_NAME: "codefleet",
  GIT_AUTHOR_EMAIL: "codefleet@localhost",
  GIT_COMMITTER_NAME: "codefleet",
  GIT_COMMITTER_EMAIL: "codefleet@localhost",
};

const SNAPSHOT_SCRIPT = [
  "set -e",
  'command -v git >/dev/null 2>&1 || { echo "git is not installed" >&2; exit 3; }',
  "d=$(mktemp -d /tmp/codefleet-rebase.XXXXXXXX)",
  'git init --quiet --bare "$d/git"',
  'export GIT_DIR="$d/git" GIT_WORK_TREE="$1" GIT_INDEX_FILE="$d/index"',
  "git config core.bare false",
  "git config core.hooksPath /dev/null",
  'printf "%s\\n" "$2" > "$GIT_DIR/objects/info/alternates"',
  'cp "$3" "$GIT_INDEX_FILE" 2>/dev/null || git read-tree "$4"',
  'cd "$1"',
  "git add --all",
  "tree=$(git write-tree)",
  'commit=$(echo snapshot | git commit-tree "$tree" -p "$4")',
  'printf "%s\\n%s\\n" "$d" "$commit"',
].join("\n");

const PACK_SCRIPT = ["set -e", 'export GIT_DIR="$1/git"', 'printf "%s\\n^%s\\n" "$2" "$3" | git pack-objects --revs --stdout -q'].join(
  "\n",
);

const APPLY_SCRIPT = [
  "set -e",
  'export GIT_DIR="$1/git" GIT_WORK_TREE="$2" GIT_INDEX_FILE="$1/index"',
  'cd "$2"',
  "git apply --whitespace=nowarn",
].join("\n");

const SNAPSHOT_DIR = /^\/tmp\/codefleet-rebase\.[A-Za-z0-9]{8}$/;
const OBJECT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Collects a stream's first `max` bytes as text. */
function capture(max: number) {
  let text = "";
  return {
    on: (chunk: Buffer) => {
      if (text.length < max) text += chunk.toString("utf8").slice(0, max - text.length);
    },
    text: () => text,
  };
}

/**
 * Commits the container's tree on `baseSha` in a private git directory in the container's `/tmp`
 * (tracked files and untracked ones the tree's `.gitignore` does not exclude, as the runner's
 * staging takes them). Fails softly: an image without git, a full `/tmp`, an answer that is not a
 * directory and a commit id.
 */
export async function snapshotInContainer(
  run: Run,
  baseSha: string,
  o: Opts,
): Promise<{ ok: true; snapshot: Snapshot } | { ok: false; detail: string }> {
  const p = o.paths ?? CONTAINER_PATHS;
  const out = capture(4096);
  const err = capture(2000);
  const r = await run.exec(["sh", "-c", SNAPSHOT_SCRIPT, "sh", p.workspace, p.baseObjects, p.baseIndex, baseSha], {
    env: GIT_ENV,
    timeoutMs: o.timeoutMs,
    signal: o.signal,
    onOutput: (stream, chunk) => (stream === "stdout" ? out.on(chunk) : err.on(chunk)),
  });
  if (r.exitCode !== 0 || r.timedOut || r.canceled)
    return { ok: false, detail: err.text().trim().slice(-500) || `the snapshot exited ${r.exitCode}${r.timedOut ? " (timed out)" : ""}` };
  const [dir = "", commit = ""] = out.text().split("\n");
  if (!SNAPSHOT_DIR.test(dir) || !OBJECT_ID.test(commit))
    return { ok: false, detail: "the snapshot answered something else than a commit" };
  return { ok: true, snapshot: { dir, commit } };
}

/**
 * Streams the snapshot's new objects (those its commit has and the base has not) out of the
 * container as a pack. `write` returns false once the runner has had enough: the exec is stopped.
 */
export async function packFromContainer(
  run: Run,
  snapshot: Snapshot,
  baseSha: string,
  write: (chunk: Buffer) => boolean,
  o: Opts,
): Promise<void> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  o.signal.addEventListener("abort", onAbort, { once: true });
  const err = capture(2000);
  try {
    const r = await run.exec(["sh", "-c", PACK_SCRIPT, "sh", snapshot.dir, snapshot.commit, baseSha], {
      env: GIT_ENV,
      timeoutMs: o.timeoutMs,
      signal: stop.signal,
      onOutput: (stream, chunk) => {
        if (stream === "stderr") return err.on(chunk);
        if (!stop.signal.aborted && !write(chunk)) stop.abort();
      },
    });
    // stopped for its size: the caller knows (write said so)
    if (stop.signal.aborted && !o.signal.aborted) return;
    if (r.exitCode !== 0 || r.timedOut || r.canceled)
      throw new Error(err.text().trim().slice(-500) || `the pack exited ${r.exitCode}${r.timedOut ? " (timed out)" : ""}`);
  } finally {
    o.signal.removeEventListener("abort", onAbort);
  }
}

/** Applies a patch (made by the runner from objects) to the container's tree; all of it or nothing. */
export async function applyInContainer(run: Run, snapshot: Snapshot, patch: Buffer, o: Opts): Promise<{ ok: boolean; detail: string }> {
  const p = o.paths ?? CONTAINER_PATHS;
  const err = capture(2000);
  const r = await run.exec(["sh", "-c", APPLY_SCRIPT, "sh", snapshot.dir, p.workspace], {
    env: GIT_ENV,
    timeoutMs: o.timeoutMs,
    signal: o.signal,
    stdin: patch,
    onOutput: (stream, chunk) => stream === "stderr" && err.on(chunk),
  });
  if (r.exitCode === 0 && !r.timedOut && !r.canceled) return { ok: true, detail: "" };
  return { ok: false, detail: err.text().trim().slice(-500) || `git apply exited ${r.exitCode}${r.timedOut ? " (timed out)" : ""}` };
}

/** Removes the snapshot's private git directory (the container's /tmp is its own: best effort). */
export async function dropSnapshot(run: Run, snapshot: Snapshot, o: Opts): Promise<void> {
  await run.exec(["rm", "-rf", "--", snapshot.dir], { timeoutMs: Math.min(o.timeoutMs, 60_000), signal: o.signal }).catch(() => undefined);
}

import { execFile } from "node:child_process";
import { mkdir, rm, rmdir, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { errorMessage } from "@codefleet/contracts";
import { retry } from "@codefleet/platform/runtime";

const execFileP = promisify(execFile);

/**
 * The disk of a slot's working tree. `loop`: the tree is its own ext4 filesystem of the quota's
 * size (a sparse image file, loop-mounted): an agent that fills it gets ENOSPC in its own tree
 * and nothing else on the host is touched: the limit is enforced by the kernel. `sampled`: the
 * tree is a plain directory whose size is measured now and then (a deployment where repo-pool
 * may not mount filesystems); an agent can overshoot between samples.
 */
export interface SlotDisk {
  readonly kind: "loop" | "sampled";
  /** Makes the (empty) tree directory of a new slot, owned by the slot owner. */
  create(slotRoot: string, tree: string, owner: { uid: number; gid: number } | undefined): Promise<void>;
  /** Bytes the tree uses. */
  usage(tree: string): Promise<number>;
  /** True when the tree has no room left (the task filled its disk). */
  full(tree: string): Promise<boolean>;
  /** Undoes `create` before the slot's directory is removed (unmounts; a container still using it keeps its own view). */
  release(slotRoot: string, tree: string): Promise<void>;
  /** After a restart: makes an existing slot's tree usable again. False when it cannot. */
  restore(slotRoot: string, tree: string): Promise<boolean>;
}

const imageOf = (slotRoot: string) => join(slotRoot, "tree.img");

async function isMountpoint(path: string): Promise<boolean> {
  return execFileP("mountpoint", ["-q", "--", path]).then(
    () => true,
    () => false,
  );
}

async function duBytes(path: string): Promise<number> {
  const { stdout } = await execFileP("du", ["-sb", "--", path], { timeout: 60_000 });
  return Number.parseInt(stdout.split("\t")[0] ?? "0", 10);
}

export function sampledDisk(quotaBytes: number): SlotDisk {
  return {
    kind: "sampled",
    async create(_root, tree, owner) {
      await mkdir(tree, { mode: 0o755 });
      if (owner && process.getuid?.() === 0) await execFileP("chown", [`${owner.uid}:${owner.gid}`, "--", tree]);
    },
    usage: duBytes,
    async full(tree) {
      return (await duBytes(tree)) > quotaBytes;
    },
    async release() {},
    async restore(_root, tree) {
      return stat(tree).then(
        () => true,
        () => false,
      );
    },
  };
}

export function loopDisk(quotaBytes: number): SlotDisk {
  return {
    kind: "loop",
    async create(slotRoot, tree, owner) {
      const image = imageOf(slotRoot);
      await execFileP("truncate", ["-s", String(quotaBytes), "--", image]);
      const rootOwner = owner ? `,root_owner=${owner.uid}:${owner.gid}` : "";
      await execFileP("mkfs.ext4", ["-q", "-F", "-m", "0", "-O", "^has_journal", "-E", `lazy_itable_init=1,nodiscard${rootOwner}`, image]);
      await mkdir(tree, { mode: 0o755 });
      await loopMount(image, tree);
      // nothing but the repository's files in the tree
      await rmdir(join(tree, "lost+found")).catch(() => undefined);
    },
    async usage(tree) {
      const s = await statfs(tree);
      return (s.blocks - s.bfree) * s.bsize;
    },
    async full(tree) {
      const s = await statfs(tree);
      return s.bavail * s.bsize < 1024 * 1024;
    },
    async release(_slotRoot, tree) {
      if (await isMountpoint(tree)) await execFileP("umount", ["-l", "--", tree]);
    },
    async restore(slotRoot, tree) {
      if (await isMountpoint(tree)) return true;
      const image = imageOf(slotRoot);
      if (!(await stat(image).catch(() => undefined))) return false;
      return loopMount(image, tree).then(
        () => true,
        () => false,
      );
    },
  };
}

/**
 * Picks the slot disk: `loop` when asked or when `auto` and a trial filesystem can be made and
 * mounted here (root, loop devices, mkfs.ext4), else `sampled`. Returns why, for the start-up log.
 */
export async function chooseSlotDisk(
  mode: "auto" | "loop" | "sampled",
  quotaBytes: number,
  scratchDir: string,
): Promise<{ disk: SlotDisk; why: string }> {
  if (mode === "sampled") return { disk: sampledDisk(quotaBytes), why: "SLOT_DISK_LIMIT=sampled" };
  const trial = join(scratchDir, `.disk-trial-${process.pid}`);
  const loop = loopDisk(16 * 1024 * 1024);
  try {
    await rm(trial, { recursive: true, force: true });
    await mkdir(trial, { recursive: true });
    await loop.create(trial, join(trial, "tree"), undefined);
    await loop.release(trial, join(trial, "tree"));
    return { disk: loopDisk(quotaBytes), why: "each slot's tree is a loop-mounted ext4 filesystem of the quota's size" };
  } catch (err) {
    if (mode === "loop") throw new Error(`SLOT_DISK_LIMIT=loop, but a loop-mounted filesystem cannot be made here: ${errorMessage(err)}`);
    return {
      disk: sampledDisk(quotaBytes),
      why: `loop-mounted slot filesystems are not available here (${errorMessage(err).split("\n")[0]}): the disk quota is sampled, not enforced`,
    };
  } finally {
    await rm(trial, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * Mounts an image on a loop device. Two processes taking the same free device at once make one of
 * them fail ("device or resource busy"): asked again a few times, a little later each time.
 */
async function loopMount(image: string, tree: string): Promise<void> {
  await retry(() => execFileP("mount", ["-o", "loop,nosuid,nodev,noatime", "--", image, tree]), {
    attempts: 5,
    baseDelayMs: 100,
    maxDelayMs: 400,
    retryable: (err) => /busy|loop device/i.test(errorMessage(err)),
  });
}

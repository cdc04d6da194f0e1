import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";

/**
 * Removes a test's data directory, unmounting first whatever is mounted below it (repo-pool's
 * per-slot filesystems, should a test stop before repo-pool could unmount them).
 */
export function removeDataDir(dir: string): void {
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((m): m is string => !!m && m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try {
      execFileSync("umount", ["-l", "--", m]);
    } catch {
      /* gone already */
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

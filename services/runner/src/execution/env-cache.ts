import { createHash } from "node:crypto";
import { CONTAINER_WORKSPACE, errorMessage, slotLayout } from "@codefleet/contracts";
import type { Logger } from "@codefleet/platform/runtime";
import type Docker from "dockerode";
import { LABELS, type SlotMount } from "./driver.js";

/** A setup's result kept for later tasks: restored into a slot's tree, or saved from it. */
export interface EnvironmentCache {
  /** Copies the cached paths into the slot's tree; false when there is no complete entry for the key. */
  restore(key: string, slot: SlotMount, paths: readonly string[]): Promise<{ hit: boolean; bytes?: number }>;
  /** Keeps the paths of the slot's tree under the key (once per key: another saver of it wins). */
  save(key: string, slot: SlotMount, paths: readonly string[]): Promise<{ saved: boolean; bytes?: number; detail?: string }>;
}

/** What keys an entry: the same inputs give the same dependencies. */
export type EnvironmentKeyInput = {
  repoUrl: string;
  tenant: string;
  imageId: string;
  command: string;
  cachePaths: readonly string[];
  env: Record<string, string>;
  /** The lockfiles' blob ids at the base commit (path → id; a missing file has none). */
  lockfiles: Record<string, string>;
};

/** The cache key: sha256 of every input, canonically ordered. Pure. */
export function environmentKey(i: EnvironmentKeyInput): string {
  const sorted = (o: Record<string, string>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const canonical = JSON.stringify([
    "codefleet-env-v1",
    i.repoUrl,
    i.tenant,
    i.imageId,
    i.command,
    [...i.cachePaths].sort(),
    sorted(i.env),
    sorted(i.lockfiles),
  ]);
  return createHash("sha256").update(canonical).digest("hex");
}

const CACHE_LABEL = "codefleet.env-cache";
const MOUNT = "/codefleet/env-cache";
/** Where the saver mounts the volume: a directory of the helper image owned by uid 1000, so the new volume is too. */
const SAVE_MOUNT = "/home/agent";

// Every copy runs in a container as the agents' uid: the host never follows what the tree holds.
const RESTORE_SCRIPT = `set -eu
test -f ${MOUNT}/.codefleet-complete || exit 3
for p in "$@"; do
  if [ -e "${MOUNT}/data/$p" ] || [ -L "${MOUNT}/data/$p" ]; then
    rm -rf -- "${CONTAINER_WORKSPACE}/$p"
    mkdir -p -- "$(dirname -- "${CONTAINER_WORKSPACE}/$p")"
    cp -a -- "${MOUNT}/data/$p" "${CONTAINER_WORKSPACE}/$p"
  fi
done
du -sb ${MOUNT} | cut -f1`;
const SAVE_SCRIPT = `set -eu
mkdir ${SAVE_MOUNT}/.lock 2>/dev/null || exit 4
mkdir -p ${SAVE_MOUNT}/data
for p in "$@"; do
  if [ -e "${CONTAINER_WORKSPACE}/$p" ] || [ -L "${CONTAINER_WORKSPACE}/$p" ]; then
    mkdir -p -- "$(dirname -- "${SAVE_MOUNT}/data/$p")"
    cp -a -- "${CONTAINER_WORKSPACE}/$p" "${SAVE_MOUNT}/data/$p"
  fi
done
touch ${SAVE_MOUNT}/.codefleet-complete
du -sb ${SAVE_MOUNT} | cut -f1`;

export type DockerEnvironmentCacheOptions = {
  docker: Docker;
  /** Image of the copy helpers (the default agent image: it has /home/agent owned by uid 1000). */
  helperImage: string;
  runnerId: string;
  deployment?: string;
  /** Bound of all entries together; the least recently used go first. */
  maxBytes: number;
  /** An entry unused this long is removed. */
  ttlMs: number;
  log: Logger;
};

/**
 * The environment cache of one Docker engine: a named volume per key holding the setup's paths,
 * complete once its marker is written. Restore and save are short hardened containers (no
 * network, all capabilities dropped, uid 1000) that copy between the volume and the slot's tree;
 * the runner itself never reads or writes either. Bounded by size (LRU) and age.
 */
export class DockerEnvironmentCache implements EnvironmentCache {
  private readonly entries = new Map<string, { bytes: number; lastUsed: number }>();
  private loaded: Promise<void> | undefined;

  constructor(private readonly o: DockerEnvironmentCacheOptions) {}

  static volumeName(key: string): string {
    return `codefleet-env-${key.slice(0, 40)}`;
  }

  async restore(key: string, slot: SlotMount, paths: readonly string[]): Promise<{ hit: boolean; bytes?: number }> {
    await this.load();
    const volume = DockerEnvironmentCache.volumeName(key);
    const exists = await this.o.docker
      .getVolume(volume)
      .inspect()
      .then(
        () => true,
        () => false,
      );
    if (!exists) return { hit: false };
    const tree = slotLayout(slot.hostPath).tree;
    const r = await this.helper([`${volume}:${MOUNT}:ro`, `${tree}:${CONTAINER_WORKSPACE}:rw`], RESTORE_SCRIPT, paths);
    if (r.exitCode === 3) return { hit: false };
    if (r.exitCode !== 0) throw new Error(`the environment cache could not be restored (exit ${r.exitCode}): ${r.output.slice(-500)}`);
    const bytes = Number(r.output.trim().split("\n").at(-1)) || 0;
    this.entries.set(volume, { bytes, lastUsed: Date.now() });
    return { hit: true, bytes };
  }

  async save(key: string, slot: SlotMount, paths: readonly string[]): Promise<{ saved: boolean; bytes?: number; detail?: string }> {
    await this.load();
    const volume = DockerEnvironmentCache.volumeName(key);
    await this.o.docker.createVolume({
      Name: volume,
      Labels: {
        [LABELS.managed]: "true",
        [CACHE_LABEL]: key,
        ...(this.o.deployment ? { [LABELS.deployment]: this.o.deployment } : {}),
      },
    });
    const tree = slotLayout(slot.hostPath).tree;
    const r = await this.helper([`${volume}:${SAVE_MOUNT}:rw`, `${tree}:${CONTAINER_WORKSPACE}:ro`], SAVE_SCRIPT, paths);
    if (r.exitCode === 4) return { saved: false, detail: "another attempt is saving this environment" };
    if (r.exitCode !== 0) {
      await this.o.docker
        .getVolume(volume)
        .remove()
        .catch(() => undefined);
      return { saved: false, detail: `the environment could not be saved (exit ${r.exitCode}): ${r.output.slice(-300)}` };
    }
    const bytes = Number(r.output.trim().split("\n").at(-1)) || 0;
    this.entries.set(volume, { bytes, lastUsed: Date.now() });
    await this.evict().catch((err) => this.o.log.warn({ error: errorMessage(err) }, "environment cache eviction failed"));
    return { saved: true, bytes };
  }

  /** Entries past their age, then the least recently used while the cache is over its size. In-use volumes stay. */
  async evict(now = Date.now()): Promise<string[]> {
    await this.load();
    const removed: string[] = [];
    const remove = async (name: string) => {
      const ok = await this.o.docker
        .getVolume(name)
        .remove()
        .then(
          () => true,
          () => false,
        );
      if (ok) {
        this.entries.delete(name);
        removed.push(name);
      }
    };
    for (const name of planEviction(this.entries, { maxBytes: this.o.maxBytes, ttlMs: this.o.ttlMs, now })) await remove(name);
    if (removed.length) this.o.log.info({ removed }, "environment cache entries evicted");
    return removed;
  }

  /** The entries an earlier run left: their sizes from the engine, their last use taken as their creation. */
  private load(): Promise<void> {
    this.loaded ??= (async () => {
      const df = (await this.o.docker.df().catch(() => ({ Volumes: [] }))) as {
        Volumes?: { Name: string; Labels?: Record<string, string> | null; CreatedAt?: string; UsageData?: { Size?: number } }[];
      };
      for (const v of df.Volumes ?? []) {
        if (!v.Labels?.[CACHE_LABEL]) continue;
        if (this.o.deployment && v.Labels[LABELS.deployment] && v.Labels[LABELS.deployment] !== this.o.deployment) continue;
        this.entries.set(v.Name, { bytes: Math.max(0, v.UsageData?.Size ?? 0), lastUsed: Date.parse(v.CreatedAt ?? "") || Date.now() });
      }
    })();
    return this.loaded;
  }

  private async helper(binds: string[], script: string, args: readonly string[]): Promise<{ exitCode: number; output: string }> {
    const container = await this.o.docker.createContainer({
      Image: this.o.helperImage,
      Cmd: ["sh", "-c", script, "sh", ...args],
      User: "1000:1000",
      WorkingDir: "/",
      Labels: {
        [LABELS.managed]: "true",
        [LABELS.runnerId]: this.o.runnerId,
        "codefleet.role": "env-cache",
        ...(this.o.deployment ? { [LABELS.deployment]: this.o.deployment } : {}),
      },
      HostConfig: {
        Binds: binds,
        NetworkMode: "none",
        CapDrop: ["ALL"],
        SecurityOpt: ["no-new-privileges:true"],
        ReadonlyRootfs: true,
        Tmpfs: { "/tmp": "rw,nosuid,nodev,size=64m" },
        Memory: 512 * 1024 * 1024,
        PidsLimit: 256,
        Init: true,
      },
    });
    try {
      await container.start();
      const result = (await container.wait()) as { StatusCode: number };
      const logs = (await container.logs({ stdout: true, stderr: true, tail: 20 })) as unknown as Buffer;
      // the multiplexed log frames carry an 8-byte header each: keep the text
      const output = demux(logs);
      return { exitCode: result.StatusCode, output };
    } finally {
      await container.remove({ force: true }).catch(() => undefined);
    }
  }
}

/** Which entries go: past the age first, then least recently used while over the size. Pure. */
export function planEviction(
  entries: ReadonlyMap<string, { bytes: number; lastUsed: number }>,
  o: { maxBytes: number; ttlMs: number; now: number },
): string[] {
  const out: string[] = [];
  const left = [...entries].filter(([name, e]) => {
    if (o.now - e.lastUsed > o.ttlMs) {
      out.push(name);
      return false;
    }
    return true;
  });
  let total = left.reduce((a, [, e]) => a + e.bytes, 0);
  for (const [name, e] of left.sort((a, b) => a[1].lastUsed - b[1].lastUsed)) {
    if (total <= o.maxBytes) break;
    out.push(name);
    total -= e.bytes;
  }
  return out;
}

function demux(buf: Buffer): string {
  const parts: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const size = buf.readUInt32BE(i + 4);
    parts.push(buf.subarray(i + 8, i + 8 + size));
    i += 8 + size;
  }
  return parts.length ? Buffer.concat(parts).toString("utf8") : buf.toString("utf8");
}

import { execFile } from "node:child_process";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import type {
  AllocateRequest,
  AllocateResult,
  HeartbeatRequest,
  HeartbeatResult,
  PoolStatus,
  ReleaseRequest,
  ReleaseResult,
} from "@codefleet/contracts";
import { CodefleetError, errorMessage, ulid } from "@codefleet/contracts";
import { sql } from "kysely";
import { assertSafeRef, type GitRunner, parseRemoteUrl } from "../git/git.js";
import type { Db, SlotRow } from "../store/database.js";
import type { Mirror, MirrorCache } from "./mirrors.js";

const execFileP = promisify(execFile);

export class PoolError extends CodefleetError {
  override readonly name = "PoolError";
}

export const noCapacity = (detail: string) =>
  new PoolError("no_capacity", `no slot available: ${detail}`, { retry: { kind: "after", delayMs: 2000 } });

export type SlotEvent =
  | { type: "slot.allocated"; slot: SlotRow; taskId: string; attempt: number; repoUrl: string; warm: boolean }
  | { type: "slot.released"; slotId: string; taskId: string; attempt: number; outcome: "recycled" | "destroyed"; reason?: string }
  | { type: "slot.reclaimed"; slotId: string; taskId: string; attempt: number; reason: string };

export type SlotPoolOptions = {
  root: string;
  /** The same directory as the Docker engine sees it (bind-mount source); equals root outside containers. */
  hostRoot: string;
  /** git for the mirror side (clone from the mirror at slot creation), as repo-pool's own user. */
  git: GitRunner;
  /**
   * git inside slots, as the slot owner (the agents' uid): files a reset re-creates belong to the
   * agents without a `chown -R` of the whole tree on every release.
   */
  slotGit: GitRunner;
  db: Db;
  mirrors: MirrorCache;
  maxSlots: number;
  maxSlotsPerRepo: number;
  warmSlotsPerRepo: number;
  diskQuotaBytes: number;
  /** Owner of slot files, so the unprivileged user in agent containers can write them (when repo-pool runs as root). */
  slotOwner?: { uid: number; gid: number };
  onEvent: (e: SlotEvent) => Promise<void>;
  now?: () => Date;
};

/**
 * Warm working copies leased to task attempts. A slot is an independent local clone of its
 * repository's mirror (objects hard-linked at creation, so nothing in the slot depends on the
 * mirror afterwards and a container needs only the slot mounted). Allocation reuses a warm slot:
 * in the common case it is already at the requested commit and costs one database transaction.
 */
export class SlotPool {
  private decision: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: SlotPoolOptions) {}

  async init(): Promise<void> {
    await mkdir(this.slotsDir, { recursive: true });
    // Fail at start, not on the first task, when the slot owner cannot reach the slots.
    await this.o.slotGit.run(["--version"], { cwd: this.slotsDir }).catch((err: unknown) => {
      throw new PoolError(
        "slots_unreachable",
        `the slot owner (uid ${this.o.slotOwner?.uid}) cannot enter ${this.slotsDir}: make every parent directory traversable (chmod o+x) (${errorMessage(err)})`,
      );
    });
  }

  private get slotsDir(): string {
    return join(this.o.root, "slots");
  }

  pathOf(id: string): string {
    return join(this.slotsDir, id);
  }

  hostPathOf(id: string): string {
    return join(this.o.hostRoot, relative(this.o.root, this.pathOf(id)));
  }

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  private leaseUntil(ttlMs: number): string {
    return new Date(this.now().getTime() + ttlMs).toISOString();
  }

  /** Serializes capacity decisions (short database work only) inside this process. */
  private serialized<T>(f: () => Promise<T>): Promise<T> {
    const run = this.decision.then(f, f);
    this.decision = run.catch(() => undefined);
    return run;
  }

  async allocate(req: AllocateRequest): Promise<AllocateResult> {
    const remote = parseRemoteUrl(req.repoUrl);
    if (req.ref !== undefined) assertSafeRef(req.ref);
    const { db } = this.o;

    // A retried allocate of the same attempt gets the slot it already holds.
    const held = await db
      .selectFrom("slots")
      .selectAll()
      .where("task_id", "=", req.taskId)
      .where("attempt", "=", req.attempt)
      .where("state", "=", "leased")
      .executeTakeFirst();
    if (held) {
      const leaseExpiresAt = this.leaseUntil(req.leaseTtlMs);
      await db.updateTable("slots").set({ lease_expires_at: leaseExpiresAt }).where("id", "=", held.id).execute();
      return this.result(held, remote.clean, true, leaseExpiresAt);
    }

    const mirror = await this.o.mirrors.sync(remote, req.ref);
    const resolved = await this.o.mirrors.resolve(mirror, req.ref);
    const leaseExpiresAt = this.leaseUntil(req.leaseTtlMs);
    const claim = await this.serialized(() => this.claim(mirror.key, resolved.sha, req, leaseExpiresAt));
    let slot = claim.slot;
    try {
      if (claim.evict) await this.destroy(claim.evict, "evicted to make room");
      if (claim.created) await this.createOnDisk(slot.id, mirror, remote.clean, resolved.sha);
      else if (slot.commit_sha !== resolved.sha) await this.checkout(slot.id, mirror, resolved.sha);
      slot = await db
        .updateTable("slots")
        .set({ state: "leased", ref: resolved.ref, commit_sha: resolved.sha, last_used_at: this.now().toISOString() })
        .where("id", "=", slot.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await db.updateTable("mirrors").set({ last_used_at: sql`now()` }).where("key", "=", mirror.key).execute();
    } catch (err) {
      await this.destroy(slot.id, `allocation failed: ${errorMessage(err)}`).catch(() => undefined);
      throw err;
    }
    await this.o.onEvent({
      type: "slot.allocated",
      slot,
      taskId: req.taskId,
      attempt: req.attempt,
      repoUrl: remote.clean,
      warm: !claim.created,
    });
    return this.result(slot, remote.clean, !claim.created, leaseExpiresAt);
  }

  private result(slot: SlotRow, remoteUrl: string, warm: boolean, leaseExpiresAt: string): AllocateResult {
    return {
      slotId: slot.id,
      path: this.pathOf(slot.id),
      hostPath: this.hostPathOf(slot.id),
      ref: slot.ref ?? "",
      commitSha: slot.commit_sha ?? "",
      remoteUrl,
      warm,
      leaseExpiresAt,
    };
  }

  /** Picks a warm slot (one already at the commit first), else makes room for a new one, else says no. */
  private async claim(
    repoKey: string,
    sha: string,
    req: AllocateRequest,
    leaseExpiresAt: string,
  ): Promise<{ slot: SlotRow; created: boolean; evict?: string }> {
    return this.o.db.transaction().execute(async (trx) => {
      const warm = await trx
        .selectFrom("slots")
        .selectAll()
        .where("repo_key", "=", repoKey)
        .where("state", "=", "warm")
        .orderBy(sql`commit_sha = ${sha}`, "desc")
        .orderBy("last_used_at", "desc")
        .limit(1)
        .forUpdate()
        .skipLocked()
        .executeTakeFirst();
      const owner = { task_id: req.taskId, attempt: req.attempt, lease_expires_at: leaseExpiresAt };
      if (warm) {
        const slot = await trx
          .updateTable("slots")
          .set({ state: "leased", ...owner })
          .where("id", "=", warm.id)
          .returningAll()
          .executeTakeFirstOrThrow();
        return { slot, created: false };
      }
      const counts = await trx
        .selectFrom("slots")
        .select([sql<number>`count(*)`.as("total"), sql<number>`count(*) filter (where repo_key = ${repoKey})`.as("repo")])
        .executeTakeFirstOrThrow();
      if (Number(counts.repo) >= this.o.maxSlotsPerRepo)
        throw noCapacity(`all ${this.o.maxSlotsPerRepo} slots of this repository are leased`);
      let evict: string | undefined;
      if (Number(counts.total) >= this.o.maxSlots) {
        const victim = await trx
          .selectFrom("slots")
          .select("id")
          .where("state", "=", "warm")
          .orderBy("last_used_at", "asc")
          .limit(1)
          .forUpdate()
          .skipLocked()
          .executeTakeFirst();
        if (!victim) throw noCapacity(`all ${this.o.maxSlots} slots are leased`);
        await trx.updateTable("slots").set({ state: "resetting" }).where("id", "=", victim.id).execute();
        evict = victim.id;
      }
      const slot = await trx
        .insertInto("slots")
        .values({ id: `slot_${ulid()}`, repo_key: repoKey, state: "creating", ...owner, last_used_at: this.now().toISOString() })
        .returningAll()
        .executeTakeFirstOrThrow();
      return { slot, created: true, ...(evict ? { evict } : {}) };
    });
  }

  private async createOnDisk(id: string, mirror: Mirror, cleanUrl: string, sha: string): Promise<void> {
    const { git } = this.o;
    const final = this.pathOf(id);
    const tmp = `${final}.creating`;
    await rm(tmp, { recursive: true, force: true });
    // A local clone hard-links the mirror's objects: fast, and independent of the mirror afterwards.
    await git.run(["clone", "--quiet", "--no-checkout", "--", mirror.path, tmp]);
    await git.run(["-C", tmp, "remote", "set-url", "origin", cleanUrl]);
    await git.run(["-C", tmp, "config", "gc.auto", "0"]);
    // only .git exists yet: hand it to the slot owner, whose git then writes the working tree
    await this.chownTree(tmp);
    await this.o.slotGit.run(["-C", tmp, "checkout", "--quiet", "--force", "--detach", sha]);
    await rename(tmp, final);
  }

  private async refreshFromMirror(id: string, mirror: Mirror): Promise<void> {
    await this.o.slotGit.run([
      "-C",
      this.pathOf(id),
      "fetch",
      "--quiet",
      "--force",
      "--prune",
      "--no-write-fetch-head",
      mirror.path,
      "+refs/heads/*:refs/remotes/origin/*",
      "+refs/tags/*:refs/tags/*",
    ]);
  }

  private async checkout(id: string, mirror: Mirror, sha: string): Promise<void> {
    const path = this.pathOf(id);
    const git = this.o.slotGit;
    const has = await git.run(["-C", path, "cat-file", "-e", `${sha}^{commit}`]).then(
      () => true,
      () => false,
    );
    if (!has) await this.refreshFromMirror(id, mirror);
    await git.run(["-C", path, "checkout", "--quiet", "--force", "--detach", sha]);
    await git.run(["-C", path, "clean", "-ffdxq"]);
  }

  /** Updates a slot only while it is leased to this task attempt; undefined when it is not. */
  private updateIfOwned(
    owner: { slotId: string; taskId: string; attempt: number },
    set: { lease_expires_at?: string; state?: "resetting" },
  ) {
    return this.o.db
      .updateTable("slots")
      .set(set)
      .where("id", "=", owner.slotId)
      .where("state", "=", "leased")
      .where("task_id", "=", owner.taskId)
      .where("attempt", "=", owner.attempt)
      .returningAll()
      .executeTakeFirst();
  }

  async heartbeat(req: HeartbeatRequest): Promise<HeartbeatResult> {
    const leaseExpiresAt = this.leaseUntil(req.leaseTtlMs);
    const updated = await this.updateIfOwned(req, { lease_expires_at: leaseExpiresAt });
    if (!updated) {
      throw new PoolError("lease_lost", `slot ${req.slotId} is not leased to task ${req.taskId} attempt ${req.attempt}`, {
        retry: { kind: "never" },
      });
    }
    const diskBytes = await this.recentDiskUsage(req.slotId);
    return { leaseExpiresAt, diskBytes, overQuota: diskBytes > this.o.diskQuotaBytes };
  }

  private readonly measured = new Map<string, { at: number; bytes: number }>();

  /** Disk usage of a slot, measured at most every 30 s (walking a large tree on every heartbeat would be the hot path). */
  private async recentDiskUsage(id: string): Promise<number> {
    const last = this.measured.get(id);
    if (last && Date.now() - last.at < 30_000) return last.bytes;
    const bytes = await this.diskUsage(id);
    this.measured.set(id, { at: Date.now(), bytes });
    await this.o.db.updateTable("slots").set({ disk_bytes: bytes }).where("id", "=", id).execute();
    return bytes;
  }

  async release(req: ReleaseRequest): Promise<ReleaseResult> {
    const slot = await this.updateIfOwned(req, { state: "resetting" });
    if (!slot) {
      const current = await this.o.db
        .selectFrom("slots")
        .select(["state", "task_id", "attempt"])
        .where("id", "=", req.slotId)
        .executeTakeFirst();
      // Releasing twice is fine (retries): the slot is no longer ours either way.
      if (!current || current.task_id !== req.taskId || current.attempt !== req.attempt)
        return { outcome: "recycled", reason: "already released" };
      throw new PoolError("lease_lost", `slot ${req.slotId} is ${current.state}`, { retry: { kind: "never" } });
    }
    const result = await this.recycle(slot);
    await this.o.onEvent({ type: "slot.released", slotId: slot.id, taskId: req.taskId, attempt: req.attempt, ...result });
    return result;
  }

  /**
   * Returns a slot to the warm pool at its commit, with everything a task left behind gone:
   * changes, untracked and ignored files, local branches, stashes. Destroys it when that fails or
   * when it grew past the disk quota.
   */
  private async recycle(slot: SlotRow): Promise<ReleaseResult> {
    const path = this.pathOf(slot.id);
    const git = this.o.slotGit;
    this.measured.delete(slot.id);
    try {
      const diskBytes = await this.diskUsage(slot.id);
      if (diskBytes > this.o.diskQuotaBytes) {
        await this.destroy(slot.id, "over disk quota");
        return { outcome: "destroyed", reason: `over the disk quota (${diskBytes} > ${this.o.diskQuotaBytes} bytes)` };
      }
      for (const lock of ["index.lock", "HEAD.lock", "config.lock"]) await rm(join(path, ".git", lock), { force: true });
      const sha = slot.commit_sha;
      if (!sha) throw new Error("slot has no commit");
      const reset = async () => {
        await git.run(["-C", path, "checkout", "--quiet", "--force", "--detach", sha]);
        await git.run(["-C", path, "reset", "--quiet", "--hard", sha]);
        await git.run(["-C", path, "clean", "-ffdxq"]);
      };
      // Fast path: the slot owner's git, no tree walk of our own. Files of another user (a task
      // that wrote as root) make it fail: take the tree back once, then reset again.
      await reset().catch(async (err) => {
        if (!(await this.chownTree(path))) throw err;
        await reset();
      });
      const branches = (await git.run(["-C", path, "for-each-ref", "--format=%(refname)", "refs/heads/", "refs/stash"]))
        .split("\n")
        .filter(Boolean);
      for (const ref of branches) await git.run(["-C", path, "update-ref", "-d", ref]);
      const row = await this.o.db.selectFrom("mirrors").select("url").where("key", "=", slot.repo_key).executeTakeFirst();
      if (row) await git.run(["-C", path, "remote", "set-url", "origin", row.url]);
      await this.o.db
        .updateTable("slots")
        .set({
          state: "warm",
          task_id: null,
          attempt: null,
          lease_expires_at: null,
          disk_bytes: diskBytes,
          last_used_at: this.now().toISOString(),
        })
        .where("id", "=", slot.id)
        .execute();
      return { outcome: "recycled" };
    } catch (err) {
      await this.destroy(slot.id, errorMessage(err));
      return { outcome: "destroyed", reason: `reset failed: ${errorMessage(err)}` };
    }
  }

  async destroy(id: string, _reason: string): Promise<void> {
    this.measured.delete(id);
    await rm(this.pathOf(id), { recursive: true, force: true });
    await rm(`${this.pathOf(id)}.creating`, { recursive: true, force: true });
    await this.o.db.deleteFrom("slots").where("id", "=", id).execute();
  }

  /** Reclaims slots whose lease expired: a runner that died must not leak slots. */
  async reclaimExpired(): Promise<number> {
    const expired = await this.o.db
      .updateTable("slots")
      .set({ state: "resetting" })
      .where("state", "=", "leased")
      .where("lease_expires_at", "<", this.now())
      .returningAll()
      .execute();
    for (const slot of expired) {
      const r = await this.recycle(slot);
      await this.o.onEvent({
        type: "slot.reclaimed",
        slotId: slot.id,
        taskId: slot.task_id ?? "unknown",
        attempt: slot.attempt ?? 1,
        reason: `lease expired at ${slot.lease_expires_at ? new Date(slot.lease_expires_at).toISOString() : "?"}; slot ${r.outcome}`,
      });
    }
    return expired.length;
  }

  /** Destroys warm slots unused for idleMs beyond each repository's warm target (LRU eviction of idle slots). */
  async evictIdle(idleMs: number): Promise<number> {
    const idle = await this.o.db
      .selectFrom((eb) =>
        eb
          .selectFrom("slots")
          .select(["id", "last_used_at", sql<number>`row_number() over (partition by repo_key order by last_used_at desc)`.as("rank")])
          .where("state", "=", "warm")
          .as("w"),
      )
      .select("id")
      .where("rank", ">", this.o.warmSlotsPerRepo)
      .where("last_used_at", "<", new Date(this.now().getTime() - idleMs))
      .execute();
    for (const { id } of idle) {
      const claimed = await this.o.db
        .updateTable("slots")
        .set({ state: "resetting" })
        .where("id", "=", id)
        .where("state", "=", "warm")
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) > 0) await this.destroy(id, "idle");
    }
    return idle.length;
  }

  /**
   * Start-up: make disk and database agree after a crash. Half-made or half-reset slots are
   * destroyed, warm slots are checked, leased ones are left to their lease, strays are removed.
   */
  async reconcile(): Promise<{ destroyed: number; removedDirs: number }> {
    const { db, slotGit: git } = this.o;
    let destroyed = 0;
    const rows = await db.selectFrom("slots").selectAll().execute();
    const known = new Set(rows.map((r) => r.id));
    for (const row of rows) {
      const path = this.pathOf(row.id);
      const exists = await stat(path).then(
        () => true,
        () => false,
      );
      if (row.state === "creating" || row.state === "resetting" || !exists) {
        await this.destroy(row.id, "inconsistent after restart");
        destroyed++;
        continue;
      }
      if (row.state === "warm") {
        for (const lock of ["index.lock", "HEAD.lock", "config.lock"]) await rm(join(path, ".git", lock), { force: true });
        const ok = await git.run(["-C", path, "rev-parse", "--verify", "HEAD"]).then(
          (sha) => sha.trim() === row.commit_sha,
          () => false,
        );
        if (!ok) {
          await this.destroy(row.id, "damaged");
          destroyed++;
        }
      }
    }
    let removedDirs = 0;
    for (const entry of await readdir(this.slotsDir)) {
      if (!known.has(entry) || entry.endsWith(".creating")) {
        await rm(join(this.slotsDir, entry), { recursive: true, force: true });
        removedDirs++;
      }
    }
    return { destroyed, removedDirs };
  }

  async status(): Promise<PoolStatus> {
    const rows = await this.o.db
      .selectFrom("slots")
      .select(["state", sql<number>`count(*)`.as("n")])
      .groupBy("state")
      .execute();
    const by = Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
    const mirrors = await this.o.db.selectFrom("mirrors").select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow();
    return {
      slots: {
        total: Object.values(by).reduce((a, b) => a + b, 0),
        warm: by.warm ?? 0,
        leased: by.leased ?? 0,
        creating: by.creating ?? 0,
      },
      mirrors: Number(mirrors.n),
      limits: { maxSlots: this.o.maxSlots, maxSlotsPerRepo: this.o.maxSlotsPerRepo },
    };
  }

  async diskUsage(id: string): Promise<number> {
    const { stdout } = await execFileP("du", ["-sb", this.pathOf(id)], { timeout: 60_000 });
    return Number.parseInt(stdout.split("\t")[0] ?? "0", 10);
  }

  /** Hands a tree to the slot owner; false when there is nothing to do (not root, or no owner configured). */
  private async chownTree(path: string): Promise<boolean> {
    const owner = this.o.slotOwner;
    if (!owner || process.getuid?.() !== 0) return false;
    await execFileP("chown", ["-R", `${owner.uid}:${owner.gid}`, "--", path]);
    return true;
  }
}

import { execFile } from "node:child_process";
import { chown, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import type {
  AdoptRequest,
  AllocateRequest,
  AllocateResult,
  HeartbeatRequest,
  HeartbeatResult,
  PoolStatus,
  ReleaseRequest,
  ReleaseResult,
} from "@codefleet/contracts";
import { CodefleetError, errorMessage, type SlotLayout, slotLayout, ulid } from "@codefleet/contracts";
import { sql } from "kysely";
import { assertSafeRef, type GitRunner, parseRemoteUrl } from "../git/git.js";
import type { RepoAccess } from "../git/repo-access.js";
import type { Db, SlotRow } from "../store/database.js";
import type { Mirror, MirrorCache } from "./mirrors.js";
import type { SlotDisk } from "./slot-disk.js";

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
  /** git on the trusted side (mirrors and slot git directories), as the git user: never root. */
  git: GitRunner;
  /**
   * git that writes a slot's working tree, as the agents' uid: a reset or clean of a tree an agent
   * wrote can do no more than the agent could, and the files stay the agents' without a `chown -R`.
   */
  treeGit: GitRunner;
  db: Db;
  mirrors: MirrorCache;
  /** Which repository URLs may be used and with which credentials. */
  access: RepoAccess;
  maxSlots: number;
  maxSlotsPerRepo: number;
  warmSlotsPerRepo: number;
  diskQuotaBytes: number;
  /** The disk of slot trees: a filesystem of the quota's size per slot (enforced), or sampled. */
  disk: SlotDisk;
  /** Owner of the trusted side (mirrors, slot git dirs) when repo-pool runs as root. */
  gitOwner?: { uid: number; gid: number };
  /** Owner of slot working trees: the uid agents run as in their containers. */
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
    await this.o.treeGit.run(["--version"], { cwd: this.slotsDir }).catch((err: unknown) => {
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

  layoutOf(id: string): SlotLayout {
    return slotLayout(this.pathOf(id));
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

  /** Allocations under way, by task attempt: a retried request (its first was lost with the connection) joins it. */
  private readonly allocating = new Map<string, Promise<AllocateResult>>();

  allocate(req: AllocateRequest): Promise<AllocateResult> {
    const key = `${req.taskId}/${req.attempt}`;
    let p = this.allocating.get(key);
    if (!p) {
      p = this.allocateOnce(req).finally(() => this.allocating.delete(key));
      this.allocating.set(key, p);
    }
    return p;
  }

  private async allocateOnce(req: AllocateRequest): Promise<AllocateResult> {
    const remote = parseRemoteUrl(req.repoUrl);
    this.o.access.check(remote.clean);
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
      // Never hand out the wrong base: a crash mid-checkout leaves HEAD behind the tree's commit.
      await this.assertHead(slot.id, resolved.sha);
      slot = await db
        .updateTable("slots")
        .set({
          state: "leased",
          ref: resolved.ref,
          commit_sha: resolved.sha,
          reserved: req.reservation === true,
          last_used_at: this.now().toISOString(),
        })
        .where("id", "=", slot.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await db.updateTable("mirrors").set({ last_used_at: sql`now()` }).where("key", "=", mirror.key).execute();
    } catch (err) {
      await this.destroy(slot.id, `allocation failed: ${errorMessage(err)}`).catch(() => undefined);
      throw err;
    }
    if (!req.reservation)
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

  /**
   * A task attempt takes over a slot its runner holds as a warm-pool reservation (a container is
   * already bound to it), when the ref still resolves to the slot's commit. Idempotent per attempt.
   */
  async adopt(req: AdoptRequest): Promise<AllocateResult> {
    const remote = parseRemoteUrl(req.repoUrl);
    this.o.access.check(remote.clean);
    if (req.ref !== undefined) assertSafeRef(req.ref);
    const { db } = this.o;
    const leaseExpiresAt = this.leaseUntil(req.leaseTtlMs);
    const row = await db.selectFrom("slots").selectAll().where("id", "=", req.slotId).executeTakeFirst();
    // a retried adopt of the same attempt: the slot is already its own
    if (row?.state === "leased" && row.task_id === req.taskId && row.attempt === req.attempt) {
      const mine = await this.updateIfOwned(req, { lease_expires_at: leaseExpiresAt });
      if (mine) return this.result(mine, remote.clean, true, leaseExpiresAt);
    }
    const lost = () =>
      new PoolError("lease_lost", `slot ${req.slotId} is not reserved by ${req.reservation.taskId}`, { retry: { kind: "never" } });
    if (!row || row.state !== "leased" || !row.reserved || row.task_id !== req.reservation.taskId) throw lost();
    if (row.repo_key !== this.o.mirrors.keyOf(remote.clean))
      throw new PoolError("slot_mismatch", `slot ${req.slotId} holds another repository`, { retry: { kind: "never" } });
    // One ls-remote says where the ref is now (no fetch: the slot has its commit already); the
    // mirror answers when it is within its refresh window.
    const upstream = await this.o.mirrors.remoteSha(remote, req.ref);
    const resolved = upstream
      ? { sha: upstream, ref: req.ref ?? row.ref ?? "" }
      : await this.o.mirrors.resolve(await this.o.mirrors.sync(remote, req.ref), req.ref);
    if (row.commit_sha !== resolved.sha)
      throw new PoolError(
        "slot_stale",
        `slot ${req.slotId} is at ${row.commit_sha?.slice(0, 12)}, the ref is at ${resolved.sha.slice(0, 12)}`,
        {
          retry: { kind: "never" },
        },
      );
    const slot = await db
      .updateTable("slots")
      .set({
        task_id: req.taskId,
        attempt: req.attempt,
        reserved: false,
        ref: resolved.ref,
        lease_expires_at: leaseExpiresAt,
        last_used_at: this.now().toISOString(),
      })
      .where("id", "=", req.slotId)
      .where("state", "=", "leased")
      .where("reserved", "=", true)
      .where("task_id", "=", req.reservation.taskId)
      .where("attempt", "=", req.reservation.attempt)
      .returningAll()
      .executeTakeFirst();
    if (!slot) throw lost();
    // announced without holding up the task's first command (onEvent never throws)
    void this.o.onEvent({ type: "slot.allocated", slot, taskId: req.taskId, attempt: req.attempt, repoUrl: remote.clean, warm: true });
    return this.result(slot, remote.clean, true, leaseExpiresAt);
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

  /** Environment of the tree git: the trusted git dir read-only, the tree and its index written. */
  private treeEnv(layout: SlotLayout): Record<string, string> {
    return { GIT_DIR: layout.gitDir, GIT_WORK_TREE: layout.tree, GIT_INDEX_FILE: layout.index };
  }

  private async createOnDisk(id: string, mirror: Mirror, cleanUrl: string, sha: string): Promise<void> {
    const { git } = this.o;
    const final = this.pathOf(id);
    const tmp = `${final}.creating`;
    const layout = slotLayout(tmp);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { mode: 0o755 });
    await this.chownTo(tmp, this.o.gitOwner);
    // A local clone hard-links the mirror's objects: fast, and independent of the mirror afterwards.
    await git.run(["clone", "--bare", "--quiet", "--", mirror.path, layout.gitDir], { allowFileProtocol: true });
    await git.run(["--git-dir", layout.gitDir, "remote", "set-url", "origin", cleanUrl]);
    await git.run(["--git-dir", layout.gitDir, "config", "gc.auto", "0"]);
    await this.o.disk.create(tmp, layout.tree, this.o.slotOwner);
    await mkdir(layout.indexDir, { mode: 0o755 });
    await this.chownTo(layout.indexDir, this.o.slotOwner);
    // The tree first, HEAD last: HEAD at the commit means the tree was completed.
    await this.o.treeGit.run(["read-tree", "-u", "--reset", sha], { env: this.treeEnv(layout) });
    await git.run(["--git-dir", layout.gitDir, "update-ref", "--no-deref", "HEAD", sha]);
    await rename(tmp, final);
  }

  private async checkout(id: string, mirror: Mirror, sha: string): Promise<void> {
    const layout = this.layoutOf(id);
    const { git } = this.o;
    const has = await git.run(["--git-dir", layout.gitDir, "cat-file", "-e", `${sha}^{commit}`]).then(
      () => true,
      () => false,
    );
    if (!has)
      await git.run(
        [
          "--git-dir",
          layout.gitDir,
          "fetch",
          "--quiet",
          "--force",
          "--prune",
          "--no-write-fetch-head",
          "--",
          mirror.path,
          "+refs/heads/*:refs/heads/*",
          "+refs/tags/*:refs/tags/*",
        ],
        { allowFileProtocol: true },
      );
    await this.resetTree(layout, sha);
    await git.run(["--git-dir", layout.gitDir, "update-ref", "--no-deref", "HEAD", sha]);
  }

  /**
   * Puts a slot's working tree back at `sha` with nothing an attempt left: changed and deleted
   * files restored, untracked and ignored files gone, and every `.git` anywhere in the tree (the
   * agent's own disposable git, or anything planted) removed. Runs as the agents' uid.
   */
  private async resetTree(layout: SlotLayout, sha: string): Promise<void> {
    const env = this.treeEnv(layout);
    const tree = this.o.treeGit;
    await rm(`${layout.index}.lock`, { force: true });
    const reset = async () => {
      await tree.run(["read-tree", "-u", "--reset", sha], { env });
      await tree.run(["clean", "-ffdxq"], { env, cwd: layout.tree });
      await removeGitDirs(layout.tree, this.o.slotOwner);
      const left = await tree.run(["ls-files", "-z", "--others"], { env, cwd: layout.tree, maxOutputBytes: 1024 * 1024 });
      if (left) throw new PoolError("slot_not_clean", `untracked files survived the reset: ${left.split("\0").slice(0, 5).join(", ")}`);
    };
    // An agent may leave directories it made unreadable: give them back to their owner once, then reset again.
    await reset().catch(async () => {
      await execFileP("chmod", ["-R", "u+rwX", "--", layout.tree], { timeout: 300_000, ...this.asSlotOwner() });
      await reset();
    });
  }

  private async assertHead(id: string, sha: string): Promise<void> {
    const head = (await this.o.git.run(["--git-dir", this.layoutOf(id).gitDir, "rev-parse", "--verify", "HEAD"]).catch(() => "")).trim();
    if (head !== sha) throw new PoolError("slot_damaged", `slot ${id} is at ${head.slice(0, 12) || "no commit"}, not ${sha.slice(0, 12)}`);
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
    if (this.o.disk.kind === "loop") {
      // the kernel enforces the limit; a full tree is what the runner needs to know
      const tree = this.layoutOf(req.slotId).tree;
      const [diskBytes, full] = await Promise.all([this.o.disk.usage(tree), this.o.disk.full(tree)]);
      return { leaseExpiresAt, diskBytes, overQuota: full };
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
    if (!slot.reserved)
      await this.o.onEvent({ type: "slot.released", slotId: slot.id, taskId: req.taskId, attempt: req.attempt, ...result });
    return result;
  }

  /**
   * Returns a slot to the warm pool at its commit, with everything a task left behind gone.
   * Attempts never write the slot's git directory (the runner commits into a scratch object store
   * of its own), so only the tree needs restoring. Destroys the slot when that fails or when it
   * grew past the disk quota.
   */
  private async recycle(slot: SlotRow): Promise<ReleaseResult> {
    this.measured.delete(slot.id);
    try {
      const diskBytes = await this.diskUsage(slot.id);
      if (this.o.disk.kind === "sampled" && diskBytes > this.o.diskQuotaBytes) {
        await this.destroy(slot.id, "over disk quota");
        return { outcome: "destroyed", reason: `over the disk quota (${diskBytes} > ${this.o.diskQuotaBytes} bytes)` };
      }
      const sha = slot.commit_sha;
      if (!sha) throw new Error("slot has no commit");
      await this.assertHead(slot.id, sha);
      await this.resetTree(this.layoutOf(slot.id), sha);
      await this.o.db
        .updateTable("slots")
        .set({
          state: "warm",
          reserved: false,
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
    for (const root of [this.pathOf(id), `${this.pathOf(id)}.creating`]) {
      await this.o.disk.release(root, slotLayout(root).tree);
      await rm(root, { recursive: true, force: true });
    }
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
      // Its runner is gone or cut off, and its container may still be writing the tree: never
      // hand that tree to another task. The slot is destroyed; the next allocation makes a new one.
      await this.destroy(slot.id, "lease expired");
      if (slot.reserved) continue;
      await this.o.onEvent({
        type: "slot.reclaimed",
        slotId: slot.id,
        taskId: slot.task_id ?? "unknown",
        attempt: slot.attempt ?? 1,
        reason: `lease expired at ${slot.lease_expires_at ? new Date(slot.lease_expires_at).toISOString() : "?"}; slot destroyed`,
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
    const { db } = this.o;
    let destroyed = 0;
    const rows = await db.selectFrom("slots").selectAll().execute();
    const known = new Set(rows.map((r) => r.id));
    for (const row of rows) {
      const path = this.pathOf(row.id);
      const exists = await stat(path).then(
        () => true,
        () => false,
      );
      const usable = exists && (await this.o.disk.restore(path, slotLayout(path).tree));
      if (row.state === "creating" || row.state === "resetting" || !usable) {
        await this.destroy(row.id, "inconsistent after restart");
        destroyed++;
        continue;
      }
      if (row.state === "warm") {
        const ok = row.commit_sha
          ? await this.assertHead(row.id, row.commit_sha).then(
              () => true,
              () => false,
            )
          : false;
        const layout = this.layoutOf(row.id);
        const parts = await Promise.all(
          [layout.tree, layout.indexDir].map((p) =>
            stat(p).then(
              () => true,
              () => false,
            ),
          ),
        );
        if (!ok || parts.includes(false)) {
          await this.destroy(row.id, "damaged");
          destroyed++;
        }
      }
    }
    let removedDirs = 0;
    for (const entry of await readdir(this.slotsDir)) {
      if (!known.has(entry) || entry.endsWith(".creating")) {
        const stray = join(this.slotsDir, entry);
        await this.o.disk.release(stray, slotLayout(stray).tree);
        await rm(stray, { recursive: true, force: true });
        removedDirs++;
      }
    }
    return { destroyed, removedDirs };
  }

  /**
   * Unmounts every slot's tree filesystem (a graceful stop): the images stay, and `reconcile`
   * mounts them again at the next start.
   */
  async unmountAll(): Promise<void> {
    if (this.o.disk.kind !== "loop") return;
    for (const entry of await readdir(this.slotsDir).catch(() => [] as string[])) {
      const root = join(this.slotsDir, entry);
      await this.o.disk.release(root, slotLayout(root).tree).catch(() => undefined);
    }
  }

  async status(): Promise<PoolStatus> {
    const rows = await this.o.db
      .selectFrom("slots")
      .select(["state", sql<number>`count(*)`.as("n")])
      .groupBy("state")
      .execute();
    const by = Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
    const mirrors = await this.o.db.selectFrom("mirrors").select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow();
    const reserved = await this.o.db
      .selectFrom("slots")
      .select(sql<number>`count(*)`.as("n"))
      .where("state", "=", "leased")
      .where("reserved", "=", true)
      .executeTakeFirstOrThrow();
    return {
      slots: {
        total: Object.values(by).reduce((a, b) => a + b, 0),
        warm: by.warm ?? 0,
        leased: by.leased ?? 0,
        creating: by.creating ?? 0,
        reserved: Number(reserved.n),
      },
      mirrors: Number(mirrors.n),
      limits: { maxSlots: this.o.maxSlots, maxSlotsPerRepo: this.o.maxSlotsPerRepo },
    };
  }

  /** Bytes in the slot's working tree (what the task wrote counts; the trusted git dir is ours). */
  async diskUsage(id: string): Promise<number> {
    return this.o.disk.usage(this.layoutOf(id).tree);
  }

  private asSlotOwner(): { uid?: number; gid?: number } {
    const owner = this.o.slotOwner;
    return owner && process.getuid?.() === 0 ? { uid: owner.uid, gid: owner.gid } : {};
  }

  private async chownTo(path: string, owner: { uid: number; gid: number } | undefined): Promise<void> {
    if (owner && process.getuid?.() === 0) await chown(path, owner.uid, owner.gid);
  }
}

/**
 * Removes every entry named `.git` below a working tree (git's own clean never touches them).
 * `find -P` never follows a symlink and `rm -rf` removes a link, not its target; both run as the
 * tree's owner.
 */
async function removeGitDirs(tree: string, owner: { uid: number; gid: number } | undefined): Promise<void> {
  const as = owner && process.getuid?.() === 0 ? { uid: owner.uid, gid: owner.gid } : {};
  await execFileP("find", ["-P", tree, "-name", ".git", "-prune", "-exec", "rm", "-rf", "--", "{}", "+"], {
    timeout: 300_000,
    ...as,
  });
}

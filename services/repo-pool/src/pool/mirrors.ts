import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { sql } from "kysely";
import { GitError, type GitRunner, type RemoteUrl } from "../git/git.js";
import type { RepoAccess } from "../git/repo-access.js";
import type { Db } from "../store/database.js";

export type Mirror = { key: string; path: string; remote: RemoteUrl };
export type ResolvedRef = { ref: string; fullRef: string; sha: string };

/**
 * One bare mirror per remote repository, fetched (never re-cloned) and shared by every slot of
 * that repository. Fetches of one mirror are serialized and concurrent requests share one fetch.
 */
export class MirrorCache {
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly fetchedAt = new Map<string, number>();

  constructor(
    private readonly deps: {
      root: string;
      git: GitRunner;
      db: Db;
      access: RepoAccess;
      /** Skip the upstream fetch when the mirror was fetched this recently (0: fetch on every allocation). */
      refreshMs: number;
    },
  ) {}

  async init(): Promise<void> {
    await mkdir(this.deps.root, { recursive: true });
  }

  keyOf(cleanUrl: string): string {
    const base =
      (cleanUrl.split(/[/:]/).pop() ?? "repo")
        .replace(/\.git$/, "")
        .replace(/[^A-Za-z0-9_-]/g, "_")
        .slice(0, 40) || "repo";
    return `${base}-${createHash("sha256").update(cleanUrl).digest("hex").slice(0, 12)}`;
  }

  pathOf(key: string): string {
    return join(this.deps.root, `${key}.git`);
  }

  /**
   * Makes the mirror exist and be fresh. A full commit sha the mirror already holds needs no
   * fetch: a sha never moves, so the upstream round trip is skipped.
   */
  async sync(remote: RemoteUrl, ref?: string): Promise<Mirror> {
    const key = this.keyOf(remote.clean);
    const mirror = { key, path: this.pathOf(key), remote };
    if (ref && /^[0-9a-f]{40}$/.test(ref) && this.fetchedAt.has(key) && !this.inflight.has(key)) {
      const has = await this.deps.git.run(["--git-dir", mirror.path, "cat-file", "-e", `${ref}^{commit}`]).then(
        () => true,
        () => false,
      );
      if (has) return mirror;
    }
    const last = this.fetchedAt.get(key);
    if (last && this.deps.refreshMs > 0 && Date.now() - last < this.deps.refreshMs && !this.inflight.has(key)) return mirror;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.fetchOrClone(mirror).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    await p;
    return mirror;
  }

  private async fetchOrClone(m: Mirror): Promise<void> {
    const { git, db } = this.deps;
    const { file } = this.deps.access.check(m.remote.clean);
    const credentials = this.deps.access.credentialsFor(m.remote);
    const opts = { allowFileProtocol: file, ...(credentials ? { credentials } : {}) };
    const exists = await stat(join(m.path, "HEAD")).then(
      () => true,
      () => false,
    );
    if (exists) {
      await git.run(["--git-dir", m.path, "fetch", "--prune", "--force", "--quiet", "--no-write-fetch-head", "origin"], opts);
    } else {
      // Clone next to the final path and rename: a mirror is never visible half-made.
      const tmp = `${m.path}.tmp-${randomBytes(4).toString("hex")}`;
      try {
        await git.run(["clone", "--mirror", "--quiet", "--", m.remote.clean, tmp], opts);
        // never keep objects that slots might still have borrowed... slots are independent clones, but keep gc conservative anyway
        await git.run(["--git-dir", tmp, "config", "gc.auto", "0"]);
        await rename(tmp, m.path);
      } catch (err) {
        await rm(tmp, { recursive: true, force: true });
        throw err;
      }
    }
    this.fetchedAt.set(m.key, Date.now());
    await db
      .insertInto("mirrors")
      .values({ key: m.key, url: m.remote.clean, last_fetched_at: new Date().toISOString() })
      .onConflict((oc) => oc.column("key").doUpdateSet({ last_fetched_at: sql`now()`, last_used_at: sql`now()` }))
      .execute();
  }

  /**
   * The commit a ref points to upstream now, by one `ls-remote` (no fetch): what a reserved slot is
   * checked against before a task adopts it. Undefined when the mirror is fresh enough to answer
   * (the refresh window) or the remote does not say; a commit sha is its own answer.
   */
  async remoteSha(remote: RemoteUrl, ref?: string): Promise<string | undefined> {
    if (ref && /^[0-9a-f]{40}$/.test(ref)) return ref;
    const last = this.fetchedAt.get(this.keyOf(remote.clean));
    if (last && this.deps.refreshMs > 0 && Date.now() - last < this.deps.refreshMs) return undefined;
    const { file } = this.deps.access.check(remote.clean);
    const credentials = this.deps.access.credentialsFor(remote);
    const patterns = ref ? [`refs/heads/${ref}`, `refs/tags/${ref}`] : ["HEAD"];
    const out = await this.deps.git.run(["ls-remote", "--", remote.clean, ...patterns], {
      allowFileProtocol: file,
      ...(credentials ? { credentials } : {}),
      maxOutputBytes: 1024 * 1024,
    });
    const refs = new Map<string, string>();
    for (const line of out.split("\n")) {
      const [sha, name] = line.split("\t");
      if (sha && name && /^[0-9a-f]{40}$/.test(sha)) refs.set(name, sha);
    }
    if (!ref) return refs.get("HEAD");
    return refs.get(`refs/heads/${ref}`) ?? refs.get(`refs/tags/${ref}^{}`) ?? refs.get(`refs/tags/${ref}`);
  }

  /** Resolves a branch, tag or commit in the mirror; the remote's default branch when no ref is given. */
  async resolve(m: Mirror, ref?: string): Promise<ResolvedRef> {
    const { git } = this.deps;
    if (!ref) {
      const head = (await git.run(["--git-dir", m.path, "symbolic-ref", "HEAD"]).catch(() => "")).trim();
      if (!head) throw new GitError("ref_not_found", "the remote has no default branch (empty repository?)", "");
      const sha = (await git.run(["--git-dir", m.path, "rev-parse", "--verify", "--quiet", `${head}^{commit}`]).catch(() => "")).trim();
      if (!sha) throw new GitError("ref_not_found", `the remote's default branch ${head} has no commits`, "");
      return { ref: head.replace(/^refs\/heads\//, ""), fullRef: head, sha };
    }
    const candidates = /^[0-9a-f]{40}$/.test(ref) ? [ref] : [`refs/heads/${ref}`, `refs/tags/${ref}`, ref];
    for (const c of candidates) {
      const sha = (
        await git.run(["--git-dir", m.path, "rev-parse", "--verify", "--quiet", "--end-of-options", `${c}^{commit}`]).catch(() => "")
      ).trim();
      if (sha) return { ref, fullRef: c, sha };
    }
    throw new GitError("ref_not_found", `ref '${ref}' does not exist in ${m.remote.clean}`, "");
  }

  /** Mirrors unused for a while and with no slot are deleted (LRU eviction of cold mirrors). */
  async evictCold(idleMs: number): Promise<string[]> {
    const { db } = this.deps;
    const cold = await db
      .selectFrom("mirrors")
      .select("key")
      .where("last_used_at", "<", sql<Date>`now() - make_interval(secs => ${idleMs / 1000})`)
      .where(({ not, exists, selectFrom }) => not(exists(selectFrom("slots").select("id").whereRef("slots.repo_key", "=", "mirrors.key"))))
      .execute();
    for (const { key } of cold) {
      if (this.inflight.has(key)) continue;
      await rm(this.pathOf(key), { recursive: true, force: true });
      await db.deleteFrom("mirrors").where("key", "=", key).execute();
      this.fetchedAt.delete(key);
    }
    return cold.map((c) => c.key);
  }

  /** Start-up clean-up: half-made clones and lock files left by a killed git. */
  async reconcile(): Promise<void> {
    for (const entry of await readdir(this.deps.root)) {
      const path = join(this.deps.root, entry);
      if (entry.includes(".tmp-")) {
        await rm(path, { recursive: true, force: true });
        continue;
      }
      for (const lock of ["HEAD.lock", "packed-refs.lock", "config.lock", "shallow.lock", "index.lock"])
        await rm(join(path, lock), { force: true });
    }
    const rows = await this.deps.db.selectFrom("mirrors").select("key").execute();
    for (const { key } of rows) {
      const ok = await stat(join(this.pathOf(key), "HEAD")).then(
        () => true,
        () => false,
      );
      if (!ok) await this.deps.db.deleteFrom("mirrors").where("key", "=", key).execute();
    }
  }
}

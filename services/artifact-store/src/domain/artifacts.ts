import type { Readable } from "node:stream";
import { type ArtifactKind, CodefleetError, createEvent, ulid } from "@codefleet/contracts";
import type { Bus } from "@codefleet/platform/bus";
import type { Logger } from "@codefleet/platform/runtime";
import type { Meter } from "@opentelemetry/api";
import { sql } from "kysely";
import { type BlobStore, CorruptBlobError } from "../store/blob-store.js";
import type { ArtifactRow, Db } from "../store/database.js";
import { assertArtifactName } from "./names.js";

export type { Artifact } from "../client.js";

import type { Artifact } from "../client.js";

export function toArtifact(r: ArtifactRow): Artifact {
  return {
    id: r.id,
    taskId: r.task_id,
    attempt: r.attempt,
    kind: r.kind as ArtifactKind,
    name: r.name,
    size: Number(r.size),
    sha256: r.sha256,
    contentType: r.content_type,
    createdAt: new Date(r.created_at).toISOString(),
  };
}

export class ArtifactConflictError extends CodefleetError {
  override readonly name = "ArtifactConflictError";
  constructor(existing: Artifact) {
    super(
      "artifact_conflict",
      `artifact '${existing.name}' of task ${existing.taskId} attempt ${existing.attempt} already exists with different content`,
      {
        retry: { kind: "never" },
        details: { artifactId: existing.id },
      },
    );
  }
}

/** A Postgres advisory-lock key for a blob: uploads and garbage collection of one hash are serialized. */
const blobLock = (sha256: string) => sql`select pg_advisory_xact_lock(${Number.parseInt(sha256.slice(0, 12), 16)})`;

export type UploadInput = {
  taskId: string;
  /** The tenant of the task (domain/tenancy.ts): recorded with the artifact, checked on every read. */
  tenant: string;
  attempt: number;
  name: string;
  kind: ArtifactKind;
  contentType: string;
  body: Readable;
};

export class ArtifactService {
  private readonly verified = new Map<string, number>();
  private readonly bytesStored;
  private readonly uploads;

  constructor(
    private readonly deps: {
      db: Db;
      blobs: BlobStore;
      bus: Bus;
      log: Logger;
      meter: Meter;
      maxArtifactBytes: number;
      verifyCacheMs: number;
    },
  ) {
    this.bytesStored = deps.meter.createCounter("codefleet_artifact_bytes_stored_total", {
      description: "bytes of new blobs written",
      unit: "By",
    });
    this.uploads = deps.meter.createCounter("codefleet_artifact_uploads_total", { description: "artifact uploads by outcome" });
  }

  /**
   * Stores an artifact. Idempotent: the same task, attempt, name and content return the existing
   * artifact (and re-announce it); the same name with other content is a conflict.
   */
  async upload(input: UploadInput): Promise<{ artifact: Artifact; created: boolean }> {
    assertArtifactName(input.name);
    const { db, blobs } = this.deps;
    const staged = await blobs.stage(input.body, this.deps.maxArtifactBytes);
    let result: { artifact: Artifact; created: boolean };
    try {
      result = await db.transaction().execute(async (trx) => {
        await blobLock(staged.sha256).execute(trx);
        const existing = await trx
          .selectFrom("artifacts")
          .selectAll()
          .where("task_id", "=", input.taskId)
          .where("attempt", "=", input.attempt)
          .where("name", "=", input.name)
          .executeTakeFirst();
        if (existing) {
          if (existing.sha256 !== staged.sha256) throw new ArtifactConflictError(toArtifact(existing));
          return { artifact: toArtifact(existing), created: false };
        }
        await blobs.commit(staged);
        const newBlob = await trx
          .insertInto("blobs")
          .values({ sha256: staged.sha256, size: staged.size })
          .onConflict((oc) => oc.column("sha256").doUpdateSet({ last_used_at: sql`now()` }))
          .returning(sql<boolean>`(xmax = 0)`.as("inserted"))
          .executeTakeFirstOrThrow();
        if (newBlob.inserted) this.bytesStored.add(staged.size);
        const row = await trx
          .insertInto("artifacts")
          .values({
            id: `art_${ulid()}`,
            task_id: input.taskId,
            tenant: input.tenant,
            attempt: input.attempt,
            kind: input.kind,
            name: input.name,
            size: staged.size,
            sha256: staged.sha256,
            content_type: input.contentType,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        return { artifact: toArtifact(row), created: true };
      });
    } finally {
      await blobs.discard(staged); // no-op when committed
    }
    this.uploads.add(1, { outcome: result.created ? "created" : "existing" });
    await this.announce(result.artifact);
    return result;
  }

  /** Publishes artifact.stored with an id derived from the artifact, so re-announcing de-duplicates. */
  private async announce(a: Artifact): Promise<void> {
    await this.deps.bus.publish(
      createEvent("artifact.stored", {
        id: `artifact-stored-${a.id}`,
        taskId: a.taskId,
        attempt: a.attempt,
        producer: "artifact-store",
        data: { artifactId: a.id, kind: a.kind, name: a.name, size: a.size, sha256: a.sha256, contentType: a.contentType },
      }),
    );
  }

  async get(id: string): Promise<Artifact | undefined> {
    return (await this.getOwned(id))?.artifact;
  }

  /** An artifact with the tenant it belongs to. */
  async getOwned(id: string): Promise<{ artifact: Artifact; tenant: string } | undefined> {
    const row = await this.deps.db.selectFrom("artifacts").selectAll().where("id", "=", id).executeTakeFirst();
    return row ? { artifact: toArtifact(row), tenant: row.tenant } : undefined;
  }

  /** A task's artifacts; with `tenant`, only that tenant's. */
  async listByTask(taskId: string, attempt?: number, tenant?: string): Promise<Artifact[]> {
    let q = this.deps.db.selectFrom("artifacts").selectAll().where("task_id", "=", taskId);
    if (attempt !== undefined) q = q.where("attempt", "=", attempt);
    if (tenant !== undefined) q = q.where("tenant", "=", tenant);
    return (await q.orderBy("attempt").orderBy("created_at").orderBy("name").execute()).map(toArtifact);
  }

  /**
   * Opens an artifact's content after checking the blob still hashes to its name (cached for a
   * short while, so repeated range reads of a large blob do not re-hash it every time).
   */
  async open(a: Artifact, range?: { start: number; end: number }): Promise<Readable> {
    const checkedAt = this.verified.get(a.sha256);
    if (!checkedAt || Date.now() - checkedAt > this.deps.verifyCacheMs) {
      try {
        await this.deps.blobs.verify(a.sha256);
      } catch (err) {
        this.verified.delete(a.sha256);
        if (err instanceof CorruptBlobError) this.deps.log.error({ artifactId: a.id, sha256: a.sha256 }, err.message);
        throw err;
      }
      this.verified.set(a.sha256, Date.now());
      if (this.verified.size > 10_000) this.verified.delete(this.verified.keys().next().value as string);
    }
    return this.deps.blobs.read(a.sha256, range);
  }

  /**
   * Retention: deletes artifacts older than maxAgeDays and all but the newest maxPerTask of a task,
   * then blobs no artifact references. A dry run reports what would go and deletes nothing.
   */
  async applyRetention(policy: {
    maxAgeDays?: number;
    maxPerTask?: number;
    dryRun: boolean;
  }): Promise<{ artifacts: Artifact[]; blobs: string[]; bytesFreed: number }> {
    const { db } = this.deps;
    const doomed = new Map<string, ArtifactRow>();
    if (policy.maxAgeDays !== undefined && policy.maxAgeDays > 0) {
      const old = await db
        .selectFrom("artifacts")
        .selectAll()
        .where("created_at", "<", sql<Date>`now() - make_interval(days => ${policy.maxAgeDays})`)
        .execute();
      for (const r of old) doomed.set(r.id, r);
    }
    if (policy.maxPerTask !== undefined && policy.maxPerTask > 0) {
      const ranked = await db
        .selectFrom((eb) =>
          eb
            .selectFrom("artifacts")
            .selectAll()
            .select(sql<number>`row_number() over (partition by task_id order by created_at desc, id desc)`.as("rank"))
            .as("ranked"),
        )
        .selectAll()
        .where("rank", ">", policy.maxPerTask)
        .execute();
      for (const r of ranked) doomed.set(r.id, r as ArtifactRow);
    }
    const artifacts = [...doomed.values()].map(toArtifact);
    if (policy.dryRun) {
      const shas = [...new Set(artifacts.map((a) => a.sha256))];
      const stillUsed = shas.length
        ? new Set(
            (
              await db
                .selectFrom("artifacts")
                .select("sha256")
                .where("sha256", "in", shas)
                .where("id", "not in", [...doomed.keys()])
                .execute()
            ).map((r) => r.sha256),
          )
        : new Set<string>();
      const freed = shas.filter((s) => !stillUsed.has(s));
      const bytes = artifacts
        .filter((a, i, all) => freed.includes(a.sha256) && all.findIndex((b) => b.sha256 === a.sha256) === i)
        .reduce((n, a) => n + a.size, 0);
      return { artifacts, blobs: freed, bytesFreed: bytes };
    }
    if (doomed.size > 0)
      await db
        .deleteFrom("artifacts")
        .where("id", "in", [...doomed.keys()])
        .execute();
    const gc = await this.collectGarbage();
    return { artifacts, ...gc };
  }

  /** Deletes blobs no artifact references, each under its advisory lock so a concurrent upload of the same content wins. */
  async collectGarbage(): Promise<{ blobs: string[]; bytesFreed: number }> {
    const { db, blobs } = this.deps;
    const candidates = await db
      .selectFrom("blobs")
      .select(["sha256", "size"])
      .where(({ not, exists, selectFrom }) =>
        not(exists(selectFrom("artifacts").select("id").whereRef("artifacts.sha256", "=", "blobs.sha256"))),
      )
      .execute();
    const removed: string[] = [];
    let bytesFreed = 0;
    for (const c of candidates) {
      await db.transaction().execute(async (trx) => {
        await blobLock(c.sha256).execute(trx);
        const deleted = await trx
          .deleteFrom("blobs")
          .where("sha256", "=", c.sha256)
          .where(({ not, exists, selectFrom }) =>
            not(exists(selectFrom("artifacts").select("id").whereRef("artifacts.sha256", "=", "blobs.sha256"))),
          )
          .executeTakeFirst();
        if (Number(deleted.numDeletedRows) > 0) {
          await blobs.remove(c.sha256);
          removed.push(c.sha256);
          bytesFreed += Number(c.size);
        }
      });
    }
    return { blobs: removed, bytesFreed };
  }
}

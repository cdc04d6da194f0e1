import { type Kysely, sql } from "kysely";

// Frozen in time: never import application types here.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("mirrors")
    .addColumn("key", "text", (c) => c.primaryKey())
    .addColumn("url", "text", (c) => c.notNull())
    .addColumn("last_fetched_at", "timestamptz")
    .addColumn("last_used_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createTable("slots")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("repo_key", "text", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("task_id", "text")
    .addColumn("attempt", "integer")
    .addColumn("ref", "text")
    .addColumn("commit_sha", "text")
    .addColumn("lease_expires_at", "timestamptz")
    .addColumn("disk_bytes", "bigint")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("last_used_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("slots_repo_state_idx").on("slots").columns(["repo_key", "state"]).execute();
  await db.schema.createIndex("slots_lease_idx").on("slots").columns(["state", "lease_expires_at"]).execute();
  await db.schema.createIndex("slots_owner_idx").on("slots").columns(["task_id", "attempt"]).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("slots").execute();
  await db.schema.dropTable("mirrors").execute();
}

import { type Kysely, sql } from "kysely";

// Frozen in time: never import application types here.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("events")
    .addColumn("position", "bigserial", (c) => c.primaryKey())
    .addColumn("stream_id", "text", (c) => c.notNull())
    .addColumn("stream_version", "integer", (c) => c.notNull())
    .addColumn("event_id", "text", (c) => c.notNull().unique())
    .addColumn("type", "text", (c) => c.notNull())
    .addColumn("schema_version", "integer", (c) => c.notNull())
    .addColumn("attempt", "integer", (c) => c.notNull())
    .addColumn("data", "jsonb", (c) => c.notNull())
    .addColumn("metadata", "jsonb", (c) => c.notNull())
    .addColumn("occurred_at", "timestamptz", (c) => c.notNull())
    .addColumn("recorded_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("nats_stream", "text")
    .addColumn("nats_seq", "bigint")
    .addColumn("anomaly", "text")
    // Transaction id of the appending transaction: readers following `position` only read rows
    // below the oldest transaction still running, so a late commit is never skipped.
    .addColumn("transaction_id", sql`xid8`, (c) => c.notNull().defaultTo(sql`pg_current_xact_id()`))
    .addUniqueConstraint("events_stream_version_unique", ["stream_id", "stream_version"])
    .execute();
  await db.schema.createIndex("events_type_idx").on("events").column("type").execute();
  await db.schema.createIndex("events_anomaly_idx").on("events").column("position").where(sql.ref("anomaly"), "is not", null).execute();

  await db.schema
    .createTable("tasks")
    .addColumn("task_id", "text", (c) => c.primaryKey())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("repo_url", "text", (c) => c.notNull())
    .addColumn("labels", "jsonb", (c) => c.notNull())
    .addColumn("submitted_at", "timestamptz", (c) => c.notNull())
    .addColumn("finished_at", "timestamptz")
    .addColumn("version", "integer", (c) => c.notNull())
    .addColumn("view", "jsonb", (c) => c.notNull())
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("tasks_list_idx").on("tasks").columns(["submitted_at desc", "task_id desc"]).execute();
  await db.schema.createIndex("tasks_status_idx").on("tasks").columns(["status", "submitted_at desc"]).execute();
  await db.schema.createIndex("tasks_repo_idx").on("tasks").columns(["repo_url", "submitted_at desc"]).execute();
  await sql`create index tasks_labels_idx on tasks using gin (labels jsonb_path_ops)`.execute(db);

  await db.schema
    .createTable("idempotency_keys")
    .addColumn("key", "text", (c) => c.primaryKey())
    .addColumn("task_id", "text", (c) => c.notNull())
    .addColumn("event_id", "text", (c) => c.notNull())
    .addColumn("request_hash", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("idempotency_keys").execute();
  await db.schema.dropTable("tasks").execute();
  await db.schema.dropTable("events").execute();
}

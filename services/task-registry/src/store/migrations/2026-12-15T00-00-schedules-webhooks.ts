import { type Kysely, sql } from "kysely";

// Frozen in time: never import application types here.

export async function up(db: Kysely<any>): Promise<void> {
  // The schedules projection: one row per schedule stream (sch_…), folded from its events.
  await db.schema
    .createTable("schedules")
    .addColumn("schedule_id", "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull())
    .addColumn("version", "integer", (c) => c.notNull())
    .addColumn("view", "jsonb", (c) => c.notNull())
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("schedules_tenant_idx").on("schedules").columns(["tenant", "created_at desc"]).execute();
  await db.schema.createIndex("schedules_status_idx").on("schedules").column("status").execute();

  // Outbox of notifications (task finished, …), written in the transaction that projects the event
  // that caused it: a crash cannot lose one. The notifier expands each into webhook deliveries.
  await db.schema
    .createTable("notifications")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("task_id", "text", (c) => c.notNull())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("notify_url", "text")
    .addColumn("payload", "jsonb", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("expanded_at", "timestamptz")
    .addUniqueConstraint("notifications_kind_task_unique", ["kind", "task_id"])
    .execute();
  await db.schema
    .createIndex("notifications_pending_idx")
    .on("notifications")
    .column("id")
    .where(sql.ref("expanded_at"), "is", null)
    .execute();

  await db.schema
    .createTable("webhook_deliveries")
    .addColumn("delivery_id", "text", (c) => c.primaryKey())
    .addColumn("notification_id", "bigint", (c) => c.notNull().references("notifications.id").onDelete("cascade"))
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("task_id", "text", (c) => c.notNull())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("target", "text", (c) => c.notNull())
    .addColumn("url", "text", (c) => c.notNull())
    .addColumn("payload", "jsonb", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("next_attempt_at", "timestamptz", (c) => c.notNull())
    .addColumn("locked_until", "timestamptz")
    .addColumn("last_status", "integer")
    .addColumn("last_code", "text")
    // the event recording the last attempt, until it is published (then null)
    .addColumn("pending_event", "jsonb")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint("webhook_deliveries_target_unique", ["notification_id", "target"])
    .execute();
  await db.schema
    .createIndex("webhook_deliveries_due_idx")
    .on("webhook_deliveries")
    .column("next_attempt_at")
    .where(sql.ref("state"), "=", "pending")
    .execute();
  await db.schema.createIndex("webhook_deliveries_task_idx").on("webhook_deliveries").column("task_id").execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("webhook_deliveries").execute();
  await db.schema.dropTable("notifications").execute();
  await db.schema.dropTable("schedules").execute();
}

import { type Kysely, sql } from "kysely";

// Frozen in time: never import application types here.

export async function up(db: Kysely<any>): Promise<void> {
  // Every task belongs to a tenant; tasks from before tenancy belong to `default`.
  await db.schema
    .alterTable("tasks")
    .addColumn("tenant", "text", (c) => c.notNull().defaultTo("default"))
    .execute();
  await sql`update tasks set view = jsonb_set(view, '{tenant}', '"default"') where not (view ? 'tenant')`.execute(db);
  await db.schema.createIndex("tasks_tenant_list_idx").on("tasks").columns(["tenant", "submitted_at desc", "task_id desc"]).execute();
  await db.schema.createIndex("tasks_tenant_status_idx").on("tasks").columns(["tenant", "status"]).execute();

  // Idempotency keys are per tenant: two tenants may use the same key for different tasks.
  await db.schema
    .alterTable("idempotency_keys")
    .addColumn("tenant", "text", (c) => c.notNull().defaultTo("default"))
    .execute();
  await db.schema.alterTable("idempotency_keys").dropConstraint("idempotency_keys_pkey").execute();
  await db.schema.alterTable("idempotency_keys").addPrimaryKeyConstraint("idempotency_keys_pkey", ["tenant", "key"]).execute();

  // Submissions admitted under a tenant's quota whose task.submitted is not projected yet.
  await db.schema
    .createTable("admissions")
    .addColumn("task_id", "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("admitted_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("admissions_tenant_idx").on("admissions").columns(["tenant", "admitted_at"]).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("admissions").execute();
  await db.schema.alterTable("idempotency_keys").dropConstraint("idempotency_keys_pkey").execute();
  await sql`delete from idempotency_keys where tenant <> 'default'`.execute(db);
  await db.schema.alterTable("idempotency_keys").addPrimaryKeyConstraint("idempotency_keys_pkey", ["key"]).execute();
  await db.schema.alterTable("idempotency_keys").dropColumn("tenant").execute();
  await db.schema.dropIndex("tasks_tenant_status_idx").execute();
  await db.schema.dropIndex("tasks_tenant_list_idx").execute();
  await db.schema.alterTable("tasks").dropColumn("tenant").execute();
}

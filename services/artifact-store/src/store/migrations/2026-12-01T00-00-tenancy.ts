import type { Kysely } from "kysely";

// Frozen in time: never import application types here.

export async function up(db: Kysely<any>): Promise<void> {
  // The tenant of the artifact's task, recorded at upload; artifacts from before tenancy are `default`'s.
  await db.schema
    .alterTable("artifacts")
    .addColumn("tenant", "text", (c) => c.notNull().defaultTo("default"))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("artifacts").dropColumn("tenant").execute();
}

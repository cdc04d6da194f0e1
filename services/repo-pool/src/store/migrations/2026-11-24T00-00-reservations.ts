import { type Kysely, sql } from "kysely";

// Frozen in time: never import application types here.

/** A slot leased to a runner's warm-pool reservation rather than to a task (no slot events until a task adopts it). */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("slots")
    .addColumn("reserved", "boolean", (c) => c.notNull().defaultTo(sql`false`))
    .execute();
}

import { createKysely, runMigrations } from "@codefleet/platform/runtime";
import type { ColumnType, Generated, Kysely, Migration, Selectable } from "kysely";
import * as initial from "./migrations/2026-11-23T00-00-initial.js";
import * as tenancy from "./migrations/2026-12-01T00-00-tenancy.js";

export type BlobsTable = {
  sha256: string;
  size: number;
  created_at: Generated<Date>;
  last_used_at: ColumnType<Date, string | undefined, string>;
};

export type ArtifactsTable = {
  id: string;
  task_id: string;
  /** The tenant of the task, from its task.submitted event (docs/security.md). */
  tenant: ColumnType<string, string | undefined, string>;
  attempt: number;
  kind: string;
  name: string;
  size: number;
  sha256: string;
  content_type: string;
  created_at: Generated<Date>;
};

export type Database = { blobs: BlobsTable; artifacts: ArtifactsTable };
export type Db = Kysely<Database>;
export type ArtifactRow = Selectable<ArtifactsTable>;

const migrations: Record<string, Migration> = {
  "2026-11-23T00-00-initial": initial,
  "2026-12-01T00-00-tenancy": tenancy,
};

export function createDatabase(opts: { url: string; schema: string }): { db: Db } {
  return createKysely<Database>(opts);
}

export async function migrate(db: Db, schema: string): Promise<void> {
  await runMigrations(db, schema, migrations);
}

import { createKysely, runMigrations } from "@codefleet/platform/runtime";
import type { ColumnType, Generated, Kysely, Migration, Selectable } from "kysely";
import * as initial from "./migrations/2026-11-23T00-00-initial.js";
import * as reservations from "./migrations/2026-11-24T00-00-reservations.js";

type Timestamp = ColumnType<Date, string | undefined, string>;
type NullableTimestamp = ColumnType<Date | null, string | null | undefined, string | null>;

export type SlotState = "creating" | "warm" | "leased" | "resetting";

export type MirrorsTable = { key: string; url: string; last_fetched_at: NullableTimestamp; last_used_at: Timestamp };
export type SlotsTable = {
  id: string;
  repo_key: string;
  state: SlotState;
  task_id: string | null;
  attempt: number | null;
  ref: string | null;
  commit_sha: string | null;
  lease_expires_at: NullableTimestamp;
  disk_bytes: number | null;
  /** Leased to a runner's warm-pool reservation, not to a task. */
  reserved: Generated<boolean>;
  created_at: Generated<Date>;
  last_used_at: Timestamp;
};
export type Database = { mirrors: MirrorsTable; slots: SlotsTable };
export type Db = Kysely<Database>;
export type SlotRow = Selectable<SlotsTable>;

const migrations: Record<string, Migration> = {
  "2026-11-23T00-00-initial": initial,
  "2026-11-24T00-00-reservations": reservations,
};

export function createDatabase(opts: { url: string; schema: string }): { db: Db } {
  return createKysely<Database>(opts);
}

export async function migrate(db: Db, schema: string): Promise<void> {
  await runMigrations(db, schema, migrations);
}

import { CodefleetError, errorMessage } from "@codefleet/contracts";
import { type ColumnType, type Generated, Kysely, type Migration, Migrator, PostgresDialect, type Selectable, sql } from "kysely";
import pg from "pg";
import type { TaskView } from "../domain/task-state.js";
import * as initial from "./migrations/2026-11-23T00-00-initial.js";

// bigint columns come back as strings by default; positions and sequences fit in a JS number.
pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10));

export type EventsTable = {
  position: Generated<number>;
  stream_id: string;
  stream_version: number;
  event_id: string;
  type: string;
  schema_version: number;
  attempt: number;
  data: ColumnType<unknown, string, string>;
  metadata: ColumnType<Record<string, string>, string, string>;
  occurred_at: ColumnType<Date, string, string>;
  recorded_at: Generated<Date>;
  nats_stream: string | null;
  nats_seq: number | null;
  anomaly: string | null;
  transaction_id: Generated<string>;
};

export type TasksTable = {
  task_id: string;
  status: string;
  repo_url: string;
  labels: ColumnType<Record<string, string>, string, string>;
  submitted_at: ColumnType<Date, string, string>;
  finished_at: ColumnType<Date | null, string | null, string | null>;
  version: number;
  view: ColumnType<TaskView, string, string>;
  updated_at: Generated<Date>;
};

export type IdempotencyKeysTable = {
  key: string;
  task_id: string;
  event_id: string;
  request_hash: string;
  created_at: Generated<Date>;
};

export type Database = {
  events: EventsTable;
  tasks: TasksTable;
  idempotency_keys: IdempotencyKeysTable;
};

export type StoredEventRow = Selectable<EventsTable>;
export type Db = Kysely<Database>;

const migrations: Record<string, Migration> = {
  "2026-11-23T00-00-initial": initial,
};

/** A Kysely instance on its own schema (search_path), so services can share one database. */
export function createDatabase(opts: { url: string; schema: string; maxConnections?: number }): { db: Db; pool: pg.Pool } {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(opts.schema)) throw new CodefleetError("invalid_config", `invalid schema name '${opts.schema}'`);
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.maxConnections ?? 10,
    options: `-c search_path=${opts.schema}`,
    connectionTimeoutMillis: 5000,
  });
  // An idle client losing its connection (Postgres restart) must not crash the process.
  pool.on("error", () => undefined);
  return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), pool };
}

/** Runs pending migrations; safe when several replicas start at once (the migrator takes a lock). */
export async function migrate(db: Db, schema: string): Promise<void> {
  await sql`create schema if not exists ${sql.id(schema)}`.execute(db);
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableSchema: schema,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName;
    throw new CodefleetError("migration_failed", `migration ${failed ?? "?"} failed: ${errorMessage(error)}`, { cause: error });
  }
}

/** Connection-level failures worth waiting out (Postgres restarting, network blip), as opposed to bugs or bad data. */
export function isTransientDbError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  const code = e?.code ?? "";
  if (["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN"].includes(code)) return true;
  if (
    code.startsWith("08") ||
    code === "57P01" ||
    code === "57P02" ||
    code === "57P03" ||
    code === "53300" ||
    code === "40001" ||
    code === "40P01"
  )
    return true;
  const msg = (e?.message ?? "").toLowerCase();
  return (
    msg.includes("connection terminated") ||
    msg.includes("timeout exceeded when trying to connect") ||
    msg.includes("connection error") ||
    msg.includes("client has encountered a connection error")
  );
}

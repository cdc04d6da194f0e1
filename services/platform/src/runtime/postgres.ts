import { CodefleetError, errorMessage } from "@codefleet/contracts";
import { Kysely, type Migration, Migrator, PostgresDialect, sql } from "kysely";
import pg from "pg";

// bigint columns come back as strings by default; positions, sizes and sequences fit in a JS number.
pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10));

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * A Kysely instance whose connections use one schema (search_path), so services can share a
 * database and still own their tables.
 */
export function createKysely<DB>(opts: { url: string; schema: string; maxConnections?: number }): { db: Kysely<DB>; pool: pg.Pool } {
  if (!SCHEMA_RE.test(opts.schema))
    throw new CodefleetError("invalid_config", `invalid schema name '${opts.schema}'`, { retry: { kind: "never" } });
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.maxConnections ?? 10,
    options: `-c search_path=${opts.schema}`,
    connectionTimeoutMillis: 5000,
  });
  // An idle client losing its connection (Postgres restart) must not crash the process.
  pool.on("error", () => undefined);
  return { db: new Kysely<DB>({ dialect: new PostgresDialect({ pool }) }), pool };
}

/** Runs pending migrations; safe when several replicas start at once (the migrator takes a lock). */
// biome-ignore lint/suspicious/noExplicitAny: migrations are untyped by design (frozen in time)
export async function runMigrations(db: Kysely<any>, schema: string, migrations: Record<string, Migration>): Promise<void> {
  await sql`create schema if not exists ${sql.id(schema)}`.execute(db);
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations }, migrationTableSchema: schema });
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
  if (code.startsWith("08") || ["57P01", "57P02", "57P03", "53300", "40001", "40P01"].includes(code)) return true;
  const msg = (e?.message ?? "").toLowerCase();
  return (
    msg.includes("connection terminated") ||
    msg.includes("timeout exceeded when trying to connect") ||
    msg.includes("connection error") ||
    msg.includes("client has encountered a connection error")
  );
}

// biome-ignore lint/suspicious/noExplicitAny: any schema
export async function pingDatabase(db: Kysely<any>): Promise<string> {
  return sql`select 1`
    .execute(db)
    .then(() => "ok")
    .catch((e: Error) => e.message);
}

import type { TaskStatus, TaskSummary } from "@codefleet/contracts";
import { sql } from "kysely";
import type { TaskView } from "../domain/task-state.js";
import type { Db } from "./database.js";

export async function getTaskView(db: Db, taskId: string): Promise<TaskView | undefined> {
  const row = await db.selectFrom("tasks").select("view").where("task_id", "=", taskId).executeTakeFirst();
  return row?.view;
}

export type TaskFilter = {
  /** Only this tenant's tasks; absent: every tenant's. */
  tenant?: string;
  status?: TaskStatus[];
  repo?: string;
  labels?: Record<string, string>;
  limit: number;
  cursor?: string;
};

type Cursor = { s: string; id: string };

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString("base64url");
}

export function decodeCursor(raw: string): Cursor | undefined {
  try {
    const c = JSON.parse(Buffer.from(raw, "base64url").toString("utf8")) as Cursor;
    if (typeof c.s !== "string" || typeof c.id !== "string" || Number.isNaN(Date.parse(c.s))) return undefined;
    return c;
  } catch {
    return undefined;
  }
}

/**
 * Newest first, keyset-paginated on (submitted_at, task_id): stable while tasks keep arriving.
 * Items are summaries: the spec (up to megabytes of prompt and patches) is left in the database.
 */
export async function listTaskViews(db: Db, f: TaskFilter): Promise<{ items: TaskSummary[]; nextCursor?: string }> {
  let q = db.selectFrom("tasks").select([sql<TaskSummary>`view - 'spec'`.as("view"), "submitted_at", "task_id"]);
  if (f.tenant !== undefined) q = q.where("tenant", "=", f.tenant);
  if (f.status?.length) q = q.where("status", "in", f.status);
  if (f.repo) q = q.where("repo_url", "=", f.repo);
  if (f.labels && Object.keys(f.labels).length > 0) q = q.where(sql<boolean>`labels @> ${JSON.stringify(f.labels)}::jsonb`);
  if (f.cursor) {
    const c = decodeCursor(f.cursor);
    if (c) q = q.where(sql<boolean>`(submitted_at, task_id) < (${c.s}::timestamptz, ${c.id})`);
  }
  const rows = await q
    .orderBy("submitted_at", "desc")
    .orderBy("task_id", "desc")
    .limit(f.limit + 1)
    .execute();
  const page = rows.slice(0, f.limit);
  const last = page[page.length - 1];
  return {
    items: page.map((r) => r.view),
    ...(rows.length > f.limit && last
      ? { nextCursor: encodeCursor({ s: new Date(last.submitted_at).toISOString(), id: last.task_id }) }
      : {}),
  };
}

/** The class of the per-tenant admission locks (a two-key advisory lock: class, hash of the tenant). */
const ADMISSION_LOCK_CLASS = 0x0c0f_7e1a;

/**
 * Admits a new task of a tenant under its quota, atomically across registry replicas: under a
 * per-tenant lock, counts its queued and running tasks plus admissions whose task.submitted is not
 * projected yet, asks `decide`, and records the admission when it says yes. Admissions older than
 * ten minutes (a publish that never arrived) stop counting.
 */
export async function admitTask<R extends { kind: "admit" } | { kind: "refuse" }>(
  db: Db,
  input: { taskId: string; tenant: string },
  decide: (counts: { queued: number; running: number }) => R,
): Promise<R> {
  return db.transaction().execute(async (trx) => {
    // two-key advisory locks do not collide with the single-key ones other services take
    await sql`select pg_advisory_xact_lock(${ADMISSION_LOCK_CLASS}, hashtext(${input.tenant}))`.execute(trx);
    await trx
      .deleteFrom("admissions")
      .where("tenant", "=", input.tenant)
      .where((eb) =>
        eb.or([
          eb("admitted_at", "<", sql<Date>`now() - interval '10 minutes'`),
          eb.exists(eb.selectFrom("tasks").select("tasks.task_id").whereRef("tasks.task_id", "=", "admissions.task_id")),
        ]),
      )
      .execute();
    const already = await trx.selectFrom("admissions").select("task_id").where("task_id", "=", input.taskId).executeTakeFirst();
    if (already) return { kind: "admit" } as R;
    // one statement, so one snapshot: a task projected meanwhile counts once, as a task or as an admission
    const counts = await sql<{ queued: number; running: number; pending: number }>`
      select
        (select count(*) from tasks where tenant = ${input.tenant} and status = 'queued')::int as queued,
        (select count(*) from tasks where tenant = ${input.tenant} and status = 'running')::int as running,
        (select count(*) from admissions a
          where a.tenant = ${input.tenant}
            and a.admitted_at >= now() - interval '10 minutes'
            and not exists (select 1 from tasks t where t.task_id = a.task_id))::int as pending`
      .execute(trx)
      .then((r) => r.rows[0] ?? { queued: 0, running: 0, pending: 0 });
    const decision = decide({ queued: Number(counts.queued) + Number(counts.pending), running: Number(counts.running) });
    if (decision.kind === "admit") await trx.insertInto("admissions").values({ task_id: input.taskId, tenant: input.tenant }).execute();
    return decision;
  });
}

/** A tenant's queued and running tasks (with admissions not yet projected): what its quota is checked against. */
export async function tenantLoad(db: Db, tenant: string): Promise<{ queued: number; running: number }> {
  const r = await sql<{ queued: number; running: number }>`
    select
      (select count(*) from tasks where tenant = ${tenant} and status = 'queued')::int
        + (select count(*) from admissions a where a.tenant = ${tenant} and a.admitted_at >= now() - interval '10 minutes'
             and not exists (select 1 from tasks t where t.task_id = a.task_id))::int as queued,
      (select count(*) from tasks where tenant = ${tenant} and status = 'running')::int as running`.execute(db);
  const row = r.rows[0];
  return { queued: Number(row?.queued ?? 0), running: Number(row?.running ?? 0) };
}

/** Forgets an admission whose publish failed, so that it does not count against the quota. */
export async function forgetAdmission(db: Db, taskId: string): Promise<void> {
  await db.deleteFrom("admissions").where("task_id", "=", taskId).execute();
}

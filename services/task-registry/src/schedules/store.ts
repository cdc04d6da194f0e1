import { sql } from "kysely";
import type { Db } from "../store/database.js";
import { rowToEvent } from "../store/event-store.js";
import { applyStoredSchedule, type ScheduleEvent, type ScheduleView } from "./schedule-state.js";

/**
 * Folds a batch's schedule events into the schedules projection, inside the append's transaction
 * (`trx`); `version` is the event's stream version. Returns the anomalies (stored with the event).
 */
export async function projectScheduleEvents(
  trx: Db,
  items: readonly { event: ScheduleEvent; version: number }[],
): Promise<Map<string, string>> {
  const anomalies = new Map<string, string>();
  if (items.length === 0) return anomalies;
  const ids = [...new Set(items.map((i) => i.event.taskId))];
  const views = new Map<string, ScheduleView | undefined>();
  for (const row of await trx.selectFrom("schedules").select(["schedule_id", "view"]).where("schedule_id", "in", ids).forUpdate().execute())
    views.set(row.schedule_id, row.view);
  const changed = new Set<string>();
  for (const { event, version } of items) {
    const r = applyStoredSchedule(views.get(event.taskId), event, version);
    if (r.anomaly) anomalies.set(event.id, r.anomaly);
    else if (r.state) {
      views.set(event.taskId, r.state);
      changed.add(event.taskId);
    }
  }
  await upsertScheduleRows(
    trx,
    [...changed].map((id) => views.get(id)).filter((v): v is ScheduleView => v !== undefined),
  );
  return anomalies;
}

export async function upsertScheduleRows(db: Db, views: readonly ScheduleView[]): Promise<void> {
  for (let i = 0; i < views.length; i += 500) {
    const rows = views.slice(i, i + 500).map((v) => ({
      schedule_id: v.id,
      tenant: v.tenant,
      status: v.status,
      created_at: v.createdAt,
      version: v.version,
      view: JSON.stringify(v),
    }));
    await db
      .insertInto("schedules")
      .values(rows)
      .onConflict((oc) =>
        oc.column("schedule_id").doUpdateSet((eb) => ({
          status: eb.ref("excluded.status"),
          version: eb.ref("excluded.version"),
          view: eb.ref("excluded.view"),
          updated_at: sql`now()`,
        })),
      )
      .execute();
  }
}

export async function getSchedule(db: Db, id: string): Promise<ScheduleView | undefined> {
  const row = await db.selectFrom("schedules").select("view").where("schedule_id", "=", id).executeTakeFirst();
  return row?.view;
}

/** A tenant's schedules (every tenant's when undefined), newest first; deleted ones left out. */
export async function listSchedules(db: Db, tenant: string | undefined, limit = 500): Promise<ScheduleView[]> {
  let q = db.selectFrom("schedules").select("view").where("status", "<>", "deleted");
  if (tenant !== undefined) q = q.where("tenant", "=", tenant);
  const rows = await q.orderBy("created_at", "desc").orderBy("schedule_id", "desc").limit(limit).execute();
  return rows.map((r) => r.view);
}

/** Every schedule that may fire. */
export async function activeSchedules(db: Db): Promise<ScheduleView[]> {
  const rows = await db.selectFrom("schedules").select("view").where("status", "=", "active").execute();
  return rows.map((r) => r.view);
}

/** Rebuilds the schedules projection from the log (inside the caller's transaction, which locks the table). */
export async function rebuildSchedules(trx: Db): Promise<{ schedules: number }> {
  await sql`lock table schedules in exclusive mode`.execute(trx);
  const rows = await trx
    .selectFrom("events")
    .selectAll()
    .where("type", "like", "schedule.%")
    .where("anomaly", "is", null)
    .orderBy("position")
    .execute();
  const views = new Map<string, ScheduleView>();
  for (const row of rows) {
    const r = applyStoredSchedule(views.get(row.stream_id), rowToEvent(row) as ScheduleEvent, row.stream_version);
    if (r.state && !r.anomaly) views.set(row.stream_id, r.state);
  }
  await trx.deleteFrom("schedules").execute();
  await upsertScheduleRows(trx, [...views.values()]);
  return { schedules: views.size };
}

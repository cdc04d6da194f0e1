import { sql } from "kysely";
import { applyStored, type TaskView } from "../domain/task-state.js";
import { rebuildSchedules } from "../schedules/store.js";
import type { Db } from "./database.js";
import { readAllAfter, rowToEvent, upsertTaskRows } from "./event-store.js";

/** Replays the whole event log into task views, in global order. Pure apart from reading. */
export async function replayLog(db: Db, opts: { pageSize?: number; gapSafe?: boolean } = {}): Promise<Map<string, TaskView>> {
  const views = new Map<string, TaskView>();
  let position = 0;
  for (;;) {
    const rows = await readAllAfter(db, position, opts.pageSize ?? 2000, { gapSafe: opts.gapSafe ?? true });
    if (rows.length === 0) break;
    for (const row of rows) {
      const r = applyStored(views.get(row.stream_id), rowToEvent(row), row.stream_version);
      if (r.state) views.set(row.stream_id, r.state);
      position = row.position;
    }
  }
  return views;
}

/**
 * Rebuilds the task projection from the event log. The table is locked for the swap so ingestion
 * waits and resumes on the rebuilt rows.
 */
export async function rebuildProjections(db: Db): Promise<{ tasks: number }> {
  return db.transaction().execute(async (trx) => {
    await sql`lock table tasks in exclusive mode`.execute(trx);
    // No concurrent appends while the lock is held, so a plain read of the log is complete.
    const views = await replayLog(trx, { gapSafe: false });
    await trx.deleteFrom("tasks").execute();
    await upsertTaskRows(trx, [...views.values()]);
    await rebuildSchedules(trx);
    return { tasks: views.size };
  });
}

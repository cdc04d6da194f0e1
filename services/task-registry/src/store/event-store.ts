import { type CodefleetEvent, isScheduleEventType, parseEvent } from "@codefleet/contracts";
import { sql } from "kysely";
import { applyStored, type TaskView } from "../domain/task-state.js";
import type { ScheduleEvent } from "../schedules/schedule-state.js";
import { projectScheduleEvents } from "../schedules/store.js";
import { notificationsFor, recordNotifications } from "../webhooks/outbox.js";
import type { Db, StoredEventRow } from "./database.js";

export type IncomingEvent = { event: CodefleetEvent; natsStream?: string; natsSeq?: number };

export type AppendResult = {
  appended: number;
  duplicates: number;
  anomalies: { eventId: string; taskId: string; reason: string }[];
  /** Views that changed, for notifications and metrics. */
  changed: TaskView[];
};

/**
 * Appends a batch of events and updates the task projections in one transaction.
 * Idempotent by event id (a redelivered event is a no-op); stream versions are assigned as
 * max+1 under a unique (stream_id, stream_version) constraint, so two writers racing on one task
 * cannot both win: the loser's transaction fails and its batch is retried.
 */
export async function appendEvents(db: Db, incoming: readonly IncomingEvent[]): Promise<AppendResult> {
  if (incoming.length === 0) return { appended: 0, duplicates: 0, anomalies: [], changed: [] };
  return db.transaction().execute(async (trx) => {
    const ids = [...new Set(incoming.map((i) => i.event.id))];
    const existing = new Set(
      (await trx.selectFrom("events").select("event_id").where("event_id", "in", ids).execute()).map((r) => r.event_id),
    );
    const fresh: IncomingEvent[] = [];
    const seen = new Set<string>();
    for (const item of incoming) {
      if (existing.has(item.event.id) || seen.has(item.event.id)) continue;
      seen.add(item.event.id);
      fresh.push(item);
    }
    const duplicates = incoming.length - fresh.length;
    if (fresh.length === 0) return { appended: 0, duplicates, anomalies: [], changed: [] };

    const taskIds = [...new Set(fresh.map((i) => i.event.taskId))];
    const views = new Map<string, TaskView | undefined>();
    for (const row of await trx.selectFrom("tasks").select(["task_id", "view"]).where("task_id", "in", taskIds).forUpdate().execute()) {
      views.set(row.task_id, row.view);
    }
    const before = new Map(views);
    // schedules are streams of their own (sch_…): their events feed the schedules projection
    const scheduleItems: { event: ScheduleEvent; version: number; row: number }[] = [];
    const versions = new Map<string, number>();
    for (const row of await trx
      .selectFrom("events")
      .select(["stream_id", (eb) => eb.fn.max("stream_version").as("v")])
      .where("stream_id", "in", taskIds)
      .groupBy("stream_id")
      .execute()) {
      versions.set(row.stream_id, Number(row.v));
    }

    const anomalies: AppendResult["anomalies"] = [];
    const rows: ReturnType<typeof eventRow>[] = [];
    const changed = new Set<string>();
    for (const { event, natsStream, natsSeq } of fresh) {
      const version = (versions.get(event.taskId) ?? 0) + 1;
      versions.set(event.taskId, version);
      if (isScheduleEventType(event.type)) {
        scheduleItems.push({ event: event as ScheduleEvent, version, row: rows.length });
        rows.push(eventRow(event, version, natsStream, natsSeq, null));
        continue;
      }
      const r = applyStored(views.get(event.taskId), event, version);
      views.set(event.taskId, r.state);
      if (r.state) changed.add(event.taskId);
      if (r.anomaly) anomalies.push({ eventId: event.id, taskId: event.taskId, reason: r.anomaly });
      rows.push(eventRow(event, version, natsStream, natsSeq, r.anomaly ?? null));
    }
    const scheduleAnomalies = await projectScheduleEvents(trx, scheduleItems);
    for (const item of scheduleItems) {
      const reason = scheduleAnomalies.get(item.event.id);
      const row = rows[item.row];
      if (reason === undefined || !row) continue;
      row.anomaly = reason;
      anomalies.push({ eventId: item.event.id, taskId: item.event.taskId, reason });
    }
    for (let i = 0; i < rows.length; i += 500)
      await trx
        .insertInto("events")
        .values(rows.slice(i, i + 500))
        .execute();

    const changedViews = [...changed].map((id) => views.get(id)).filter((v): v is TaskView => v !== undefined);
    await upsertTaskRows(trx, changedViews);
    await recordNotifications(
      trx,
      changedViews.flatMap((v) => notificationsFor(before.get(v.id), v)),
    );
    return { appended: fresh.length, duplicates, anomalies, changed: changedViews };
  });
}

function eventRow(
  event: CodefleetEvent,
  version: number,
  natsStream: string | undefined,
  natsSeq: number | undefined,
  anomaly: string | null,
) {
  return {
    stream_id: event.taskId,
    stream_version: version,
    event_id: event.id,
    type: event.type,
    schema_version: event.version,
    attempt: event.attempt,
    data: JSON.stringify(event.data),
    metadata: JSON.stringify(event.metadata),
    occurred_at: event.occurredAt,
    nats_stream: natsStream ?? null,
    nats_seq: natsSeq ?? null,
    anomaly,
  };
}

/** Writes task views in one statement per 500 rows (insert or update). */
export async function upsertTaskRows(db: Db, views: readonly TaskView[]): Promise<void> {
  for (let i = 0; i < views.length; i += 500) {
    const rows = views.slice(i, i + 500).map((view) => ({
      task_id: view.id,
      status: view.status,
      tenant: view.tenant,
      repo_url: view.repo.url,
      labels: JSON.stringify(view.labels),
      submitted_at: view.submittedAt,
      finished_at: view.finishedAt ?? null,
      version: view.version,
      view: JSON.stringify(view),
    }));
    await db
      .insertInto("tasks")
      .values(rows)
      .onConflict((oc) =>
        oc.column("task_id").doUpdateSet((eb) => ({
          status: eb.ref("excluded.status"),
          labels: eb.ref("excluded.labels"),
          finished_at: eb.ref("excluded.finished_at"),
          version: eb.ref("excluded.version"),
          view: eb.ref("excluded.view"),
          updated_at: sql`now()`,
        })),
      )
      .execute();
  }
}

/** The stored history of one task, in order, each row parsed back into its latest shape. */
export async function readTaskEvents(db: Db, taskId: string): Promise<StoredEventRow[]> {
  return db.selectFrom("events").selectAll().where("stream_id", "=", taskId).orderBy("stream_version").execute();
}

export function rowToEvent(row: StoredEventRow): CodefleetEvent {
  return parseEvent({
    id: row.event_id,
    type: row.type,
    version: row.schema_version,
    occurredAt: new Date(row.occurred_at).toISOString(),
    taskId: row.stream_id,
    attempt: row.attempt,
    metadata: row.metadata,
    data: row.data,
  });
}

/**
 * Reads the global log after `position`, never past a transaction that may still commit below it
 * (xid8 / snapshot-xmin: a row is visible only once every older transaction has finished).
 */
export async function readAllAfter(db: Db, position: number, limit: number, opts: { gapSafe?: boolean } = {}): Promise<StoredEventRow[]> {
  let q = db.selectFrom("events").selectAll().where("position", ">", position);
  if (opts.gapSafe ?? true) q = q.where(sql<boolean>`transaction_id < pg_snapshot_xmin(pg_current_snapshot())`);
  return q.orderBy("position").limit(limit).execute();
}

export async function countEvents(db: Db): Promise<number> {
  const r = await db
    .selectFrom("events")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** The id of the task.submitted event stored for a task, if any. */
export async function submittedEventIdOf(db: Db, taskId: string): Promise<string | undefined> {
  const row = await db
    .selectFrom("events")
    .select("event_id")
    .where("stream_id", "=", taskId)
    .where("type", "=", "task.submitted")
    .executeTakeFirst();
  return row?.event_id;
}

/** The status of each of these tasks that has a view. */
export async function taskStatuses(db: Db, taskIds: readonly string[]): Promise<Map<string, string>> {
  if (taskIds.length === 0) return new Map();
  const rows = await db
    .selectFrom("tasks")
    .select(["task_id", "status"])
    .where("task_id", "in", [...taskIds])
    .execute();
  return new Map(rows.map((r) => [r.task_id, r.status]));
}

/** A stored event as the API shows it (`GET …/events`): `data` as given (a task's view may hide parts of it). */
export function storedEventView(r: StoredEventRow, data: unknown = r.data) {
  return {
    position: r.position,
    streamVersion: r.stream_version,
    id: r.event_id,
    type: r.type,
    version: r.schema_version,
    attempt: r.attempt,
    occurredAt: new Date(r.occurred_at).toISOString(),
    recordedAt: new Date(r.recorded_at).toISOString(),
    data,
    metadata: r.metadata,
    ...(r.anomaly ? { anomaly: r.anomaly } : {}),
  };
}

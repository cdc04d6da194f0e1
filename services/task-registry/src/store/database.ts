import { createKysely, isTransientDbError, runMigrations } from "@codefleet/platform/runtime";
import type { ColumnType, Generated, Kysely, Migration, Selectable } from "kysely";
import type { TaskView } from "../domain/task-state.js";
import type { ScheduleView } from "../schedules/schedule-state.js";
import * as initial from "./migrations/2026-11-23T00-00-initial.js";
import * as tenancy from "./migrations/2026-12-01T00-00-tenancy.js";
import * as schedulesWebhooks from "./migrations/2026-12-15T00-00-schedules-webhooks.js";

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
  tenant: ColumnType<string, string | undefined, string>;
  repo_url: string;
  labels: ColumnType<Record<string, string>, string, string>;
  submitted_at: ColumnType<Date, string, string>;
  finished_at: ColumnType<Date | null, string | null, string | null>;
  version: number;
  view: ColumnType<TaskView, string, string>;
  updated_at: Generated<Date>;
};

export type IdempotencyKeysTable = {
  tenant: ColumnType<string, string | undefined, string>;
  key: string;
  task_id: string;
  event_id: string;
  request_hash: string;
  created_at: Generated<Date>;
};

/** A submission admitted under its tenant's quota, until its task.submitted is projected. */
export type AdmissionsTable = {
  task_id: string;
  tenant: string;
  admitted_at: Generated<Date>;
};

/** The schedules projection (one row per `sch_…` stream). */
export type SchedulesTable = {
  schedule_id: string;
  tenant: string;
  status: string;
  created_at: ColumnType<Date, string, string>;
  version: number;
  view: ColumnType<ScheduleView, string, string>;
  updated_at: Generated<Date>;
};

/** Outbox: a notification (task finished, …) recorded with the event that caused it. */
export type NotificationsTable = {
  id: Generated<number>;
  kind: string;
  task_id: string;
  tenant: string;
  notify_url: string | null;
  payload: ColumnType<Record<string, unknown>, string, string>;
  created_at: Generated<Date>;
  expanded_at: ColumnType<Date | null, string | null | undefined, string | null>;
};

export type WebhookDeliveriesTable = {
  delivery_id: string;
  notification_id: number;
  kind: string;
  task_id: string;
  tenant: string;
  target: "task" | "tenant";
  url: string;
  payload: ColumnType<Record<string, unknown>, string, string>;
  state: "pending" | "delivered" | "failed";
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: ColumnType<Date, string, string>;
  locked_until: ColumnType<Date | null, string | null | undefined, string | null>;
  last_status: number | null;
  last_code: string | null;
  pending_event: ColumnType<unknown, string | null | undefined, string | null>;
  created_at: Generated<Date>;
  updated_at: ColumnType<Date, string | undefined, string>;
};

export type Database = {
  events: EventsTable;
  tasks: TasksTable;
  idempotency_keys: IdempotencyKeysTable;
  admissions: AdmissionsTable;
  schedules: SchedulesTable;
  notifications: NotificationsTable;
  webhook_deliveries: WebhookDeliveriesTable;
};

export type StoredEventRow = Selectable<EventsTable>;
export type Db = Kysely<Database>;

const migrations: Record<string, Migration> = {
  "2026-11-23T00-00-initial": initial,
  "2026-12-01T00-00-tenancy": tenancy,
  "2026-12-15T00-00-schedules-webhooks": schedulesWebhooks,
};

export function createDatabase(opts: { url: string; schema: string; maxConnections?: number }): { db: Db } {
  return createKysely<Database>(opts);
}

export async function migrate(db: Db, schema: string): Promise<void> {
  await runMigrations(db, schema, migrations);
}

export { isTransientDbError };

import type { TaskStatus } from "@codefleet/contracts";
import { sql } from "kysely";
import type { TaskView } from "../domain/task-state.js";
import type { Db } from "./database.js";

export async function getTaskView(db: Db, taskId: string): Promise<TaskView | undefined> {
  const row = await db.selectFrom("tasks").select("view").where("task_id", "=", taskId).executeTakeFirst();
  return row?.view;
}

export type TaskFilter = {
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

/** Newest first, keyset-paginated on (submitted_at, task_id): stable while tasks keep arriving. */
export async function listTaskViews(db: Db, f: TaskFilter): Promise<{ items: TaskView[]; nextCursor?: string }> {
  let q = db.selectFrom("tasks").select(["view", "submitted_at", "task_id"]);
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

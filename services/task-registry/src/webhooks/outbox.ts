import { isFinalStatus, type TaskView } from "@codefleet/contracts";
import type { Db } from "../store/database.js";

/**
 * What the registry notifies about, decided from a projection change (pure) and written to the
 * `notifications` outbox in the same transaction as the change: a crash after the commit cannot
 * lose a notification, and a redelivered event (a duplicate) changes nothing, so none is written
 * twice. Kinds are open-ended: `task.finished` today; `pr.opened` can be added beside it.
 */

export type TaskFinishedPayload = {
  type: "task.finished";
  taskId: string;
  status: TaskView["status"];
  reasonCode?: string;
  tenant: string;
  title: string;
  /** The pushed branch and commit, when the task pushed one. */
  branch?: string;
  commit?: string;
  finishedAt?: string;
};

export type NotificationPayload = TaskFinishedPayload;
export type NotificationKind = NotificationPayload["type"];

export type Notification = {
  kind: NotificationKind;
  taskId: string;
  tenant: string;
  /** The task's own webhook (`spec.notify.url`), besides its tenant's default. */
  notifyUrl?: string;
  payload: NotificationPayload;
};

/** The notifications a view's change from `before` to `after` causes. */
export function notificationsFor(before: TaskView | undefined, after: TaskView): Notification[] {
  if (!isFinalStatus(after.status) || (before !== undefined && isFinalStatus(before.status))) return [];
  const payload: TaskFinishedPayload = {
    type: "task.finished",
    taskId: after.id,
    status: after.status,
    ...(after.reasonCode ? { reasonCode: after.reasonCode } : {}),
    tenant: after.tenant,
    title: after.title,
    ...(after.commitSha ? { branch: after.branch, commit: after.commitSha } : {}),
    ...(after.finishedAt ? { finishedAt: after.finishedAt } : {}),
  };
  const notifyUrl = after.spec?.notify?.url;
  return [{ kind: "task.finished", taskId: after.id, tenant: after.tenant, ...(notifyUrl ? { notifyUrl } : {}), payload }];
}

export async function recordNotifications(trx: Db, notifications: readonly Notification[]): Promise<void> {
  if (notifications.length === 0) return;
  await trx
    .insertInto("notifications")
    .values(
      notifications.map((n) => ({
        kind: n.kind,
        task_id: n.taskId,
        tenant: n.tenant,
        notify_url: n.notifyUrl ?? null,
        payload: JSON.stringify(n.payload),
      })),
    )
    .onConflict((oc) => oc.columns(["kind", "task_id"]).doNothing())
    .execute();
}

import { isFinalStatus, type TaskView } from "@codefleet/contracts";
import type { Db } from "../store/database.js";

/**
 * What the registry notifies about, decided from a projection change (pure) and written to the
 * `notifications` outbox in the same transaction as the change: a crash after the commit cannot
 * lose a notification, and a redelivered event (a duplicate) changes nothing, so none is written
 * twice. Kinds: `task.finished` and `pull_request.opened`.
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

/** The runner opened the task's pull request (sent once per task, when the view first has one). */
export type PullRequestOpenedPayload = {
  type: "pull_request.opened";
  taskId: string;
  tenant: string;
  title: string;
  branch: string;
  pullRequest: { url: string; number: number };
};

export type NotificationPayload = TaskFinishedPayload | PullRequestOpenedPayload;
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
  return [...pullRequestOpened(before, after), ...taskFinished(before, after)];
}

function pullRequestOpened(before: TaskView | undefined, after: TaskView): Notification[] {
  if (!after.pullRequest || before?.pullRequest) return [];
  const payload: PullRequestOpenedPayload = {
    type: "pull_request.opened",
    taskId: after.id,
    tenant: after.tenant,
    title: after.title,
    branch: after.branch,
    pullRequest: { url: after.pullRequest.url, number: after.pullRequest.number },
  };
  const notifyUrl = after.spec?.notify?.url;
  return [{ kind: "pull_request.opened", taskId: after.id, tenant: after.tenant, ...(notifyUrl ? { notifyUrl } : {}), payload }];
}

function taskFinished(before: TaskView | undefined, after: TaskView): Notification[] {
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

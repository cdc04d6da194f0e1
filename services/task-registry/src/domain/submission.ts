import { createHash } from "node:crypto";
import {
  agentKeyProblem,
  checkRepoUrl,
  createEvent,
  newEventId,
  newTaskId,
  type SecurityPolicy,
  type TaskSpec,
} from "@codefleet/contracts";
import type { Bus } from "@codefleet/contracts/bus";
import { HttpProblem } from "@codefleet/contracts/runtime";
import type { Context } from "@opentelemetry/api";
import type { Db } from "../store/database.js";
import { getTaskView } from "../store/task-queries.js";
import { decideCancel, evolve, type TaskView } from "./task-state.js";

export const PRODUCER = "task-registry";

/** A stable hash of a JSON value: object keys sorted, so key order does not change it. */
export function canonicalHash(value: unknown): string {
  const canon = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canon);
    if (v && typeof v === "object")
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, canon((v as Record<string, unknown>)[k])]),
      );
    return v;
  };
  return createHash("sha256")
    .update(JSON.stringify(canon(value)))
    .digest("hex");
}

export type SubmitResult = { task: TaskView; created: boolean };

/**
 * The operator's policy on a schema-valid spec: the repository URL (no local paths outside the
 * allowed roots, no plain http, no git transport tricks, only allowed hosts) and the agent's
 * endpoint (a runner secret goes only to hosts listed for it). Throws a 422 problem with the
 * policy's stable code; the messages never echo credentials.
 */
export function assertSubmissionAllowed(spec: TaskSpec, policy: SecurityPolicy): void {
  const repo = checkRepoUrl(spec.repo.url, policy.repoUrls);
  if (!repo.ok) throw new HttpProblem(422, repo.code, repo.message, { field: "/repo/url" });
  const agent = agentKeyProblem(spec.agent, policy.secretEndpoints);
  if (agent) throw new HttpProblem(422, agent.code, agent.message, { field: "/agent/baseUrl" });
}

/**
 * Submits a task: assigns an id, publishes task.submitted and answers with the queued view.
 * With an idempotency key, a retry (same key, same body) returns the same task and re-publishes
 * the same event id, so a crash between storing the key and publishing loses nothing and a
 * double publish is de-duplicated.
 */
export async function submitTask(
  deps: { db: Db; bus: Bus },
  spec: TaskSpec,
  opts: { idempotencyKey?: string; submittedBy?: string; ctx?: Context },
): Promise<SubmitResult> {
  let taskId = newTaskId();
  let eventId = newEventId();
  let created = true;
  if (opts.idempotencyKey) {
    const requestHash = canonicalHash(spec);
    const inserted = await deps.db
      .insertInto("idempotency_keys")
      .values({ key: opts.idempotencyKey, task_id: taskId, event_id: eventId, request_hash: requestHash })
      .onConflict((oc) => oc.column("key").doNothing())
      .returning("task_id")
      .executeTakeFirst();
    if (!inserted) {
      const existing = await deps.db
        .selectFrom("idempotency_keys")
        .selectAll()
        .where("key", "=", opts.idempotencyKey)
        .executeTakeFirstOrThrow();
      if (existing.request_hash !== requestHash) {
        throw new HttpProblem(422, "idempotency_key_mismatch", "this Idempotency-Key was already used with a different request body", {
          taskId: existing.task_id,
        });
      }
      taskId = existing.task_id;
      eventId = existing.event_id;
      created = false;
      const view = await getTaskView(deps.db, taskId);
      if (view) return { task: view, created };
    }
  }
  const event = createEvent("task.submitted", {
    id: eventId,
    taskId,
    producer: PRODUCER,
    data: {
      spec,
      submittedVia: "http",
      ...(opts.submittedBy ? { submittedBy: opts.submittedBy } : {}),
      ...(opts.idempotencyKey ? { idempotencyKey: opts.idempotencyKey } : {}),
    },
  });
  await deps.bus.publish(event, opts.ctx ? { ctx: opts.ctx } : {});
  const view = evolve(undefined, event).state as TaskView;
  return { task: view, created };
}

export async function requestCancel(
  deps: { db: Db; bus: Bus },
  taskId: string,
  opts: { reason?: string; requestedBy?: string; ctx?: Context },
): Promise<TaskView> {
  const view = await getTaskView(deps.db, taskId);
  if (!view) throw new HttpProblem(404, "task_not_found", `no task '${taskId}'`);
  const decision = decideCancel(view);
  if (decision.kind === "reject")
    throw new HttpProblem(409, "task_finished", `cannot cancel: ${decision.reason}`, { taskStatus: view.status });
  const event = createEvent("task.cancel_requested", {
    taskId,
    producer: PRODUCER,
    data: { ...(opts.reason ? { reason: opts.reason } : {}), ...(opts.requestedBy ? { requestedBy: opts.requestedBy } : {}) },
  });
  await deps.bus.publish(event, opts.ctx ? { ctx: opts.ctx } : {});
  return { ...view, cancelRequested: true };
}

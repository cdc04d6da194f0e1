import { createHash } from "node:crypto";
import {
  agentKeyProblem,
  type CodefleetEventOf,
  checkRepoUrl,
  checkWebhookUrl,
  createEvent,
  DEFAULT_TENANT,
  networkPolicyProblem,
  newEventId,
  newTaskId,
  pullRequestProblem,
  type SecurityPolicy,
  secretTenantProblem,
  specKeyProblem,
  type TaskSpec,
  taskSecretNames,
} from "@codefleet/contracts";
import {
  type Admission,
  canAccessTenant,
  decideAdmission,
  hasRepoUrlCredentials,
  type Principal,
  quotaLimitsAdmission,
  type TenantQuota,
} from "@codefleet/contracts/access";
import type { Bus } from "@codefleet/platform/bus";
import { HttpProblem } from "@codefleet/platform/runtime";
import type { Context } from "@opentelemetry/api";
import type { Db } from "../store/database.js";
import { admitTask, forgetAdmission, getTaskView, tenantLoad } from "../store/task-queries.js";
import { decideCancel, decideFollowUp, evolve, type TaskView, turnOf } from "./task-state.js";

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

/** The tenant is at its quota: the HTTP layer answers 429 with Retry-After. */
export class QuotaExceededError extends HttpProblem {
  constructor(
    readonly tenant: string,
    readonly refusal: Extract<Admission, { kind: "refuse" }>,
  ) {
    super(429, "quota_exceeded", `quota exceeded: ${refusal.message}`, { tenant, limit: refusal.limit, max: refusal.max });
  }
}

/**
 * The operator's policy on a schema-valid spec of `tenant`: the repository URL (no local paths
 * outside the allowed roots, no plain http, no git transport tricks, only allowed hosts), the
 * agent's endpoint (a runner secret goes only to hosts listed for it) and the secrets it uses
 * (only those allowed for its tenant; decided by the rule alone, so the answer says nothing of
 * whether the runner has the secret). Throws a 422 problem with the policy's stable code; the
 * messages never echo credentials.
 */
export function assertSubmissionAllowed(spec: TaskSpec, policy: SecurityPolicy, tenant: string): void {
  const keys = specKeyProblem(spec);
  if (keys) throw new HttpProblem(422, keys.code, keys.message, { field: keys.field });
  const repo = checkRepoUrl(spec.repo.url, policy.repoUrls);
  if (!repo.ok) throw new HttpProblem(422, repo.code, repo.message, { field: "/repo/url" });
  const agent = agentKeyProblem(spec.agent, policy.secretEndpoints);
  if (agent) throw new HttpProblem(422, agent.code, agent.message, { field: "/agent/baseUrl" });
  const pr = pullRequestProblem(spec, policy.secretEndpoints);
  if (pr) throw new HttpProblem(422, pr.code, pr.message, { field: pr.field });
  const network = networkPolicyProblem(spec, policy.network);
  if (network) throw new HttpProblem(422, network.code, network.message, { field: "/network" });
  const secrets = secretTenantProblem(taskSecretNames(spec), tenant, policy.secretTenants);
  if (secrets) {
    const named = secrets.names.some((name) => spec.secrets?.includes(name));
    const token = secrets.names.includes(spec.pullRequest?.tokenSecret ?? "");
    throw new HttpProblem(422, secrets.code, secrets.message, {
      field: named ? "/secrets" : token ? "/pullRequest/tokenSecret" : "/agent/apiKeySecret",
    });
  }
  if (spec.notify) {
    const hook = checkWebhookUrl(spec.notify.url, policy.webhookUrls);
    if (!hook.ok) throw new HttpProblem(422, hook.code, hook.message, { field: "/notify/url" });
  }
  // refused rather than stripped: a URL's credentials would reach events, views, spans and logs, and
  // stripping them would run the task without the access its submitter expected
  if (hasRepoUrlCredentials(spec.repo.url))
    throw new HttpProblem(
      422,
      "repo_url_credentials_refused",
      "repository URLs must not carry credentials (user:password@ or a token); the operator configures credentials per host",
      { field: "/repo/url" },
    );
}

/**
 * A task asking for a container runtime no live runner offers (`runsc` where gVisor is not
 * installed) is refused at submission with `runtime_unavailable`. With no runner heard of yet (a
 * registry that just started, runners still coming up), the task is taken: a runner without the
 * runtime ends it with the same code.
 */
export function assertRuntimeOffered(spec: Pick<TaskSpec, "runtime">, runners: readonly { runtimes?: string[] }[]): void {
  const runtime = spec.runtime;
  if (!runtime || runtime === "runc" || runners.length === 0) return;
  if (runners.some((r) => r.runtimes?.includes(runtime))) return;
  throw new HttpProblem(
    422,
    "runtime_unavailable",
    `no runner offers the container runtime '${runtime}' (the runners have: ${[...new Set(runners.flatMap((r) => r.runtimes ?? ["runc"]))].join(", ")})`,
    { field: "/runtime" },
  );
}

/**
 * Submits a task: assigns an id, publishes task.submitted and answers with the queued view.
 * With an idempotency key, a retry (same key, same body) returns the same task and re-publishes
 * the same event id, so a crash between storing the key and publishing loses nothing and a
 * double publish is de-duplicated.
 */
export async function submitTask(
  deps: { db: Db; bus: Bus; quota?: (tenant: string) => Required<TenantQuota> },
  spec: TaskSpec,
  opts: { idempotencyKey?: string; submittedBy?: string; tenant: string; ctx?: Context },
): Promise<SubmitResult> {
  let taskId = newTaskId();
  let eventId = newEventId();
  let created = true;
  const { tenant } = opts;
  if (opts.idempotencyKey) {
    const requestHash = canonicalHash(spec);
    const inserted = await deps.db
      .insertInto("idempotency_keys")
      .values({ tenant, key: opts.idempotencyKey, task_id: taskId, event_id: eventId, request_hash: requestHash })
      .onConflict((oc) => oc.columns(["tenant", "key"]).doNothing())
      .returning("task_id")
      .executeTakeFirst();
    if (!inserted) {
      const existing = await deps.db
        .selectFrom("idempotency_keys")
        .selectAll()
        .where("tenant", "=", tenant)
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
      tenant,
      ...(opts.submittedBy ? { submittedBy: opts.submittedBy } : {}),
      ...(opts.idempotencyKey ? { idempotencyKey: opts.idempotencyKey } : {}),
    },
  });
  try {
    await admitAndPublish(deps, event, opts.ctx);
  } catch (err) {
    // a refused submission does not use up its Idempotency-Key
    if (err instanceof QuotaExceededError && opts.idempotencyKey && created)
      await deps.db
        .deleteFrom("idempotency_keys")
        .where("tenant", "=", tenant)
        .where("key", "=", opts.idempotencyKey)
        .where("task_id", "=", taskId)
        .execute();
    throw err;
  }
  const view = evolve(undefined, event).state as TaskView;
  return { task: view, created };
}

/**
 * Admits a task under its tenant's quota and publishes its task.submitted (the registry's ingestion
 * then queues it for the runners). HTTP and bus submissions both come through here.
 * Throws QuotaExceededError when the tenant is at its quota.
 */
export async function admitAndPublish(
  deps: { db: Db; bus: Bus; quota?: (tenant: string) => Required<TenantQuota> },
  event: CodefleetEventOf<"task.submitted">,
  ctx?: Context,
): Promise<void> {
  const tenant = event.data.tenant ?? DEFAULT_TENANT;
  const quota = deps.quota?.(tenant);
  const limited = quota !== undefined && quotaLimitsAdmission(quota);
  if (quota && limited) {
    const decision = await admitTask(deps.db, { taskId: event.taskId, tenant }, (counts) => decideAdmission(counts, quota));
    if (decision.kind === "refuse") throw new QuotaExceededError(tenant, decision);
  }
  try {
    await deps.bus.publish(event, ctx ? { ctx } : {});
  } catch (err) {
    if (limited) await forgetAdmission(deps.db, event.taskId).catch(() => undefined);
    throw err;
  }
}

/**
 * Asks for a task's cancellation. The task must be the principal's tenant's (else it does not
 * exist for them: 404); the event records who asked and the task's tenant.
 */
export async function requestCancel(
  deps: { db: Db; bus: Bus },
  taskId: string,
  opts: { reason?: string; principal: Principal; ctx?: Context },
): Promise<TaskView> {
  const view = await getTaskView(deps.db, taskId);
  if (!view || !canAccessTenant(opts.principal, view.tenant)) throw new HttpProblem(404, "task_not_found", `no task '${taskId}'`);
  const decision = decideCancel(view);
  if (decision.kind === "reject")
    throw new HttpProblem(409, "task_finished", `cannot cancel: ${decision.reason}`, { taskStatus: view.status });
  const event = createEvent("task.cancel_requested", {
    taskId,
    producer: PRODUCER,
    data: { ...(opts.reason ? { reason: opts.reason } : {}), requestedBy: opts.principal.name, tenant: view.tenant, turn: turnOf(view) },
  });
  await deps.bus.publish(event, opts.ctx ? { ctx: opts.ctx } : {});
  return { ...view, cancelRequested: true, cancelRequestedBy: opts.principal.name };
}

/**
 * Asks for a follow-up: a new turn of a finished task on the same branch (and pull request). The
 * task must be the principal's tenant's and its turn over; the turn's spec (the task's, with this
 * prompt and agent) passes the operator's policy like a submission, and the tenant's quota counts
 * it as a queued task. Two requests racing for the same turn publish the same event id
 * (from the task and the turn): JetStream keeps the first, and the second is told so (409).
 */
export async function requestFollowUp(
  deps: { db: Db; bus: Bus; quota?: (tenant: string) => Required<TenantQuota>; securityPolicy: SecurityPolicy },
  taskId: string,
  input: { prompt: string; agent?: TaskSpec["agent"] },
  opts: { principal: Principal; ctx?: Context },
): Promise<TaskView> {
  const view = await getTaskView(deps.db, taskId);
  if (!view || !canAccessTenant(opts.principal, view.tenant)) throw new HttpProblem(404, "task_not_found", `no task '${taskId}'`);
  const decision = decideFollowUp(view);
  if (decision.problem)
    throw new HttpProblem(409, decision.code ?? "task_not_finished", `cannot follow up: ${decision.problem}`, { taskStatus: view.status });
  if (!view.spec) throw new HttpProblem(409, "task_rejected", "cannot follow up: the task has no spec");
  // a turn starts from the commit the turn before pushed; a task that keeps its change to itself has none
  if (view.spec.push?.enabled === false)
    throw new HttpProblem(
      409,
      "follow_up_needs_push",
      "cannot follow up: the task does not push (push.enabled is false), so no later turn can start from its change",
    );
  const spec: TaskSpec = { ...view.spec, prompt: input.prompt, ...(input.agent ? { agent: input.agent } : {}) };
  assertSubmissionAllowed(spec, deps.securityPolicy, view.tenant);
  const quota = deps.quota?.(view.tenant);
  if (quota && quotaLimitsAdmission(quota)) {
    const refusal = decideAdmission(await tenantLoad(deps.db, view.tenant), quota);
    if (refusal.kind === "refuse") throw new QuotaExceededError(view.tenant, refusal);
  }
  const turn = turnOf(view) + 1;
  const fromCommit = view.turns?.at(-1)?.commitSha ?? view.commitSha;
  const event = createEvent("task.follow_up_requested", {
    id: followUpEventId(taskId, turn),
    taskId,
    producer: PRODUCER,
    data: {
      turn,
      prompt: input.prompt,
      ...(input.agent ? { agent: input.agent } : {}),
      firstAttempt: view.attempt + 1,
      ...(fromCommit ? { fromCommit } : {}),
      requestedBy: opts.principal.name,
      tenant: view.tenant,
    },
  });
  const published = await deps.bus.publish(event, opts.ctx ? { ctx: opts.ctx } : {});
  if (published.duplicate) throw new HttpProblem(409, "turn_taken", `turn ${turn} of task ${taskId} was just asked for by another request`);
  return evolve(view, event).state as TaskView;
}

/** The id of a turn's follow-up event: one per task and turn, so two racing requests cannot both start it. */
export const followUpEventId = (taskId: string, turn: number) =>
  `fu_${createHash("sha256").update(taskId).digest("hex").slice(0, 32)}_${turn}`;

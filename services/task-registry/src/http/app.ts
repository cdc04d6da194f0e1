import { isValidTaskId, type SecurityPolicy, TASK_STATUSES, TaskSpec, type TaskStatus } from "@codefleet/contracts";
import {
  canAccessTenant,
  type Principal,
  stripRepoUrlCredentials,
  submissionTenant,
  type TenantQuota,
  type TokenVerifier,
  tenantFilter,
} from "@codefleet/contracts/access";
import type { Bus } from "@codefleet/platform/bus";
import { contextFromFields } from "@codefleet/platform/bus";
import {
  acceptEmptyJsonBodies,
  guardMetrics,
  type HealthOptions,
  HttpProblem,
  installErrorHandling,
  installHealthRoutes,
  installTokenAuth,
  principalOf,
  sendProblem,
} from "@codefleet/platform/runtime";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { type Context, context, trace } from "@opentelemetry/api";
import { Type } from "@sinclair/typebox";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import {
  assertRuntimeOffered,
  assertSubmissionAllowed,
  QuotaExceededError,
  requestCancel,
  requestFollowUp,
  submitTask,
} from "../domain/submission.js";
import type { TaskView } from "../domain/task-state.js";
import type { KnownRunner } from "../fleet/runner-directory.js";
import { installScheduleRoutes } from "../schedules/routes.js";
import type { Db } from "../store/database.js";
import { readTaskEvents, storedEventView } from "../store/event-store.js";
import { getTaskView, listTaskViews } from "../store/task-queries.js";
import { type DashboardOptions, installDashboard } from "./dashboard.js";
import { installFleetRoutes } from "./fleet.js";
import { type LogTailDeps, streamTaskLogs } from "./logs.js";

export type AppDeps = {
  db: Db;
  bus: Bus;
  logger: Logger;
  /** Who a bearer token is: its name, tenant and scopes. */
  tokens: TokenVerifier;
  /** A tenant's quota of queued and running tasks (0: no limit). */
  quota: (tenant: string) => Required<TenantQuota>;
  /** Retry-After of a 429 quota_exceeded. */
  quotaRetryAfterSeconds: number;
  /** When set, /metrics needs it as a bearer token. */
  metricsToken?: string;
  bodyLimitBytes: number;
  artifactStorePublicUrl: string;
  /** What a task may name: repository URLs and agent endpoints (checked after the schema). */
  securityPolicy: SecurityPolicy;
  health: HealthOptions;
  logTail: Omit<LogTailDeps, "bus" | "db">;
  /** The web dashboard at `/` (static files; disabled when its build is missing). */
  dashboard?: DashboardOptions;
  /** The runners' heartbeats, for GET /v1/fleet. */
  runnerDirectory?: { live(): KnownRunner[] };
  /** The clock of schedules (tests move it); default: the system's. */
  now?: () => Date;
};

const TaskIdParam = Type.Object({ id: Type.String({ maxLength: 128 }) });
const Problem = Type.Object(
  { type: Type.String(), title: Type.String(), status: Type.Integer(), code: Type.String(), detail: Type.Optional(Type.String()) },
  { additionalProperties: true },
);
const TaskViewSchema = Type.Object(
  {
    id: Type.String(),
    status: Type.Union(TASK_STATUSES.map((s) => Type.Literal(s))),
    tenant: Type.String(),
    submittedBy: Type.Optional(Type.String()),
    title: Type.String(),
    attempt: Type.Integer(),
    turn: Type.Optional(Type.Integer()),
    currentPhase: Type.Optional(Type.String()),
    branch: Type.String(),
    commitSha: Type.Optional(Type.String()),
    traceId: Type.Optional(Type.String()),
  },
  { additionalProperties: true, description: "The task's projection: status, phases, attempts, artifacts and more" },
);

/**
 * The context events of this request carry: the request's span when tracing is on (so the trace
 * continues through the bus), else the caller's traceparent as it came in.
 */
function traceCtx(req: FastifyRequest): Context {
  const active = context.active();
  return trace.getSpan(active) ? active : contextFromFields(req.headers as Record<string, string | string[] | undefined>);
}

function requireTaskId(id: string): string {
  if (!isValidTaskId(id)) throw new HttpProblem(404, "task_not_found", `no task '${id.slice(0, 128)}'`);
  return id;
}

/** The task, when it exists and belongs to the principal's tenant: another tenant's task is 404, as if it did not exist. */
async function requireTask(db: Db, id: string, principal: Principal): Promise<TaskView> {
  const view = await getTaskView(db, requireTaskId(id));
  if (!view || !canAccessTenant(principal, view.tenant)) throw new HttpProblem(404, "task_not_found", `no task '${id}'`);
  return view;
}

/** An event's data as the API shows it: repository credentials of a bus submission are never shown. */
function shownEventData(type: string, data: unknown): unknown {
  if (type !== "task.submitted") return data;
  const d = data as { spec?: { repo?: { url?: unknown } } };
  const url = d.spec?.repo?.url;
  if (typeof url !== "string" || stripRepoUrlCredentials(url) === url) return data;
  const spec = d.spec as { repo: { url: string } };
  return { ...d, spec: { ...spec, repo: { ...spec.repo, url: stripRepoUrlCredentials(url) } } };
}

/** Builds the registry's HTTP API. It never listens: main.ts (or a test's inject) does. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimitBytes,
    requestIdHeader: "x-request-id",
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
  });
  installErrorHandling(app);
  await app.register(swagger, {
    openapi: {
      info: {
        title: "codefleet task-registry",
        version: "1.0.0",
        description: "Submit tasks, follow them, read their history, logs and artifacts.",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });
  acceptEmptyJsonBodies(app);
  installTokenAuth(app, deps.tokens);
  installHealthRoutes(app, {
    ...deps.health,
    ...(deps.health.metrics ? { metrics: guardMetrics(deps.health.metrics, deps.metricsToken) } : {}),
  });

  app.post(
    "/v1/tasks",
    {
      config: { scope: "tasks:submit" },
      schema: {
        summary: "Submit a task (scope tasks:submit); it belongs to the token's tenant",
        body: TaskSpec,
        headers: Type.Object({ "idempotency-key": Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) }),
        response: { 202: TaskViewSchema, 401: Problem, 403: Problem, 413: Problem, 422: Problem, 429: Problem },
      },
    },
    async (req, reply) => {
      const key = req.headers["idempotency-key"];
      const spec = req.body as TaskSpec;
      const principal = principalOf(req);
      const tenant = submissionTenant(principal);
      assertSubmissionAllowed(spec, deps.securityPolicy, tenant);
      assertRuntimeOffered(spec, deps.runnerDirectory?.live() ?? []);
      let result: Awaited<ReturnType<typeof submitTask>>;
      try {
        result = await submitTask(deps, spec, {
          ...(typeof key === "string" ? { idempotencyKey: key } : {}),
          tenant,
          submittedBy: principal.name,
          ctx: traceCtx(req),
        });
      } catch (err) {
        if (!(err instanceof QuotaExceededError)) throw err;
        reply.header("retry-after", String(deps.quotaRetryAfterSeconds));
        return sendProblem(reply, 429, err.code, err.message, err.extra);
      }
      const { task, created } = result;
      return reply
        .code(202)
        .header("location", `/v1/tasks/${task.id}`)
        .header("idempotent-replayed", created ? "false" : "true")
        .send(task);
    },
  );

  app.get(
    "/v1/tasks",
    {
      config: { scope: "tasks:read" },
      schema: {
        summary: "List the token's tenant's tasks, newest first (scope tasks:read); items carry no spec",
        querystring: Type.Object({
          status: Type.Optional(Type.String({ description: "comma-separated statuses" })),
          repo: Type.Optional(Type.String({ maxLength: 2048 })),
          label: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())], { description: "key=value; repeatable" })),
          limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,3}$" })),
          cursor: Type.Optional(Type.String({ maxLength: 500 })),
        }),
      },
    },
    async (req) => {
      const q = req.query as { status?: string; repo?: string; label?: string | string[]; limit?: string; cursor?: string };
      const status = q.status?.split(",").filter(Boolean) ?? [];
      for (const s of status) {
        if (!TASK_STATUSES.includes(s as TaskStatus))
          throw new HttpProblem(422, "invalid_status", `unknown status '${s}'; one of ${TASK_STATUSES.join(", ")}`);
      }
      const labels: Record<string, string> = {};
      for (const l of [q.label ?? []].flat()) {
        const i = l.indexOf("=");
        if (i <= 0) throw new HttpProblem(422, "invalid_label_filter", `label filter '${l}' must be key=value`);
        labels[l.slice(0, i)] = l.slice(i + 1);
      }
      const limit = Math.min(Math.max(Number(q.limit ?? 50), 1), 200);
      const tenant = tenantFilter(principalOf(req));
      const page = await listTaskViews(deps.db, {
        limit,
        ...(tenant === undefined ? {} : { tenant }),
        ...(status.length ? { status: status as TaskStatus[] } : {}),
        ...(q.repo ? { repo: q.repo } : {}),
        ...(Object.keys(labels).length ? { labels } : {}),
        ...(q.cursor ? { cursor: q.cursor } : {}),
      });
      return page;
    },
  );

  app.get(
    "/v1/tasks/:id",
    {
      config: { scope: "tasks:read" },
      schema: { summary: "A task's current view (scope tasks:read)", params: TaskIdParam, response: { 200: TaskViewSchema, 404: Problem } },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      return requireTask(deps.db, id, principalOf(req));
    },
  );

  app.get(
    "/v1/tasks/:id/events",
    {
      config: { scope: "tasks:read" },
      schema: { summary: "The task's raw event history, in order: who did what (scope tasks:read)", params: TaskIdParam },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      await requireTask(deps.db, id, principalOf(req));
      const rows = await readTaskEvents(deps.db, id);
      return {
        items: rows.map((r) => storedEventView(r, shownEventData(r.type, r.data))),
      };
    },
  );

  app.post(
    "/v1/tasks/:id/cancel",
    {
      config: { scope: "tasks:cancel" },
      schema: {
        summary: "Request cancellation (scope tasks:cancel)",
        description: 'Optional JSON body: { "reason": "..." }; an empty body is fine',
        params: TaskIdParam,
        response: { 202: TaskViewSchema, 404: Problem, 409: Problem },
      },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const body = (req.body ?? {}) as { reason?: unknown };
      if (typeof body !== "object" || (body.reason !== undefined && (typeof body.reason !== "string" || body.reason.length > 2000))) {
        throw new HttpProblem(422, "invalid_request", "body must be { reason?: string (at most 2000 characters) }");
      }
      const reason = typeof body.reason === "string" ? body.reason : undefined;
      const view = await requestCancel(deps, requireTaskId(id), {
        ...(reason ? { reason } : {}),
        principal: principalOf(req),
        ctx: traceCtx(req),
      });
      return reply.code(202).send(view);
    },
  );

  app.post(
    "/v1/tasks/:id/follow-ups",
    {
      config: { scope: "tasks:submit" },
      schema: {
        summary: "Ask for a follow-up turn of a finished task, on the same branch and pull request (scope tasks:submit)",
        description:
          "The turn starts from the commit the previous turn pushed (or its change, when the task does not push) and runs the task's pipeline with this prompt; its push is a new commit on the same branch. 409 while the task's turn is not over.",
        params: TaskIdParam,
        body: Type.Object(
          {
            prompt: Type.String({ minLength: 1, maxLength: 200_000 }),
            agent: Type.Optional(TaskSpec.properties.agent),
          },
          { additionalProperties: false },
        ),
        response: { 202: TaskViewSchema, 404: Problem, 409: Problem, 422: Problem, 429: Problem },
      },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const body = req.body as { prompt: string; agent?: TaskSpec["agent"] };
      try {
        const view = await requestFollowUp(deps, requireTaskId(id), body, { principal: principalOf(req), ctx: traceCtx(req) });
        return reply.code(202).header("location", `/v1/tasks/${view.id}`).send(view);
      } catch (err) {
        if (!(err instanceof QuotaExceededError)) throw err;
        reply.header("retry-after", String(deps.quotaRetryAfterSeconds));
        return sendProblem(reply, 429, err.code, err.message, err.extra);
      }
    },
  );

  app.get(
    "/v1/tasks/:id/artifacts",
    {
      // the same metadata as the view's `artifacts`; downloading them needs artifacts:read at the artifact-store
      config: { scope: "tasks:read" },
      schema: { summary: "Artifacts stored for the task, with download links (scope tasks:read)", params: TaskIdParam },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const view = await requireTask(deps.db, id, principalOf(req));
      const base = deps.artifactStorePublicUrl.replace(/\/$/, "");
      return {
        items: view.artifacts.map((a) => ({ ...a, downloadUrl: `${base}/v1/artifacts/${a.artifactId}/content` })),
      };
    },
  );

  app.get(
    "/v1/tasks/:id/logs",
    {
      config: { scope: "tasks:read" },
      schema: {
        summary:
          "The task's log (scope tasks:read): live over SSE (Accept: text/event-stream, resumable with Last-Event-ID), or the text so far",
        params: TaskIdParam,
        querystring: Type.Object({ attempt: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$" })) }),
      },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      await requireTask(deps.db, id, principalOf(req));
      const attempt = (req.query as { attempt?: string }).attempt;
      await streamTaskLogs(
        { ...deps.logTail, bus: deps.bus, db: deps.db },
        req,
        reply,
        id,
        attempt === undefined ? undefined : Number(attempt),
      );
      return reply;
    },
  );

  installScheduleRoutes(app, { db: deps.db, bus: deps.bus, securityPolicy: deps.securityPolicy, ...(deps.now ? { now: deps.now } : {}) });
  installFleetRoutes(app, {
    db: deps.db,
    bus: deps.bus,
    quota: deps.quota,
    ...(deps.logTail.storedLog ? { readArtifact: deps.logTail.storedLog } : {}),
    ...(deps.runnerDirectory ? { runnerDirectory: deps.runnerDirectory } : {}),
  });
  if (deps.dashboard) installDashboard(app, deps.dashboard, deps.logger);
  return app;
}

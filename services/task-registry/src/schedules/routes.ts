import { createEvent, isScheduleId, newScheduleId, SCHEDULE_LABEL, type SecurityPolicy, TaskSpec } from "@codefleet/contracts";
import { canAccessTenant, type Principal, submissionTenant, tenantFilter } from "@codefleet/contracts/access";
import type { Bus } from "@codefleet/platform/bus";
import { HttpProblem, principalOf } from "@codefleet/platform/runtime";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { assertSubmissionAllowed, PRODUCER } from "../domain/submission.js";
import type { Db } from "../store/database.js";
import { readTaskEvents, storedEventView } from "../store/event-store.js";
import { cronProblem } from "./cron.js";
import { decideScheduleChange, evolveSchedule, nextFireTime, type ScheduleView } from "./schedule-state.js";
import { getSchedule, listSchedules } from "./store.js";

export type ScheduleRouteDeps = {
  db: Db;
  bus: Bus;
  securityPolicy: SecurityPolicy;
  now?: () => Date;
};

const MAX_LABELS = 32;

export const CreateScheduleBody = Type.Object(
  {
    cron: Type.String({
      minLength: 1,
      maxLength: 200,
      description: "5 fields (minute hour day month weekday) or 6 (seconds first); @hourly-style aliases",
    }),
    timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: "IANA time zone; default UTC" })),
    task: TaskSpec,
  },
  { additionalProperties: false },
);
const PatchScheduleBody = Type.Object({ paused: Type.Boolean() }, { additionalProperties: false });
const ScheduleIdParam = Type.Object({ id: Type.String({ maxLength: 128 }) });

/** A schedule as the API shows it: its view and when it fires next. */
function shown(view: ScheduleView, now: Date): ScheduleView & { nextFireTime?: string } {
  const next = nextFireTime(view, now);
  return { ...view, ...(next ? { nextFireTime: next } : {}) };
}

/** The schedule, when it exists, is not deleted and belongs to the principal's tenant: else 404, as if it did not exist. */
async function requireSchedule(db: Db, id: string, principal: Principal): Promise<ScheduleView> {
  const view = isScheduleId(id) ? await getSchedule(db, id) : undefined;
  if (!view || view.status === "deleted" || !canAccessTenant(principal, view.tenant))
    throw new HttpProblem(404, "schedule_not_found", `no schedule '${id.slice(0, 128)}'`);
  return view;
}

/**
 * `/v1/schedules`: create (scope tasks:submit), list and read (tasks:read), pause/resume with
 * PATCH and DELETE (tasks:submit). A schedule belongs to the token's tenant; its task is checked
 * exactly like `POST /v1/tasks` (schema, then the operator's policy for that tenant), and again
 * at every firing. Every change is an event on the schedule's own stream.
 */
export function installScheduleRoutes(app: FastifyInstance, deps: ScheduleRouteDeps): void {
  const now = deps.now ?? (() => new Date());

  app.post(
    "/v1/schedules",
    {
      config: { scope: "tasks:submit" },
      schema: {
        summary: "Create a schedule: its task is submitted at every firing of its cron expression (scope tasks:submit)",
        body: CreateScheduleBody,
      },
    },
    async (req, reply) => {
      const body = req.body as { cron: string; timezone?: string; task: TaskSpec };
      const principal = principalOf(req);
      const tenant = submissionTenant(principal);
      const cron = body.cron.trim();
      const problem = cronProblem(cron, body.timezone ?? "UTC");
      if (problem)
        throw new HttpProblem(422, problem.code, problem.message, { field: problem.code === "invalid_cron" ? "/cron" : "/timezone" });
      const labels = body.task.labels ?? {};
      if (Object.hasOwn(labels, SCHEDULE_LABEL))
        throw new HttpProblem(422, "reserved_label", `the label '${SCHEDULE_LABEL}' is set by the scheduler`, { field: "/task/labels" });
      if (Object.keys(labels).length >= MAX_LABELS)
        throw new HttpProblem(
          422,
          "too_many_labels",
          `a scheduled task may have at most ${MAX_LABELS - 1} labels (the scheduler adds one)`,
          {
            field: "/task/labels",
          },
        );
      assertSubmissionAllowed(body.task, deps.securityPolicy, tenant);
      const at = now();
      const id = newScheduleId(at.getTime());
      const event = createEvent("schedule.created", {
        taskId: id,
        producer: PRODUCER,
        now: at,
        data: { cron, ...(body.timezone ? { timezone: body.timezone } : {}), task: body.task, tenant, createdBy: principal.name },
      });
      await deps.bus.publish(event);
      const view = evolveSchedule(undefined, event).state as ScheduleView;
      return reply.code(201).header("location", `/v1/schedules/${id}`).send(shown(view, at));
    },
  );

  app.get(
    "/v1/schedules",
    { config: { scope: "tasks:read" }, schema: { summary: "The token's tenant's schedules, newest first (scope tasks:read)" } },
    async (req) => {
      const tenant = tenantFilter(principalOf(req));
      const at = now();
      return { items: (await listSchedules(deps.db, tenant)).map((s) => shown(s, at)) };
    },
  );

  app.get(
    "/v1/schedules/:id",
    { config: { scope: "tasks:read" }, schema: { summary: "A schedule (scope tasks:read)", params: ScheduleIdParam } },
    async (req) => {
      const { id } = req.params as { id: string };
      return shown(await requireSchedule(deps.db, id, principalOf(req)), now());
    },
  );

  app.get(
    "/v1/schedules/:id/events",
    {
      config: { scope: "tasks:read" },
      schema: { summary: "A schedule's history: created, paused, resumed, every firing (scope tasks:read)", params: ScheduleIdParam },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      await requireSchedule(deps.db, id, principalOf(req));
      const rows = await readTaskEvents(deps.db, id);
      return {
        items: rows.map((r) => storedEventView(r)),
      };
    },
  );

  app.patch(
    "/v1/schedules/:id",
    {
      config: { scope: "tasks:submit" },
      schema: {
        summary: 'Pause or resume a schedule: { "paused": true|false } (scope tasks:submit)',
        params: ScheduleIdParam,
        body: PatchScheduleBody,
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const { paused } = req.body as { paused: boolean };
      const principal = principalOf(req);
      const view = await requireSchedule(deps.db, id, principal);
      const decision = decideScheduleChange(view, paused ? "pause" : "resume");
      if (decision.kind === "noop") return shown(view, now());
      const at = now();
      const event = createEvent(decision.type, { taskId: id, producer: PRODUCER, now: at, data: { by: principal.name } });
      await deps.bus.publish(event);
      return shown(evolveSchedule(view, event).state ?? view, at);
    },
  );

  app.delete(
    "/v1/schedules/:id",
    {
      config: { scope: "tasks:submit" },
      schema: { summary: "Delete a schedule: it never fires again (scope tasks:submit)", params: ScheduleIdParam },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const principal = principalOf(req);
      await requireSchedule(deps.db, id, principal);
      await deps.bus.publish(createEvent("schedule.deleted", { taskId: id, producer: PRODUCER, now: now(), data: { by: principal.name } }));
      return reply.code(204).send();
    },
  );
}

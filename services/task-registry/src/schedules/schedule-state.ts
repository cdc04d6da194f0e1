import { assertNever, type CodefleetEventOf, SCHEDULE_LABEL, type ScheduleEventType, type TaskSpec } from "@codefleet/contracts";
import { latestFireAtOrBefore, nextFireAfter } from "./cron.js";

/**
 * A schedule's state, folded from its own event stream (`sch_…`): pure. `evolveSchedule` is to
 * schedules what `evolve` is to tasks; `dueFiring` says what the scheduler must submit now.
 */

export type ScheduleStatus = "active" | "paused" | "deleted";

export type ScheduleFiring = {
  fireTime: string;
  outcome: "submitted" | "refused";
  taskId?: string;
  code?: string;
  reason?: string;
};

export type ScheduleView = {
  id: string;
  tenant: string;
  cron: string;
  /** IANA time zone; absent: UTC. */
  timezone?: string;
  task: TaskSpec;
  status: ScheduleStatus;
  createdAt: string;
  createdBy?: string;
  updatedAt: string;
  pausedAt?: string;
  resumedAt?: string;
  deletedAt?: string;
  /** The latest firing recorded (by fire time). */
  lastFiring?: ScheduleFiring;
  /** Firings recorded so far (submitted or refused). */
  firings: number;
  version: number;
};

export type ScheduleEvent = CodefleetEventOf<ScheduleEventType>;

export type ScheduleEvolveResult = { state: ScheduleView | undefined; anomaly?: string };

export function evolveSchedule(state: ScheduleView | undefined, event: ScheduleEvent): ScheduleEvolveResult {
  if (event.type === "schedule.created") {
    if (state) return { state, anomaly: "schedule.created for a schedule that already exists" };
    const d = event.data;
    return {
      state: {
        id: event.taskId,
        tenant: d.tenant,
        cron: d.cron,
        ...(d.timezone ? { timezone: d.timezone } : {}),
        task: d.task,
        status: "active",
        createdAt: event.occurredAt,
        ...(d.createdBy ? { createdBy: d.createdBy } : {}),
        updatedAt: event.occurredAt,
        firings: 0,
        version: 0,
      },
    };
  }
  if (!state) return { state, anomaly: `${event.type} for a schedule that was never created` };
  if (state.status === "deleted") return { state, anomaly: `${event.type} after the schedule was deleted` };
  switch (event.type) {
    case "schedule.paused":
      if (state.status === "paused") return { state };
      return { state: { ...state, status: "paused", pausedAt: event.occurredAt, updatedAt: event.occurredAt } };
    case "schedule.resumed":
      if (state.status === "active") return { state };
      return { state: { ...state, status: "active", resumedAt: event.occurredAt, updatedAt: event.occurredAt } };
    case "schedule.deleted":
      return { state: { ...state, status: "deleted", deletedAt: event.occurredAt, updatedAt: event.occurredAt } };
    case "schedule.fired": {
      const d = event.data;
      const firing: ScheduleFiring = {
        fireTime: d.fireTime,
        outcome: d.outcome,
        ...(d.taskId ? { taskId: d.taskId } : {}),
        ...(d.code ? { code: d.code } : {}),
        ...(d.reason ? { reason: d.reason } : {}),
      };
      const later = !state.lastFiring || Date.parse(d.fireTime) >= Date.parse(state.lastFiring.fireTime);
      return { state: { ...state, firings: state.firings + 1, ...(later ? { lastFiring: firing } : {}) } };
    }
    default:
      return assertNever(event, "schedule event type");
  }
}

export function applyStoredSchedule(state: ScheduleView | undefined, event: ScheduleEvent, streamVersion: number): ScheduleEvolveResult {
  const r = evolveSchedule(state, event);
  return r.state && !r.anomaly ? { state: { ...r.state, version: streamVersion } } : r;
}

/**
 * The firing due now, if any: the latest fire time at or before `now` that is later than the
 * schedule's cursor (its creation, its latest resume, the latest firing recorded or, for the
 * scheduler that fired it, remembered). So a scheduler that was down (or a schedule that was
 * paused) fires at most the latest missed time, never a backlog, and never a time twice.
 */
export function dueFiring(s: ScheduleView, now: Date, remembered?: Date): Date | undefined {
  if (s.status !== "active") return undefined;
  const cursor = Math.max(
    Date.parse(s.createdAt),
    s.resumedAt ? Date.parse(s.resumedAt) : 0,
    s.lastFiring ? Date.parse(s.lastFiring.fireTime) : 0,
    remembered?.getTime() ?? 0,
  );
  const latest = latestFireAtOrBefore(s.cron, s.timezone, now);
  return latest && latest.getTime() > cursor ? latest : undefined;
}

/** When it fires next (for display): undefined when paused, deleted, or never again. */
export function nextFireTime(s: ScheduleView, now: Date): string | undefined {
  if (s.status !== "active") return undefined;
  return nextFireAfter(s.cron, s.timezone, now)?.toISOString();
}

/** The idempotency key of one firing: a restart or a second scheduler submits the same task. */
export function firingKey(scheduleId: string, fireTime: Date): string {
  return `schedule:${scheduleId}:${fireTime.toISOString()}`;
}

/** The spec a firing submits: the schedule's task, labelled `schedule=<id>`. */
export function firingSpec(s: Pick<ScheduleView, "id" | "task">): TaskSpec {
  return { ...s.task, labels: { ...(s.task.labels ?? {}), [SCHEDULE_LABEL]: s.id } };
}

export type ScheduleChange = "pause" | "resume" | "delete";

/** What a change asks of the log: an event, nothing (already so), or a refusal. */
export function decideScheduleChange(
  s: ScheduleView,
  change: ScheduleChange,
): { kind: "emit"; type: "schedule.paused" | "schedule.resumed" | "schedule.deleted" } | { kind: "noop" } {
  switch (change) {
    case "pause":
      return s.status === "paused" ? { kind: "noop" } : { kind: "emit", type: "schedule.paused" };
    case "resume":
      return s.status === "active" ? { kind: "noop" } : { kind: "emit", type: "schedule.resumed" };
    case "delete":
      return { kind: "emit", type: "schedule.deleted" };
    default:
      return assertNever(change, "schedule change");
  }
}

import { createHash } from "node:crypto";
import { type CodefleetEventOf, createEvent, errorMessage, type SecurityPolicy } from "@codefleet/contracts";
import type { TenantQuota } from "@codefleet/contracts/access";
import type { Bus } from "@codefleet/platform/bus";
import { HttpProblem, type Logger } from "@codefleet/platform/runtime";
import type { Meter } from "@opentelemetry/api";
import { assertSubmissionAllowed, PRODUCER, QuotaExceededError, submitTask } from "../domain/submission.js";
import { repeatEvery } from "../repeat.js";
import type { Db } from "../store/database.js";
import { dueFiring, firingKey, firingSpec, type ScheduleView } from "./schedule-state.js";
import { activeSchedules } from "./store.js";

export type SchedulerOptions = {
  db: Db;
  bus: Bus;
  log: Logger;
  meter?: Meter;
  securityPolicy: SecurityPolicy;
  quota?: (tenant: string) => Required<TenantQuota>;
  /** Is this replica the scheduler's leader now? */
  isLeader: () => boolean;
  /** How often the leader looks for due firings. */
  tickMs: number;
  now?: () => Date;
};

export type Scheduler = {
  /** One pass: fires what is due (when leader). Returns the firings made. */
  tick(): Promise<number>;
  stop(): Promise<void>;
};

/** The id of a firing's `schedule.fired` event: the same for the same firing and outcome, so a repeat is de-duplicated. */
export function firingEventId(scheduleId: string, fireTime: Date, outcome: string): string {
  return `fire-${createHash("sha256").update(`${scheduleId}\n${fireTime.toISOString()}\n${outcome}`).digest("hex").slice(0, 40)}`;
}

/**
 * The scheduler: every replica runs one, only the leader fires. A firing submits the schedule's
 * task through the same path as `POST /v1/tasks` (schema-valid spec, the operator's policy, the
 * tenant's quota) with the idempotency key `schedule:<id>:<fire time>`, so a restart or a second
 * scheduler firing the same time gets the same task back instead of a new one. Each firing is
 * recorded as `schedule.fired` (the task, or why none: a refusal is recorded once and not retried).
 * After downtime only the latest missed fire time fires (see `dueFiring`).
 */
export function startScheduler(opts: SchedulerOptions): Scheduler {
  const { db, bus, log } = opts;
  const now = opts.now ?? (() => new Date());
  const fired = opts.meter?.createCounter("codefleet_registry_schedule_firings_total", { description: "schedule firings, by outcome" });
  /** Fire times this replica recorded, until the projection has them. */
  const remembered = new Map<string, Date>();
  let stopped = false;

  const fire = async (s: ScheduleView, fireTime: Date): Promise<void> => {
    const spec = firingSpec(s);
    let data: CodefleetEventOf<"schedule.fired">["data"];
    try {
      assertSubmissionAllowed(spec, opts.securityPolicy, s.tenant); // the policy may have changed since the schedule was made
      const { task } = await submitTask({ db, bus, ...(opts.quota ? { quota: opts.quota } : {}) }, spec, {
        idempotencyKey: firingKey(s.id, fireTime),
        tenant: s.tenant,
        ...(s.createdBy ? { submittedBy: s.createdBy } : {}),
      });
      data = { fireTime: fireTime.toISOString(), outcome: "submitted", taskId: task.id };
    } catch (err) {
      // refusals (quota, policy, an idempotency mismatch) are the firing's outcome; anything else is retried next tick
      if (!(err instanceof QuotaExceededError) && !(err instanceof HttpProblem && err.status < 500)) throw err;
      const code = (err as HttpProblem).code;
      data = { fireTime: fireTime.toISOString(), outcome: "refused", code, reason: errorMessage(err).slice(0, 2000) };
    }
    await bus.publish(
      createEvent("schedule.fired", {
        id: firingEventId(s.id, fireTime, data.outcome),
        taskId: s.id,
        producer: PRODUCER,
        data,
      }),
    );
    remembered.set(s.id, fireTime);
    fired?.add(1, { outcome: data.outcome });
    if (data.outcome === "refused") log.warn({ scheduleId: s.id, tenant: s.tenant, code: data.code }, "schedule firing refused");
    else log.info({ scheduleId: s.id, taskId: data.taskId, fireTime: data.fireTime }, "schedule fired");
  };

  const tick = async (): Promise<number> => {
    if (!opts.isLeader()) {
      remembered.clear(); // a later leadership starts from the projection
      return 0;
    }
    const at = now();
    let n = 0;
    for (const s of await activeSchedules(db)) {
      const r = remembered.get(s.id);
      if (r && s.lastFiring && Date.parse(s.lastFiring.fireTime) >= r.getTime()) remembered.delete(s.id);
      const due = dueFiring(s, at, remembered.get(s.id));
      if (!due || !opts.isLeader() || stopped) continue;
      try {
        await fire(s, due);
        n++;
      } catch (err) {
        log.warn({ scheduleId: s.id, error: errorMessage(err) }, "schedule firing failed; retrying on the next tick");
      }
    }
    return n;
  };

  const repeating = repeatEvery(opts.tickMs, tick, log, "scheduler tick");

  return {
    tick,
    async stop() {
      stopped = true;
      await repeating.stop();
    },
  };
}

import { createEvent, type TaskSpec } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { cronProblem, latestFireAtOrBefore, nextFireAfter } from "./cron.js";
import { decideLease, leaderNow } from "./leader.js";
import {
  applyStoredSchedule,
  decideScheduleChange,
  dueFiring,
  evolveSchedule,
  firingKey,
  firingSpec,
  type ScheduleEvent,
  type ScheduleView,
} from "./schedule-state.js";

const task: TaskSpec = {
  repo: { url: "https://git.example.com/acme/app.git" },
  title: "nightly",
  prompt: "update deps",
  agent: { kind: "script", steps: [{ run: "true" }] },
  labels: { team: "core" },
};
const ID = "sch_01KA0000000000000000000000";
const at = (iso: string) => new Date(iso);

function created(iso: string, cron = "* * * * *", timezone?: string): ScheduleEvent {
  return createEvent("schedule.created", {
    taskId: ID,
    producer: "t",
    now: at(iso),
    data: { cron, ...(timezone ? { timezone } : {}), task, tenant: "team-a", createdBy: "ci" },
  });
}
const fold = (events: ScheduleEvent[]) =>
  events.reduce<ScheduleView | undefined>((s, e, i) => applyStoredSchedule(s, e, i + 1).state, undefined);
const fired = (fireTime: string, occurred = fireTime): ScheduleEvent =>
  createEvent("schedule.fired", {
    taskId: ID,
    producer: "t",
    now: at(occurred),
    data: { fireTime, outcome: "submitted", taskId: "tsk_1" },
  });

describe("the cron wrapper", () => {
  it("finds the latest fire time at or before now, inclusive", () => {
    expect(latestFireAtOrBefore("* * * * *", undefined, at("2026-01-01T10:05:00.000Z"))?.toISOString()).toBe("2026-01-01T10:05:00.000Z");
    expect(latestFireAtOrBefore("* * * * *", undefined, at("2026-01-01T10:05:59.999Z"))?.toISOString()).toBe("2026-01-01T10:05:00.000Z");
    expect(latestFireAtOrBefore("*/15 * * * *", "UTC", at("2026-01-01T10:44:00Z"))?.toISOString()).toBe("2026-01-01T10:30:00.000Z");
  });
  it("takes a seconds field and time zones", () => {
    expect(latestFireAtOrBefore("* * * * * *", undefined, at("2026-01-01T10:05:03.400Z"))?.toISOString()).toBe("2026-01-01T10:05:03.000Z");
    // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer
    expect(nextFireAfter("0 9 * * *", "Europe/Berlin", at("2026-01-01T12:00:00Z"))?.toISOString()).toBe("2026-01-02T08:00:00.000Z");
    expect(nextFireAfter("0 9 * * *", "Europe/Berlin", at("2026-07-01T12:00:00Z"))?.toISOString()).toBe("2026-07-02T07:00:00.000Z");
    expect(nextFireAfter("@hourly", undefined, at("2026-01-01T10:05:00Z"))?.toISOString()).toBe("2026-01-01T11:00:00.000Z");
  });
  it("explains what is wrong with an expression or a time zone", () => {
    expect(cronProblem("* * * * *")).toBeUndefined();
    expect(cronProblem("* * * * * *", "Asia/Tokyo")).toBeUndefined();
    expect(cronProblem("61 * * * *")?.code).toBe("invalid_cron");
    expect(cronProblem("* * *")?.code).toBe("invalid_cron");
    expect(cronProblem("* * * * * * *")?.code).toBe("invalid_cron");
    expect(cronProblem("0 0 30 2 *")?.code).toBe("invalid_cron");
    expect(cronProblem("* * * * *", "Mars/Olympus")?.code).toBe("invalid_timezone");
  });
});

describe("a schedule's state", () => {
  it("folds created, paused, resumed, fired and deleted", () => {
    const s = fold([
      created("2026-01-01T10:00:30Z"),
      createEvent("schedule.paused", { taskId: ID, producer: "t", now: at("2026-01-01T10:10:00Z"), data: { by: "ops" } }),
      createEvent("schedule.resumed", { taskId: ID, producer: "t", now: at("2026-01-01T10:20:00Z"), data: { by: "ops" } }),
      fired("2026-01-01T10:21:00.000Z"),
    ]) as ScheduleView;
    expect(s).toMatchObject({ id: ID, tenant: "team-a", status: "active", resumedAt: "2026-01-01T10:20:00.000Z", firings: 1, version: 4 });
    expect(s.lastFiring).toEqual({ fireTime: "2026-01-01T10:21:00.000Z", outcome: "submitted", taskId: "tsk_1" });
    const deleted = evolveSchedule(s, createEvent("schedule.deleted", { taskId: ID, producer: "t", data: {} })).state as ScheduleView;
    expect(deleted.status).toBe("deleted");
    expect(evolveSchedule(deleted, fired("2026-01-01T10:22:00.000Z")).anomaly).toMatch(/deleted/);
    expect(evolveSchedule(undefined, fired("2026-01-01T10:22:00.000Z")).anomaly).toMatch(/never created/);
  });
  it("keeps the latest firing when an older one is recorded late", () => {
    const s = fold([created("2026-01-01T10:00:30Z"), fired("2026-01-01T10:02:00.000Z"), fired("2026-01-01T10:01:00.000Z")]) as ScheduleView;
    expect(s.lastFiring?.fireTime).toBe("2026-01-01T10:02:00.000Z");
    expect(s.firings).toBe(2);
  });
  it("decides pause and resume as events only when they change something", () => {
    const s = fold([created("2026-01-01T10:00:30Z")]) as ScheduleView;
    expect(decideScheduleChange(s, "resume")).toEqual({ kind: "noop" });
    expect(decideScheduleChange(s, "pause")).toEqual({ kind: "emit", type: "schedule.paused" });
    expect(decideScheduleChange({ ...s, status: "paused" }, "resume")).toEqual({ kind: "emit", type: "schedule.resumed" });
    expect(decideScheduleChange(s, "delete")).toEqual({ kind: "emit", type: "schedule.deleted" });
  });
  it("labels the firing's task and keys it by schedule and fire time", () => {
    expect(firingSpec({ id: ID, task }).labels).toEqual({ team: "core", schedule: ID });
    expect(task.labels).toEqual({ team: "core" });
    expect(firingKey(ID, at("2026-01-01T10:05:00Z"))).toBe(`schedule:${ID}:2026-01-01T10:05:00.000Z`);
  });
});

describe("dueFiring", () => {
  const s = fold([created("2026-01-01T10:00:30Z")]) as ScheduleView;
  it("fires the first time after creation, once", () => {
    expect(dueFiring(s, at("2026-01-01T10:00:59Z"))).toBeUndefined();
    expect(dueFiring(s, at("2026-01-01T10:01:00Z"))?.toISOString()).toBe("2026-01-01T10:01:00.000Z");
    expect(dueFiring(s, at("2026-01-01T10:01:40Z"), at("2026-01-01T10:01:00Z"))).toBeUndefined();
  });
  it("fires only the latest missed time after downtime", () => {
    const after = fold([created("2026-01-01T10:00:30Z"), fired("2026-01-01T10:01:00.000Z")]) as ScheduleView;
    expect(dueFiring(after, at("2026-01-01T10:07:10Z"))?.toISOString()).toBe("2026-01-01T10:07:00.000Z");
  });
  it("never fires a paused schedule, nor the times missed while it was paused", () => {
    expect(dueFiring({ ...s, status: "paused" }, at("2026-01-01T10:05:00Z"))).toBeUndefined();
    const resumed = { ...s, resumedAt: "2026-01-01T10:05:30.000Z" };
    expect(dueFiring(resumed, at("2026-01-01T10:05:45Z"))).toBeUndefined();
    expect(dueFiring(resumed, at("2026-01-01T10:06:00Z"))?.toISOString()).toBe("2026-01-01T10:06:00.000Z");
  });

  /**
   * The acceptance criterion with a fake clock: `* * * * *` checked every 7 s for 10 minutes, the
   * scheduler restarted (its memory lost) in the middle while the projection lags a tick behind,
   * and a second scheduler racing the first for two minutes. Submissions are keyed as the real
   * scheduler keys them (idempotency): exactly one task per minute.
   */
  it("submits exactly one task per minute across a restart and with two schedulers", () => {
    const start = Date.parse("2026-01-01T10:00:30Z");
    let projection = s;
    let pendingFired: ScheduleEvent[] = []; // recorded, not yet projected
    const tasks = new Map<string, number>(); // idempotency key → submissions that created a task
    let memories = [new Map<string, Date>()];
    for (let t = start; t <= start + 10 * 60_000; t += 7000) {
      const now = new Date(t);
      // the projection catches up one tick late
      for (const e of pendingFired) projection = evolveSchedule(projection, e).state as ScheduleView;
      pendingFired = [];
      if (t > start + 4 * 60_000 && t <= start + 4 * 60_000 + 7000) memories = [new Map()]; // restart: memory lost
      const racing = t > start + 6 * 60_000 && t < start + 8 * 60_000;
      if (racing && memories.length === 1) memories.push(new Map());
      if (!racing && memories.length === 2) memories = [memories[0] as Map<string, Date>];
      for (const memory of memories) {
        const due = dueFiring(projection, now, memory.get(ID));
        if (!due) continue;
        const key = firingKey(ID, due);
        if (!tasks.has(key)) tasks.set(key, 1); // a repeated key returns the task it made: no new task
        memory.set(ID, due);
        pendingFired.push(fired(due.toISOString(), now.toISOString()));
      }
    }
    const minutes = [...tasks.keys()].map((k) => k.split(":").slice(2).join(":"));
    expect(minutes).toHaveLength(10);
    expect(new Set(minutes.map((m) => m.slice(0, 16))).size).toBe(10);
    expect(minutes[0]).toBe("2026-01-01T10:01:00.000Z");
    expect(minutes[9]).toBe("2026-01-01T10:10:00.000Z");
  });
});

describe("the leader lease", () => {
  it("acquires a free lease, renews its own at the revision it read, follows another's", () => {
    expect(decideLease("a", undefined)).toEqual({ kind: "acquire" });
    expect(decideLease("a", { holder: "a", revision: 7 })).toEqual({ kind: "renew", revision: 7 });
    expect(decideLease("a", { holder: "b", revision: 7 })).toEqual({ kind: "follow", holder: "b" });
  });
  it("stops leading before the lease can lapse", () => {
    expect(leaderNow(undefined, 1000, 3000)).toBe(false);
    expect(leaderNow(1000, 2999, 3000)).toBe(true);
    expect(leaderNow(1000, 3000, 3000)).toBe(false);
  });
});

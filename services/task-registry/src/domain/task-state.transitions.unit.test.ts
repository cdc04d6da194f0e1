import { type CodefleetEvent, createEvent, type EventData, type EventType, isFinalStatus, TASK_STATUSES } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { applyStored, evolve, type TaskView, traceIdFromTraceparent } from "./task-state.js";

// The transitions task-state.unit.test.ts leaves out, and properties of the fold over any order of
// events: a projection rebuilt from a log that a buggy or hostile producer wrote must never throw,
// never leave a final status, and never change on an event it calls an anomaly.

const taskId = "tsk_TRANSITIONS";
const spec = {
  repo: { url: "https://git.example.com/a/b.git" },
  title: "t",
  prompt: "p",
  agent: { kind: "script" as const, steps: [{ run: "true" }] },
};
let clock = Date.parse("2026-11-23T10:00:00Z");

function ev<T extends EventType>(type: T, data: EventData<T>, attempt = 0, traceparent?: string): CodefleetEvent {
  clock += 1000;
  const e = createEvent(type, { taskId, attempt, data, producer: "test", now: new Date(clock) }) as CodefleetEvent;
  return traceparent ? ({ ...e, metadata: { ...e.metadata, traceparent } } as CodefleetEvent) : e;
}

function fold(events: CodefleetEvent[]): { state: TaskView | undefined; anomalies: string[] } {
  let state: TaskView | undefined;
  const anomalies: string[] = [];
  events.forEach((e, i) => {
    const r = applyStored(state, e, i + 1);
    if (r.anomaly) anomalies.push(r.anomaly);
    state = r.state;
  });
  return { state, anomalies };
}

const submitted = () => ev("task.submitted", { spec, submittedVia: "http" });
const started = (attempt: number, traceparent?: string) =>
  ev("run.started", { runnerId: `runner-${attempt}`, agentKind: "script" }, attempt, traceparent);
const phaseStarted = (phase: "fetch" | "implement" | "test" | "push", attempt = 1) => ev("phase.started", { phase }, attempt);
const phaseFinished = (phase: "fetch" | "implement" | "test" | "push", attempt = 1, facts?: Record<string, string | number>) =>
  ev("phase.finished", { phase, outcome: "succeeded", durationMs: 5, ...(facts ? { facts } : {}) }, attempt);
const finished = (status: "succeeded" | "failed" | "timed_out" | "canceled", attempt = 1, reason?: string) =>
  ev("run.finished", { status, durationMs: 10, ...(reason ? { reason, reasonCode: `${status}_code` } : {}) }, attempt);
const allocated = (attempt: number, slotId = `slot_${attempt}`) =>
  ev("slot.allocated", { slotId, repoUrl: spec.repo.url, ref: "main", leaseExpiresAt: "2026-11-23T11:00:00.000Z", warm: false }, attempt);
const TRACE_1 = "00-11111111111111111111111111111111-1111111111111111-01";
const TRACE_2 = "00-22222222222222222222222222222222-2222222222222222-01";

describe("task state machine: phases", () => {
  it("refuses a phase that starts or finishes twice in one attempt", () => {
    const twiceStarted = fold([submitted(), started(1), phaseStarted("fetch"), phaseStarted("fetch")]);
    expect(twiceStarted.anomalies).toEqual(["phase fetch of attempt 1 started twice"]);
    const twiceFinished = fold([submitted(), started(1), phaseStarted("fetch"), phaseFinished("fetch"), phaseFinished("fetch")]);
    expect(twiceFinished.anomalies).toEqual(["phase fetch of attempt 1 finished twice"]);
    expect(twiceFinished.state?.anomalies).toBe(1);
  });

  it("records a phase that finished without a start event (the start was lost)", () => {
    const { state, anomalies } = fold([submitted(), started(1), phaseFinished("test", 1, { passed: 3 })]);
    expect(anomalies).toEqual([]);
    expect(state?.phases).toEqual([expect.objectContaining({ phase: "test", outcome: "succeeded", facts: { passed: 3 } })]);
    expect(state?.phases[0]?.startedAt).toBeUndefined();
    expect(state?.currentPhase).toBeUndefined();
  });

  it("keeps the current attempt's phases in its attempt view, and a new attempt starts with none", () => {
    const { state } = fold([submitted(), started(1), phaseStarted("fetch"), phaseFinished("fetch"), phaseStarted("implement"), started(2)]);
    expect(state?.attempt).toBe(2);
    expect(state?.phases).toEqual([]);
    expect(state?.currentPhase).toBeUndefined();
    expect(state?.attempts[0]?.phases.map((p) => p.phase)).toEqual(["fetch", "implement"]);
    expect(state?.attempts[0]).toMatchObject({ status: "failed", reason: "superseded by a newer attempt" });
    expect(state?.attempts[1]).toMatchObject({ attempt: 2, runnerId: "runner-2", phases: [] });
    expect(state?.runnerId).toBe("runner-2");
  });

  it("takes the pushed commit from the push phase's facts, and only a string", () => {
    const sha = "d".repeat(40);
    expect(fold([submitted(), started(1), phaseFinished("push", 1, { commitSha: sha })]).state?.commitSha).toBe(sha);
    expect(fold([submitted(), started(1), phaseFinished("push", 1, { commitSha: 42 })]).state?.commitSha).toBeUndefined();
  });
});

describe("task state machine: runs and attempts", () => {
  it("keeps the first start time across attempts and points at the latest attempt's trace", () => {
    const { state } = fold([submitted(), started(1, TRACE_1), started(2, TRACE_2)]);
    expect(state?.startedAt).toBe(state?.attempts[0]?.startedAt);
    expect(state?.traceId).toBe("22222222222222222222222222222222");
    expect(state?.attempts.map((a) => a.traceId)).toEqual(["11111111111111111111111111111111", "22222222222222222222222222222222"]);
  });

  it("shows a failure reason only when the run did not succeed", () => {
    const failed = fold([submitted(), started(1), finished("timed_out", 1, "ran out of time")]).state;
    expect(failed).toMatchObject({ status: "timed_out", failureReason: "ran out of time", reasonCode: "timed_out_code" });
    expect(failed?.attempts[0]).toMatchObject({ status: "timed_out", reason: "ran out of time" });
    const succeeded = fold([submitted(), started(1), finished("succeeded", 1, "all good")]).state;
    expect(succeeded?.failureReason).toBeUndefined();
    expect(succeeded?.reasonCode).toBe("succeeded_code");
  });

  it("refuses a second run.finished, a start after the end, and events of an attempt that never started", () => {
    const { anomalies, state } = fold([
      submitted(),
      started(1),
      finished("failed", 1, "boom"),
      finished("succeeded", 1),
      started(2),
      phaseStarted("fetch", 3),
    ]);
    expect(anomalies).toEqual([
      "run.finished while the task is failed",
      "run.started for attempt 2 after the task ended (failed)",
      "phase.started from attempt 3, which never started",
    ]);
    expect(state).toMatchObject({ status: "failed", attempt: 1, anomalies: 3 });
  });

  it("lets a cancel requested while running end however the run ends", () => {
    const { state, anomalies } = fold([
      submitted(),
      started(1),
      ev("task.cancel_requested", { reason: "stop" }),
      finished("canceled", 1, "canceled"),
    ]);
    expect(anomalies).toEqual([]);
    expect(state).toMatchObject({ status: "canceled", cancelRequested: true, failureReason: "canceled" });
  });

  it("refuses a run for a task canceled while queued", () => {
    const { state, anomalies } = fold([submitted(), ev("task.cancel_requested", {}), started(1)]);
    expect(anomalies).toEqual(["run.started for attempt 1 after the task ended (canceled)"]);
    expect(state).toMatchObject({ status: "canceled", failureReason: "canceled before it started", reasonCode: "canceled", attempt: 0 });
  });
});

describe("task state machine: slots and artifacts", () => {
  it("records the current attempt's slot and ignores an older attempt's slot events", () => {
    const { state, anomalies } = fold([submitted(), started(1), allocated(1), started(2), allocated(1, "slot_old"), allocated(2)]);
    expect(anomalies).toEqual([]);
    expect(state?.attempts.map((a) => a.slotId)).toEqual(["slot_1", "slot_2"]);
  });

  it("keeps slot events of attempt 0 (the task as a whole) without inventing an attempt", () => {
    const { state } = fold([submitted(), ev("slot.reclaimed", { slotId: "slot_x", reason: "lease expired" }, 0)]);
    expect(state?.attempts).toEqual([]);
    expect(state?.anomalies).toBe(0);
  });

  it("records artifacts of any attempt once, with the attempt that stored them, even after the end", () => {
    const art = (id: string, attempt: number) =>
      ev(
        "artifact.stored",
        { artifactId: id, kind: "log", name: "task.log", size: 1, sha256: "e".repeat(64), contentType: "text/plain" },
        attempt,
      );
    const { state } = fold([submitted(), started(1), art("a1", 1), started(2), finished("succeeded", 2), art("a2", 2), art("a1", 1)]);
    expect(state?.artifacts.map((a) => [a.artifactId, a.attempt])).toEqual([
      ["a1", 1],
      ["a2", 2],
    ]);
  });
});

describe("traceIdFromTraceparent", () => {
  it("takes the trace id field", () => {
    expect(traceIdFromTraceparent(TRACE_1)).toBe("11111111111111111111111111111111");
    expect(traceIdFromTraceparent(undefined)).toBeUndefined();
  });
});

// ---- properties over arbitrary orders ---------------------------------------------------------

/** mulberry32: a small deterministic PRNG, so a failure names a seed that reproduces it. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

const pool = (): CodefleetEvent[] => [
  submitted(),
  ev("task.rejected", { code: "invalid_task_spec", reason: "bad", errors: [] }),
  ev("task.cancel_requested", { reason: "stop" }),
  ...[1, 2, 3].flatMap((a) => [
    started(a, a === 2 ? TRACE_2 : TRACE_1),
    phaseStarted("fetch", a),
    phaseFinished("fetch", a),
    phaseStarted("test", a),
    phaseFinished("push", a, { commitSha: "f".repeat(40) }),
    allocated(a),
    ev("slot.released", { slotId: `slot_${a}`, outcome: "recycled" }, a),
    finished(a === 3 ? "failed" : "succeeded", a, "r"),
    ev(
      "artifact.stored",
      { artifactId: `art_${a}`, kind: "diff", name: "d", size: 1, sha256: "0".repeat(64), contentType: "text/plain" },
      a,
    ),
  ]),
];

describe("task state machine: any order of events", () => {
  it("never throws, never mutates, never leaves a final status, and an anomaly changes nothing but the count", () => {
    const events = pool().map(deepFreeze);
    for (let seed = 1; seed <= 200; seed++) {
      const random = prng(seed);
      const log = Array.from(
        { length: 5 + Math.floor(random() * 30) },
        () => events[Math.floor(random() * events.length)] as CodefleetEvent,
      );
      let state: TaskView | undefined;
      let anomalies = 0;
      let finalStatus: string | undefined;
      for (const [i, e] of log.entries()) {
        const r = evolve(state, e);
        if (r.anomaly) {
          if (state) anomalies++; // before the task exists there is no view to count it in
          expect(r.state, `seed ${seed}, event ${i}`).toEqual(state ? { ...state, anomalies: state.anomalies + 1 } : undefined);
        }
        state = r.state === undefined ? undefined : deepFreeze(r.state);
        if (!state) continue;
        expect(TASK_STATUSES, `seed ${seed}`).toContain(state.status);
        if (finalStatus) expect(state.status, `seed ${seed}: left ${finalStatus} on ${e.type}`).toBe(finalStatus);
        else if (isFinalStatus(state.status)) finalStatus = state.status;
        expect(state.attempts.filter((a) => !a.finishedAt).length, `seed ${seed}`).toBeLessThanOrEqual(1);
        expect(new Set(state.artifacts.map((a) => a.artifactId)).size).toBe(state.artifacts.length);
      }
      if (state) expect(state.anomalies, `seed ${seed}`).toBe(anomalies);
    }
  });

  it("rebuilds the same view from the same log (a replay is deterministic)", () => {
    const events = pool();
    const random = prng(7);
    const log = [
      events[0] as CodefleetEvent,
      ...Array.from({ length: 40 }, () => events[Math.floor(random() * events.length)] as CodefleetEvent),
    ];
    expect(fold(log)).toEqual(fold(log));
    expect(fold(JSON.parse(JSON.stringify(log)))).toEqual(fold(log));
  });
});

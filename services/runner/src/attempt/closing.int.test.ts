import { type CodefleetEvent, type CodefleetEventOf, createEvent, newTaskId, parseEvent } from "@codefleet/contracts";
import { Bus, connectNats, type NatsConnection } from "@codefleet/platform/bus";
import { createLogger } from "@codefleet/platform/runtime";
import { testNamespace } from "@codefleet/test/support";
import { ROOT_CONTEXT } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { agentRegistry } from "../agents/registry.js";
import type { ExecutionDriver } from "../execution/driver.js";
import type { RunnerSettings } from "./attempt.js";
import { ClaimStore } from "./claims.js";
import { closeTask, type TaskClosing } from "./closing.js";
import { firstTurn, type Turn } from "./turns.js";

let nc: NatsConnection;

beforeAll(async () => {
  nc = await connectNats({ servers: inject("natsUrl"), name: "closing-int-test" });
});
afterAll(async () => {
  await nc.drain();
});

const EXHAUSTED: TaskClosing = { status: "failed", reasonCode: "attempts_exhausted", reason: "its 3 attempts ended without a result" };

/** closeTask on a real bus and claims bucket; the driver only counts what it is asked to remove. */
async function setup() {
  const bus = await Bus.create(nc, { namespace: testNamespace() });
  await bus.ensureStreams();
  const claims = await ClaimStore.open(bus);
  const removals: [string, number | undefined][] = [];
  const driver = {
    removeStale: async (taskId: string, keep?: number) => {
      removals.push([taskId, keep]);
      return 1;
    },
  } as unknown as ExecutionDriver;
  const deps = {
    bus,
    claims,
    driver,
    agents: agentRegistry,
    log: createLogger({ service: "test", level: "silent" }),
    settings: {
      runnerId: "runner-closer",
      platformRetryMs: 2000,
      images: { default: "codefleet/agent:latest", opencode: "codefleet/agent-opencode:latest", claudeCode: "x" },
    } as unknown as RunnerSettings,
  };
  const taskId = newTaskId();
  const submitted = createEvent("task.submitted", {
    taskId,
    producer: "test",
    data: {
      spec: {
        repo: { url: "https://git.example.com/r.git", ref: "main" },
        title: "t",
        prompt: "p",
        agent: { kind: "script", steps: [{ run: "true" }] },
        test: { command: "true" },
      },
      submittedVia: "bus",
    },
  }) as CodefleetEventOf<"task.submitted">;
  await bus.publish(submitted);
  const close = (delivery: number, closing: TaskClosing = EXHAUSTED, turn: Turn = firstTurn(submitted)) =>
    closeTask(deps, { work: { submitted, turn }, delivery, traceContext: ROOT_CONTEXT }, closing);
  const events = async (): Promise<CodefleetEvent[]> => {
    const out: CodefleetEvent[] = [];
    for (const type of ["run.started", "run.finished"] as const) {
      const m = await bus.lastEvent(taskId, type);
      if (m) out.push(parseEvent(m.json()));
    }
    return out;
  };
  const started = (attempt: number) =>
    bus.publish(
      createEvent("run.started", { taskId, attempt, producer: "runner", data: { runnerId: "runner-lost", agentKind: "script" } }),
    );
  const finished = (attempt: number) =>
    bus.publish(
      createEvent("run.finished", {
        taskId,
        attempt,
        producer: "runner",
        data: { status: "succeeded", durationMs: 1, commitSha: "a".repeat(40) },
      }),
    );
  return { bus, claims, taskId, close, events, started, finished, removals };
}

describe("closing a task that will not run again, on a real NATS", () => {
  it("ends the last started attempt with attempts_exhausted, and fences it: that attempt can no longer push or finish", async () => {
    const t = await setup();
    const zombie = (await t.claims.claim(t.taskId, 3, "runner-lost")) as number; // attempt 3 runs on a runner cut off from the bus
    await t.started(3);
    expect(await t.close(4)).toBe("closed");
    const [started, finished] = await t.events();
    expect(started).toMatchObject({ type: "run.started", attempt: 3 });
    expect(finished).toMatchObject({
      type: "run.finished",
      attempt: 3,
      data: { status: "failed", reasonCode: "attempts_exhausted", reason: EXHAUSTED.reason },
    });
    expect(await t.claims.advance(t.taskId, 3, "runner-lost", zombie, "pushing")).toBeUndefined();
    expect(t.removals).toEqual([[t.taskId, 4]]);
  });

  it("gives a task no attempt ever started a run.started of its own before its run.finished: the registry ends a task through its current attempt", async () => {
    const t = await setup();
    expect(await t.close(4)).toBe("closed");
    const [started, finished] = await t.events();
    expect(started).toMatchObject({ type: "run.started", attempt: 4, data: { runnerId: "runner-closer", agentKind: "script" } });
    expect(finished).toMatchObject({ attempt: 4, data: { status: "failed", reasonCode: "attempts_exhausted" } });
  });

  it("closes once: a second closing delivery finds the task finished and publishes nothing", async () => {
    const t = await setup();
    await t.started(1);
    expect(await t.close(4)).toBe("closed");
    const before = await t.events();
    expect(await t.close(5)).toBe("skipped_finished");
    expect(await t.events()).toEqual(before);
  });

  it("closes a follow-up turn whose deliveries ran out although an earlier turn finished, on that turn's attempt", async () => {
    const t = await setup();
    await t.started(1);
    await t.finished(1);
    const turn2: Turn = { number: 2, firstAttempt: 2, causationId: "evt_follow_up" };
    // turn 2's attempts 2..4 never got out (runners lost): its closing delivery (the 4th) has attempt 5
    expect(await t.close(4, EXHAUSTED, turn2)).toBe("closed");
    const [started, finished] = await t.events();
    expect(started).toMatchObject({ type: "run.started", attempt: 5, metadata: { causationId: "evt_follow_up" } });
    expect(finished).toMatchObject({ attempt: 5, data: { status: "failed", reasonCode: "attempts_exhausted" } });
    // and once it is closed, turn 2 is finished for every later delivery
    expect(await t.close(5, EXHAUSTED, turn2)).toBe("skipped_finished");
  });

  it("leaves a task alone when a newer delivery holds its claim", async () => {
    const t = await setup();
    await t.claims.claim(t.taskId, 5, "runner-other");
    expect(await t.close(4)).toBe("skipped_superseded");
    expect(await t.events()).toEqual([]);
  });

  it("ends a canceled task whose runner was lost as canceled, and leaves one canceled before it started to its cancel", async () => {
    const t = await setup();
    await t.started(1);
    const canceled: TaskClosing = {
      status: "canceled",
      reasonCode: "canceled",
      reason: "cancel requested; the runner that held the task was lost",
    };
    expect(await t.close(2, canceled)).toBe("closed");
    expect((await t.events())[1]).toMatchObject({ attempt: 1, data: { status: "canceled", reasonCode: "canceled" } });

    const never = await setup();
    expect(await never.close(2, canceled)).toBe("skipped_canceled");
    expect(await never.events()).toEqual([]);
  });
});

describe("closing a canceled task whose attempts ran out", () => {
  it("ends it canceled, not attempts_exhausted: the cancel is what the dispatcher asked for", async () => {
    const t = await setup();
    await t.started(2);
    await t.bus.publish(createEvent("task.cancel_requested", { taskId: t.taskId, producer: "test", data: { reason: "not needed" } }));
    expect(await t.close(4)).toBe("closed");
    expect((await t.events())[1]).toMatchObject({ attempt: 2, data: { status: "canceled", reasonCode: "canceled" } });
  });
});

describe("claims retried after a lost answer", () => {
  it("recognizes its own claim by its token, and nobody else's", async () => {
    const t = await setup();
    const first = await t.claims.claim(t.taskId, 2, "runner-a", "token-1");
    expect(first).toBeGreaterThan(0);
    // the answer was lost: the same call again
    expect(await t.claims.claim(t.taskId, 2, "runner-a", "token-1")).toBe(first);
    // the same attempt number from another call (a duplicate message) is not ours
    expect(await t.claims.claim(t.taskId, 2, "runner-a", "token-2")).toBeUndefined();
    expect(await t.claims.claim(t.taskId, 2, "runner-a")).toBeUndefined();
  });
});

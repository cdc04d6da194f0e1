import { type CodefleetEvent, createEvent, newTaskId, parseEvent } from "@codefleet/contracts";
import { testNamespace, waitFor } from "@codefleet/test/support";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Bus } from "./bus.js";
import { connectNats } from "./connection.js";
import type { Subscription } from "./context.js";

let nc: NatsConnection;

beforeAll(async () => {
  nc = await connectNats({ servers: inject("natsUrl"), name: "bus-lanes-int-test" });
});
afterAll(async () => {
  await nc.drain();
});

const submitted = (taskId: string) =>
  createEvent("task.submitted", {
    taskId,
    producer: "test",
    data: {
      spec: {
        repo: { url: "https://git.example.com/r.git" },
        title: "t",
        prompt: "p",
        agent: { kind: "script", steps: [{ run: "true" }] },
      },
      submittedVia: "bus",
      tenant: "acme",
    },
  }) as Extract<CodefleetEvent, { type: "task.submitted" }>;

describe("a lane held for others (slot affinity) on a real NATS", () => {
  it("leaves the held lane to the replica that does not hold it, serves other lanes meanwhile, and takes it itself once the hold ends", async () => {
    const bus = await Bus.create(nc, { namespace: testNamespace(), storage: "memory" });
    await bus.ensureStreams();
    const t = bus.topology;
    const took: { replica: string; taskId: string; at: number; delivery: number }[] = [];
    const noticed = new Map<string, number>();
    const HOLD_MS = 1500;
    const replica = (name: string, holdsAcme: boolean): Promise<Subscription> =>
      bus.consumeLanes({
        stream: t.streams.queue.name,
        lanesSubject: t.subjects.allQueues,
        laneOf: (s) => t.subjects.queueTenant(s),
        lane: (tenant) => t.consumers.runnerQueue(tenant),
        decode: (d) => parseEvent(d),
        concurrency: 1,
        refreshMs: 500,
        onNotice: (lane) => {
          if (!noticed.has(lane)) noticed.set(lane, Date.now());
        },
        // the cold replica leaves acme to the warm one for HOLD_MS from the first notice
        holdLane: (lane) => (holdsAcme && lane === "acme" ? Math.max(0, (noticed.get(lane) ?? Date.now()) + HOLD_MS - Date.now()) : 0),
        handle: async (e, ctx) => {
          took.push({ replica: name, taskId: e.taskId, at: Date.now(), delivery: ctx.deliveryCount });
          await new Promise((r) => setTimeout(r, 100));
        },
      });

    const cold = await replica("cold", true);
    const warm = await replica("warm", false);
    const acme = [newTaskId(), newTaskId(), newTaskId()];
    for (const id of acme) await bus.enqueueTask(submitted(id));
    const other = newTaskId();
    await bus.enqueueTask({ ...submitted(other), data: { ...submitted(other).data, tenant: "globex" } });
    await waitFor("four tasks taken", async () => took.length === 4, 10_000, 20);
    expect(took.filter((x) => acme.includes(x.taskId)).map((x) => x.replica)).toEqual(["warm", "warm", "warm"]);
    // the other tenant's lane is not held: whoever is free takes it
    expect(took.find((x) => x.taskId === other)).toBeDefined();

    // the warm one gone: the cold one takes the next acme task, but only when its hold is over
    await warm.stop();
    noticed.clear();
    const late = newTaskId();
    const queuedAt = Date.now();
    await bus.enqueueTask(submitted(late));
    await waitFor("the late task taken", async () => took.some((x) => x.taskId === late), 10_000, 20);
    const taken = took.find((x) => x.taskId === late);
    expect(taken?.replica).toBe("cold");
    expect((taken?.at ?? 0) - queuedAt).toBeGreaterThanOrEqual(HOLD_MS - 100);
    // and nothing was nak'ed to get there: each message was delivered once
    expect(took.map((x) => x.delivery)).toEqual([1, 1, 1, 1, 1]);
    await cold.stop();
  });
});

import { type CodefleetEvent, createEvent, newTaskId } from "@codefleet/contracts";
import { testNamespace, waitFor } from "@codefleet/test/support";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Bus } from "./bus.js";
import { connectNats } from "./connection.js";

let nc: NatsConnection;

beforeAll(async () => {
  nc = await connectNats({ servers: inject("natsUrl"), name: "bus-notices-int-test" });
});
afterAll(async () => {
  await nc.drain();
});

async function freshBus(): Promise<Bus> {
  const bus = await Bus.create(nc, { namespace: testNamespace(), storage: "memory" });
  await bus.ensureStreams();
  return bus;
}

describe("notices and event watches (core NATS)", () => {
  it("hands listeners what is announced, as JSON, dropping what is too large or not JSON", async () => {
    const bus = await freshBus();
    const heard: { value: unknown; subject: string }[] = [];
    const listener = bus.listen(`${bus.topology.namespace}.status.x.*`, (value, subject) => heard.push({ value, subject }), {
      maxBytes: 100,
    });
    bus.announce(`${bus.topology.namespace}.status.x.a`, { n: 1 });
    bus.nc.publish(`${bus.topology.namespace}.status.x.b`, "{not json");
    bus.announce(`${bus.topology.namespace}.status.x.c`, { big: "y".repeat(200) });
    bus.announce(`${bus.topology.namespace}.status.x.d`, { n: 2 });
    await waitFor("two notices", async () => heard.length === 2, 5000);
    expect(heard).toEqual([
      { value: { n: 1 }, subject: `${bus.topology.namespace}.status.x.a` },
      { value: { n: 2 }, subject: `${bus.topology.namespace}.status.x.d` },
    ]);
    listener.unsubscribe();
  });

  it("watches every task's events of a type as they are published, ignoring invalid ones", async () => {
    const bus = await freshBus();
    const seen: CodefleetEvent[] = [];
    const watch = bus.watchEvents("task.cancel_requested", (e) => seen.push(e));
    const taskId = newTaskId();
    await bus.js.publish(bus.topology.subjects.event(taskId, "task.cancel_requested"), JSON.stringify({ type: "task.cancel_requested" }));
    const cancel = createEvent("task.cancel_requested", { taskId, data: { reason: "test" }, producer: "test" });
    await bus.publish(cancel);
    await bus.publish(createEvent("task.cancel_requested", { taskId: newTaskId(), data: { reason: "other" }, producer: "test" }));
    await waitFor("two cancels", async () => seen.length === 2, 5000);
    expect(seen[0]?.id).toBe(cancel.id);
    watch.unsubscribe();
  });
});

describe("what the streams hold", () => {
  it("reads a task's last event of a type, counts per subject and a consumer's counts", async () => {
    const bus = await freshBus();
    const taskId = newTaskId();
    expect(await bus.lastEvent(taskId, "task.cancel_requested")).toBeUndefined();
    const first = createEvent("task.cancel_requested", { taskId, data: { reason: "one" }, producer: "test" });
    const second = createEvent("task.cancel_requested", { taskId, data: { reason: "two" }, producer: "test" });
    await bus.publish(first);
    const { seq } = await bus.publish(second);
    const last = await bus.lastEvent(taskId, "task.cancel_requested");
    expect(last?.seq).toBe(seq);
    expect(last?.json<CodefleetEvent>().id).toBe(second.id);

    const events = bus.topology.streams.events.name;
    expect(await bus.messagesPerSubject(events, bus.topology.subjects.eventsOfTask(taskId))).toEqual({
      [bus.topology.subjects.event(taskId, "task.cancel_requested")]: 2,
    });
    await bus.ensureConsumer({ stream: events, durable: "counts", filter: bus.topology.subjects.allEvents });
    expect(await bus.consumerCounts(events, "counts")).toEqual({ pending: 2, ackPending: 0 });
    await expect(bus.consumerCounts(events, "missing")).rejects.toThrow();
  });
});

import { CodefleetError, type CodefleetEvent, createEvent, newTaskId } from "@codefleet/contracts";
import { testNamespace, waitFor } from "@codefleet/test/support";
import { JetStreamApiCodes } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { context, ROOT_CONTEXT, TraceFlags, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Bus } from "./bus.js";
import { connectNats } from "./connection.js";
import { traceIdOf } from "./trace-context.js";

let nc: NatsConnection;

beforeAll(async () => {
  nc = await connectNats({ servers: inject("natsUrl"), name: "bus-int-test" });
});
afterAll(async () => {
  await nc.drain();
});

async function freshBus(): Promise<Bus> {
  const bus = await Bus.create(nc, { namespace: testNamespace(), storage: "memory" });
  await bus.ensureStreams();
  return bus;
}

function cancelEvent(taskId = newTaskId()) {
  return createEvent("task.cancel_requested", { taskId, data: { reason: "test" }, producer: "test" });
}

async function streamCount(bus: Bus): Promise<number> {
  const info = await bus.jsm.streams.info(bus.topology.streams.events.name);
  return info.state.messages;
}

describe("bus on a real NATS server", () => {
  it("ensures streams idempotently (a second replica starting changes nothing)", async () => {
    const bus = await freshBus();
    await bus.ensureStreams();
    await bus.ensureStreams();
    const names: string[] = [];
    for await (const s of bus.jsm.streams.list()) names.push(s.config.name);
    expect(names).toEqual(expect.arrayContaining(Object.values(bus.topology.streams).map((s) => s.name)));
  });

  it("creates what is missing when replicas start together, and reads JetStream's answers by their codes", async () => {
    const namespace = testNamespace();
    const [a, b] = await Promise.all([1, 2].map(() => Bus.create(nc, { namespace, storage: "memory" })));
    if (!a || !b) throw new Error("no bus");
    await Promise.all([a.ensureStreams(), b.ensureStreams()]);
    const { config } = await a.jsm.streams.info(a.topology.streams.events.name);
    const consumer = { stream: config.name, durable: "race", filter: config.subjects[0] ?? ">" };
    await Promise.all([a.ensureConsumer(consumer), b.ensureConsumer(consumer)]);
    // the codes ensureStreams/ensureConsumer look for (10058: a stream of that name with other settings)
    await expect(a.jsm.streams.add({ ...config, max_msgs: 1 })).rejects.toMatchObject({ name: "JetStreamApiError", code: 10058 });
    await expect(a.jsm.streams.info(`${config.name}_MISSING`)).rejects.toMatchObject({ code: JetStreamApiCodes.StreamNotFound });
    await expect(a.jsm.consumers.info(config.name, "missing")).rejects.toMatchObject({ code: JetStreamApiCodes.ConsumerNotFound });
  });

  it("publishes and consumes through a durable consumer with explicit ack", async () => {
    const bus = await freshBus();
    const received: CodefleetEvent[] = [];
    const events = [cancelEvent(), cancelEvent(), cancelEvent()];
    for (const e of events) await bus.publish(e);
    const sub = await bus.consumeEvents({
      durable: "c1",
      filter: bus.topology.subjects.allEvents,
      handle: async (e) => {
        received.push(e);
      },
    });
    await waitFor("3 events", async () => received.length === 3, 10_000);
    await sub.stop();
    expect(received.map((e) => e.id)).toEqual(events.map((e) => e.id));
    const info = await bus.jsm.consumers.info(bus.topology.streams.events.name, "c1");
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });

  it("stores an event published twice with the same id once", async () => {
    const bus = await freshBus();
    const e = cancelEvent();
    const first = await bus.publish(e);
    const second = await bus.publish(e);
    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
    expect(second.seq).toBe(first.seq);
    expect(await streamCount(bus)).toBe(1);
  });

  it("rejects an invalid payload with a recorded reason and keeps consuming", async () => {
    const bus = await freshBus();
    const taskId = newTaskId();
    const subject = bus.topology.subjects.event(taskId, "task.cancel_requested");
    await bus.js.publish(subject, new TextEncoder().encode("{not json"));
    await bus.js.publish(subject, new TextEncoder().encode(JSON.stringify({ ...cancelEvent(taskId), data: { reason: 42 } })));
    const good = cancelEvent(taskId);
    await bus.publish(good);
    const received: string[] = [];
    const sub = await bus.consumeEvents({
      durable: "c2",
      filter: bus.topology.subjects.allEvents,
      handle: async (e) => void received.push(e.id),
    });
    await waitFor("the valid event", async () => received.length === 1, 10_000);
    await sub.stop();
    expect(received).toEqual([good.id]);
    const dead = await bus.deadLetters("c2");
    expect(dead.map((d) => d.code).sort()).toEqual(["invalid_event_data", "invalid_json"]);
    const invalid = dead.find((d) => d.code === "invalid_event_data");
    expect(invalid?.reason).toContain("/data/reason");
    expect(invalid?.subject).toBe(subject);
    expect(invalid?.deliveries).toBe(1);
  });

  it("does not redeliver a handler that outlives AckWait but calls working()", async () => {
    const bus = await freshBus();
    await bus.publish(cancelEvent());
    let calls = 0;
    let finished = false;
    const sub = await bus.consumeEvents({
      durable: "c3",
      filter: bus.topology.subjects.allEvents,
      ackWaitMs: 1000,
      concurrency: 2,
      handle: async (_e, ctx) => {
        calls++;
        for (let i = 0; i < 10; i++) {
          await new Promise((r) => setTimeout(r, 300));
          ctx.working();
        }
        finished = true;
      },
    });
    await waitFor("handler to finish", async () => finished, 10_000);
    // A redelivery would arrive within one more AckWait.
    await new Promise((r) => setTimeout(r, 1500));
    await sub.stop();
    expect(calls).toBe(1);
  });

  it("redelivers a throwing handler up to MaxDeliver, then dead-letters it with the reason", async () => {
    const bus = await freshBus();
    const e = cancelEvent();
    await bus.publish(e);
    const deliveries: number[] = [];
    const sub = await bus.consumeEvents({
      durable: "c4",
      filter: bus.topology.subjects.allEvents,
      maxDeliver: 3,
      retryDelayMs: () => 50,
      handle: async (_e, ctx) => {
        deliveries.push(ctx.deliveryCount);
        throw new Error("boom: downstream unavailable");
      },
    });
    await waitFor("dead letter", async () => (await bus.deadLetters("c4")).length === 1, 15_000, 200);
    await new Promise((r) => setTimeout(r, 300));
    await sub.stop();
    expect(deliveries).toEqual([1, 2, 3]);
    const [dead] = await bus.deadLetters("c4");
    expect(dead?.reason).toContain("boom: downstream unavailable");
    expect(dead?.deliveries).toBe(3);
    expect(JSON.parse(new TextDecoder().decode(dead?.data)).id).toBe(e.id);
  });

  it("dead-letters a permanent error on its first delivery", async () => {
    const bus = await freshBus();
    await bus.publish(cancelEvent());
    let calls = 0;
    const sub = await bus.consumeEvents({
      durable: "c5",
      filter: bus.topology.subjects.allEvents,
      handle: async () => {
        calls++;
        throw new CodefleetError("illegal", "cannot ever work", { retry: { kind: "never" } });
      },
    });
    await waitFor("dead letter", async () => (await bus.deadLetters("c5")).length === 1, 10_000, 200);
    await sub.stop();
    expect(calls).toBe(1);
  });

  it("carries W3C trace context through headers and event metadata", async () => {
    const bus = await freshBus();
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parent = trace.setSpanContext(ROOT_CONTEXT, {
      traceId,
      spanId: "00f067aa0ba902b7",
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
    });
    await bus.publish(cancelEvent(), { ctx: parent });
    let seen: string | undefined;
    let stored: string | undefined;
    const sub = await bus.consumeEvents({
      durable: "c6",
      filter: bus.topology.subjects.allEvents,
      handle: async (e, ctx) => {
        seen = traceIdOf(ctx.traceContext);
        stored = e.metadata.traceparent;
        // the handler also runs inside the propagated context
        expect(traceIdOf(context.active())).toBe(traceId);
      },
    });
    await waitFor("event", async () => seen !== undefined, 10_000);
    await sub.stop();
    expect(seen).toBe(traceId);
    expect(stored).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
  });

  it("processes batches and isolates a poison message without losing the rest", async () => {
    const bus = await freshBus();
    const events = Array.from({ length: 20 }, () => cancelEvent());
    for (const e of events) await bus.publish(e);
    const poison = events[7]?.id;
    const committed = new Set<string>();
    let batches = 0;
    const sub = await bus.consumeBatches<CodefleetEvent>({
      stream: bus.topology.streams.events.name,
      durable: "c7",
      filter: bus.topology.subjects.allEvents,
      decode: (d) => d as CodefleetEvent,
      maxDeliver: 2,
      retryDelayMs: () => 20,
      batchSize: 50,
      handleBatch: async (batch) => {
        batches++;
        if (batch.some((b) => b.value.id === poison)) throw new Error("poison");
        for (const b of batch) committed.add(b.value.id);
      },
    });
    await waitFor(
      "19 committed + 1 dead letter",
      async () => committed.size === 19 && (await bus.deadLetters("c7")).length === 1,
      15_000,
      200,
    );
    await sub.stop();
    expect(committed.has(poison as string)).toBe(false);
    expect(batches).toBeGreaterThanOrEqual(1);
  });
});

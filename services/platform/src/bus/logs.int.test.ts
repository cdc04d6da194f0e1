import type { LogChunk } from "@codefleet/contracts";
import { newTaskId } from "@codefleet/contracts";
import { testNamespace } from "@codefleet/test/support";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Bus } from "./bus.js";
import { connectNats } from "./connection.js";
import type { LogEntry } from "./logs.js";

let nc: NatsConnection;
let bus: Bus;

beforeAll(async () => {
  nc = await connectNats({ servers: inject("natsUrl"), name: "bus-logs-int-test" });
  bus = await Bus.create(nc, { namespace: testNamespace(), storage: "memory" });
  await bus.ensureStreams();
});
afterAll(async () => {
  await nc.drain();
});

const chunk = (taskId: string, seq: number, text: string): LogChunk => ({
  taskId,
  attempt: 1,
  seq,
  stream: "stdout",
  text,
  at: new Date().toISOString(),
});

async function collect(it: AsyncIterable<LogEntry>): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

describe("a task's live log through the bus", () => {
  it("reads what there is, from a sequence on, and knows the last sequence", async () => {
    const taskId = newTaskId();
    const other = newTaskId();
    expect(await bus.lastLogSeq(taskId)).toBe(0);
    expect(await collect(bus.readLog(taskId))).toEqual([]);
    await bus.publishLog(chunk(taskId, 1, "a"));
    await bus.publishLog(chunk(other, 1, "not mine"));
    await bus.publishLog(chunk(taskId, 2, "b"));
    const third = await bus.publishLog(chunk(taskId, 3, "c"));
    expect(await bus.lastLogSeq(taskId)).toBe(third.seq);

    const all = await collect(bus.readLog(taskId));
    expect(all.map((e) => e.chunk.text)).toEqual(["a", "b", "c"]);
    expect(all.at(-1)?.seq).toBe(third.seq);
    // a reader that saw the first chunk goes on after it
    const [first] = all;
    const rest = await collect(bus.readLog(taskId, { fromSeq: (first?.seq ?? 0) + 1 }));
    expect(rest.map((e) => e.chunk.text)).toEqual(["b", "c"]);
  });

  it("follows a log: what there is, then new chunks as they come, until closed", async () => {
    const taskId = newTaskId();
    await bus.publishLog(chunk(taskId, 1, "before"));
    const tail = await bus.followLog(taskId);
    const seen: string[] = [];
    const reading = (async () => {
      for await (const { chunk: c } of tail) {
        seen.push(c.text);
        if (seen.length === 3) tail.close();
      }
    })();
    await bus.publishLog(chunk(taskId, 2, "during"));
    await bus.publishLog(chunk(taskId, 3, "after"));
    await reading;
    expect(seen).toEqual(["before", "during", "after"]);
  });

  it("fails on a chunk that is not a log chunk rather than passing it on", async () => {
    const taskId = newTaskId();
    await bus.js.publish(bus.topology.subjects.logs(taskId), JSON.stringify({ taskId, text: "no seq" }));
    await expect(collect(bus.readLog(taskId))).rejects.toThrow();
  });
});

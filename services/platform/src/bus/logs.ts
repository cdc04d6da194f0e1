import { type LogChunk, parseLogChunk } from "@codefleet/contracts";
import { type Consumer, DeliverPolicy } from "@nats-io/jetstream";
import { type BusContext, decoder } from "./context.js";
import { lastMessage } from "./streams.js";

/**
 * Reading a task's live log (`<ns>.logs.<taskId>` on the logs stream): what is there now, or every
 * chunk as it comes. Each chunk comes with its stream sequence, which a reader that reconnects
 * passes back as `fromSeq` to go on exactly after the last chunk it saw.
 */

export type LogEntry = { seq: number; chunk: LogChunk };

/** A log being followed: chunks as they are published, until `close()`. */
export type LogTail = AsyncIterable<LogEntry> & { close(): void };

type Reader = Pick<BusContext, "js" | "jsm" | "topology">;

export function decodeLogChunk(data: unknown): LogChunk {
  return parseLogChunk(data);
}

const entryOf = (m: { seq: number; data: Uint8Array }): LogEntry => ({
  seq: m.seq,
  chunk: parseLogChunk(JSON.parse(decoder.decode(m.data))),
});

/** The stream sequence of the task's last log chunk; 0 when it has none (yet, or any more). */
export async function lastLogSeq(bus: Reader, taskId: string): Promise<number> {
  const m = await lastMessage(bus.jsm, bus.topology.streams.logs.name, bus.topology.subjects.logs(taskId));
  return m?.seq ?? 0;
}

/** An ordered (ephemeral) consumer of the task's log from `fromSeq` on (default: the first chunk kept). */
function logConsumer(bus: Reader, taskId: string, fromSeq: number | undefined): Promise<Consumer> {
  return bus.js.consumers.get(bus.topology.streams.logs.name, {
    filter_subjects: bus.topology.subjects.logs(taskId),
    ...(fromSeq ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq } : {}),
  });
}

/** The chunks there are now, from `fromSeq` on, up to the last one at the time of the call. */
export async function* readLog(bus: Reader, taskId: string, opts: { fromSeq?: number } = {}): AsyncGenerator<LogEntry> {
  const consumer = await logConsumer(bus, taskId, opts.fromSeq);
  try {
    const end = await lastLogSeq(bus, taskId).catch(() => 0);
    let seq = opts.fromSeq ? opts.fromSeq - 1 : 0;
    while (seq < end) {
      const m = await consumer.next({ expires: 2000 });
      if (!m) break;
      seq = m.seq;
      yield entryOf(m);
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}

/** Every chunk from `fromSeq` on, then the new ones as they are published, until `close()`. */
export async function followLog(bus: Reader, taskId: string, opts: { fromSeq?: number } = {}): Promise<LogTail> {
  const consumer = await logConsumer(bus, taskId, opts.fromSeq);
  const messages = await consumer.consume({ max_messages: 256 });
  return {
    close: () => void messages.close(),
    async *[Symbol.asyncIterator]() {
      for await (const m of messages) yield entryOf(m);
    },
  };
}

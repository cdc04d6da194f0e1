import { isFinalStatus, type LogChunk, parseLogChunk } from "@codefleet/contracts";
import type { Bus } from "@codefleet/contracts/bus";
import { DeliverPolicy } from "@nats-io/jetstream";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Db } from "../store/database.js";
import { getTaskView } from "../store/task-queries.js";

export type LogTailDeps = {
  bus: Bus;
  db: Db;
  /** SSE comment lines keep proxies from closing an idle stream. */
  heartbeatMs: number;
  /** How often a live tail checks whether the task has ended. */
  finishCheckMs: number;
};

const decoder = new TextDecoder();

async function lastSeqOf(bus: Bus, subject: string): Promise<number> {
  try {
    const m = await bus.jsm.streams.getMessage(bus.topology.streams.logs.name, { last_by_subj: subject });
    return m?.seq ?? 0;
  } catch {
    return 0; // no message on the subject yet
  }
}

/**
 * Serves a task's log from the live log stream. With `Accept: text/event-stream` it tails: every
 * chunk is an SSE event whose id is its stream sequence, so a client reconnecting with
 * Last-Event-ID resumes exactly after the last chunk it saw; the stream ends with an `end` event
 * once the task has finished and every chunk was sent. Otherwise it answers with the text so far.
 */
export async function streamTaskLogs(
  deps: LogTailDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  taskId: string,
  attempt?: number,
): Promise<void> {
  const { bus } = deps;
  const subject = bus.topology.subjects.logs(taskId);
  const lastEventId = Number.parseInt(String(req.headers["last-event-id"] ?? "0"), 10);
  const startSeq = Number.isFinite(lastEventId) && lastEventId > 0 ? lastEventId + 1 : undefined;
  const consumer = await bus.js.consumers.get(bus.topology.streams.logs.name, {
    filter_subjects: subject,
    ...(startSeq ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq } : {}),
  });
  const wanted = (c: LogChunk) => attempt === undefined || c.attempt === attempt;

  if (!(req.headers.accept ?? "").includes("text/event-stream")) {
    const end = await lastSeqOf(bus, subject);
    let text = "";
    let seq = startSeq ? startSeq - 1 : 0;
    while (seq < end) {
      const m = await consumer.next({ expires: 2000 });
      if (!m) break;
      seq = m.seq;
      const chunk = parseLogChunk(JSON.parse(decoder.decode(m.data)));
      if (wanted(chunk)) text += chunk.text;
    }
    await consumer.delete().catch(() => undefined);
    reply.type("text/plain; charset=utf-8").send(text);
    return;
  }

  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  res.write("retry: 2000\n\n");
  let delivered = startSeq ? startSeq - 1 : 0;
  let closed = false;
  const messages = await consumer.consume({ max_messages: 256 });
  const finish = (status: string) => {
    if (closed) return;
    closed = true;
    res.write(`event: end\ndata: ${JSON.stringify({ status })}\n\n`);
    res.end();
    void messages.close();
  };
  const heartbeat = setInterval(() => res.write(": keepalive\n\n"), deps.heartbeatMs);
  const finishCheck = setInterval(() => {
    void (async () => {
      const view = await getTaskView(deps.db, taskId);
      if (view && isFinalStatus(view.status) && delivered >= (await lastSeqOf(bus, subject))) finish(view.status);
    })().catch(() => undefined);
  }, deps.finishCheckMs);
  req.raw.on("close", () => {
    closed = true;
    void messages.close();
  });
  try {
    for await (const m of messages) {
      if (closed) break;
      delivered = m.seq;
      const chunk = parseLogChunk(JSON.parse(decoder.decode(m.data)));
      if (wanted(chunk)) res.write(`id: ${m.seq}\nevent: log\ndata: ${JSON.stringify(chunk)}\n\n`);
    }
  } finally {
    clearInterval(heartbeat);
    clearInterval(finishCheck);
    if (!res.writableEnded) res.end();
  }
}

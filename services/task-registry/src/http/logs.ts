import { isFinalStatus, type LogChunk } from "@codefleet/contracts";
import type { Bus } from "@codefleet/platform/bus";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Db } from "../store/database.js";
import { getTaskView } from "../store/task-queries.js";

/** Reads a stored log artifact's text (the artifact-store), for logs older than the live stream keeps. */
export type StoredLogReader = (artifactId: string) => Promise<string>;

export type LogTailDeps = {
  bus: Bus;
  db: Db;
  storedLog?: StoredLogReader;
  /** SSE comment lines keep proxies from closing an idle stream. */
  heartbeatMs: number;
  /** How often a live tail checks whether the task has ended. */
  finishCheckMs: number;
};

/** The sequence of the task's last chunk on the live stream; 0 when there is none (or NATS cannot say). */
const lastSeqOf = (bus: Bus, taskId: string): Promise<number> => bus.lastLogSeq(taskId).catch(() => 0);

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
  if (deps.storedLog && (await lastSeqOf(bus, taskId)) === 0 && (await serveStoredLog(deps, deps.storedLog, req, reply, taskId, attempt)))
    return;
  const lastEventId = Number.parseInt(String(req.headers["last-event-id"] ?? "0"), 10);
  const startSeq = Number.isFinite(lastEventId) && lastEventId > 0 ? lastEventId + 1 : undefined;
  const from = startSeq ? { fromSeq: startSeq } : {};
  const wanted = (c: LogChunk) => attempt === undefined || c.attempt === attempt;

  if (!(req.headers.accept ?? "").includes("text/event-stream")) {
    let text = "";
    for await (const { chunk } of bus.readLog(taskId, from)) if (wanted(chunk)) text += chunk.text;
    reply.type("text/plain; charset=utf-8").send(text);
    return;
  }

  const messages = await bus.followLog(taskId, from); // before the hijack: a NATS failure is still an error answer
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
  const finish = (status: string) => {
    if (closed) return;
    closed = true;
    res.write(`event: end\ndata: ${JSON.stringify({ status })}\n\n`);
    res.end();
    messages.close();
  };
  const heartbeat = setInterval(() => res.write(": keepalive\n\n"), deps.heartbeatMs);
  const finishCheck = setInterval(() => {
    void (async () => {
      const view = await getTaskView(deps.db, taskId);
      if (view && isFinalStatus(view.status) && delivered >= (await lastSeqOf(bus, taskId))) finish(view.status);
    })().catch(() => undefined);
  }, deps.finishCheckMs);
  req.raw.on("close", () => {
    closed = true;
    messages.close();
  });
  try {
    for await (const { seq, chunk } of messages) {
      if (closed) break;
      delivered = seq;
      if (wanted(chunk)) res.write(`id: ${seq}\nevent: log\ndata: ${JSON.stringify(chunk)}\n\n`);
    }
  } finally {
    clearInterval(heartbeat);
    clearInterval(finishCheck);
    if (!res.writableEnded) res.end();
  }
}

/**
 * The live log stream keeps chunks for a bounded time (7 days by default); the task.log artifact
 * of each attempt is kept as long as artifacts are. When the stream has nothing left for a finished
 * task, its stored logs are served instead: as text, or as SSE log events followed by `end`.
 * Returns false when there is nothing stored either (the caller then serves the empty live log).
 */
async function serveStoredLog(
  deps: LogTailDeps,
  read: StoredLogReader,
  req: FastifyRequest,
  reply: FastifyReply,
  taskId: string,
  attempt: number | undefined,
): Promise<boolean> {
  const view = await getTaskView(deps.db, taskId);
  if (!view || !isFinalStatus(view.status)) return false;
  const logs = view.artifacts
    .filter((a) => a.kind === "log" && (attempt === undefined || a.attempt === attempt))
    .sort((a, b) => a.attempt - b.attempt);
  if (logs.length === 0) return false;
  const parts = await Promise.all(logs.map(async (a) => ({ attempt: a.attempt, at: a.storedAt, text: await read(a.artifactId) })));
  if (!(req.headers.accept ?? "").includes("text/event-stream")) {
    reply
      .header("x-codefleet-log-source", "artifact")
      .type("text/plain; charset=utf-8")
      .send(parts.map((p) => p.text).join(""));
    return true;
  }
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    "x-codefleet-log-source": "artifact",
  });
  for (const p of parts) {
    // LogChunk's text is at most 64 KiB: a long stored log goes out in pieces
    for (let i = 0, seq = 1; i < p.text.length || i === 0; i += 60_000, seq++) {
      const chunk: LogChunk = { taskId, attempt: p.attempt, seq, stream: "stdout", text: p.text.slice(i, i + 60_000), at: p.at };
      res.write(`event: log\ndata: ${JSON.stringify(chunk)}\n\n`);
      if (p.text.length === 0) break;
    }
  }
  res.write(`event: end\ndata: ${JSON.stringify({ status: view.status })}\n\n`);
  res.end();
  return true;
}

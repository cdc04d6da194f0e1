import {
  CodefleetError,
  type CodefleetEvent,
  type CodefleetEventOf,
  DEFAULT_TENANT,
  errorMessage,
  type LogChunk,
  topology as makeTopology,
} from "@codefleet/contracts";
import { jetstream } from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { type Context, context as otelContext, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { type BusContext, encoder, tracer } from "./context.js";
import { injectIntoHeaders, traceFields } from "./trace-context.js";

/**
 * Publishing to JetStream: events on their subjects, log chunks, the run queue and a dispatcher's
 * ingress. Every publish carries a message id (`Nats-Msg-Id`) for de-duplication and the trace
 * context in its headers, and waits for the stream's ack.
 */

export const HEADER_EVENT_TYPE = "Codefleet-Event-Type";
export const HEADER_EVENT_VERSION = "Codefleet-Event-Version";
export const HEADER_TASK_ID = "Codefleet-Task-Id";

export type PublishResult = { stream: string; seq: number; duplicate: boolean };

type Publisher = Pick<BusContext, "js" | "topology">;

/**
 * Publishes an event on its subject with the event id as `Nats-Msg-Id` and waits for the stream's
 * ack. The trace context of `ctx` (default: the active one) goes into headers and metadata.
 */
export async function publishEvent(
  bus: Publisher,
  event: CodefleetEvent,
  opts: { ctx?: Context; timeoutMs?: number; expectLastSubjectSeq?: number } = {},
): Promise<PublishResult> {
  const subject = bus.topology.subjects.event(event.taskId, event.type);
  const parent = opts.ctx ?? otelContext.active();
  const span = tracer.startSpan(
    `publish ${event.type}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.message.id": event.id,
        "codefleet.task_id": event.taskId,
        "codefleet.attempt": event.attempt,
        "codefleet.event_type": event.type,
      },
    },
    parent,
  );
  const spanCtx = trace.setSpan(parent, span);
  try {
    const hdrs = natsHeaders();
    injectIntoHeaders(spanCtx, hdrs);
    hdrs.set(HEADER_EVENT_TYPE, event.type);
    hdrs.set(HEADER_EVENT_VERSION, String(event.version));
    hdrs.set(HEADER_TASK_ID, event.taskId);
    const withTrace = event.metadata.traceparent ? event : { ...event, metadata: { ...event.metadata, ...traceFields(spanCtx) } };
    const ack = await bus.js.publish(subject, encoder.encode(JSON.stringify(withTrace)), {
      msgID: event.id,
      headers: hdrs,
      timeout: opts.timeoutMs ?? 10_000,
      ...(opts.expectLastSubjectSeq === undefined ? {} : { expect: { lastSubjectSequence: opts.expectLastSubjectSeq } }),
    });
    span.setAttribute("messaging.nats.stream_sequence", ack.seq);
    if (ack.duplicate) span.setAttribute("messaging.duplicate", true);
    return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
    throw new CodefleetError("publish_failed", `publishing ${event.type} for task ${event.taskId} failed: ${errorMessage(err)}`, {
      cause: err,
    });
  } finally {
    span.end();
  }
}

/** Publishes a log chunk, de-duplicated by task, attempt, candidate and sequence. */
export async function publishLog(bus: Publisher, chunk: LogChunk, opts: { ctx?: Context } = {}): Promise<PublishResult> {
  const hdrs = natsHeaders();
  injectIntoHeaders(opts.ctx ?? otelContext.active(), hdrs);
  const ack = await bus.js.publish(bus.topology.subjects.logs(chunk.taskId), encoder.encode(JSON.stringify(chunk)), {
    msgID: `${chunk.taskId}.${chunk.attempt}.${chunk.candidate ? `c${chunk.candidate}.` : ""}${chunk.seq}`,
    headers: hdrs,
  });
  return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
}

/** What goes on a run queue: a task's submission (its turn 1) or a follow-up (a later turn). */
export type QueuedWork = CodefleetEventOf<"task.submitted"> | CodefleetEventOf<"task.follow_up_requested">;

/**
 * Puts an admitted task (or a follow-up turn of one) on its tenant's run queue (the registry does
 * this once the event is in the event store). De-duplicated by task and turn: a redelivered
 * admission does not queue it twice.
 */
export async function enqueueTask(bus: Publisher, event: QueuedWork, opts: { ctx?: Context } = {}): Promise<PublishResult> {
  const tenant = event.data.tenant ?? DEFAULT_TENANT;
  const subject = bus.topology.subjects.queue(tenant);
  const span = tracer.startSpan(
    "enqueue task",
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "codefleet.task_id": event.taskId,
        "codefleet.tenant": tenant,
      },
    },
    opts.ctx ?? otelContext.active(),
  );
  try {
    const hdrs = natsHeaders();
    injectIntoHeaders(trace.setSpan(opts.ctx ?? otelContext.active(), span), hdrs);
    hdrs.set(HEADER_EVENT_TYPE, event.type);
    hdrs.set(HEADER_TASK_ID, event.taskId);
    const ack = await bus.js.publish(subject, encoder.encode(JSON.stringify(event)), {
      msgID: event.type === "task.submitted" ? `queue.${event.taskId}` : `queue.${event.taskId}.turn.${event.data.turn}`,
      headers: hdrs,
    });
    if (ack.duplicate) span.setAttribute("messaging.duplicate", true);
    return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * How a dispatcher submits or cancels over NATS: publishes the event on its ingress subject and
 * waits for JetStream's ack (the submission is then durably received; the registry admits it or
 * records why not as task.rejected). Needs only a connection whose user may publish there.
 */
export async function publishAsDispatcher(
  nc: NatsConnection,
  from: { namespace?: string; tenant: string; dispatcher: string },
  event: CodefleetEventOf<"task.submitted"> | CodefleetEventOf<"task.cancel_requested">,
  opts: { timeoutMs?: number } = {},
): Promise<PublishResult> {
  const subject = makeTopology(from.namespace).subjects.ingress(from.tenant, from.dispatcher, event.type);
  const hdrs = natsHeaders();
  injectIntoHeaders(otelContext.active(), hdrs);
  const ack = await jetstream(nc).publish(subject, encoder.encode(JSON.stringify(event)), {
    msgID: event.id,
    headers: hdrs,
    timeout: opts.timeoutMs ?? 10_000,
  });
  return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
}

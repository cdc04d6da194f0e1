import { type CodefleetEvent, type CodefleetEventOf, errorMessage, parseEvent } from "@codefleet/contracts";
import type { Bus, Delivery, Subscription } from "@codefleet/platform/bus";
import { type Logger, retry } from "@codefleet/platform/runtime";
import type { Meter } from "@opentelemetry/api";
import { conflictFollowUp } from "../domain/conflict-follow-up.js";
import { rejectionFor } from "../domain/rejection.js";
import { PRODUCER } from "../domain/submission.js";
import { type Db, isTransientDbError } from "../store/database.js";
import { type AppendResult, appendEvents, taskStatuses } from "../store/event-store.js";
import { getTaskView } from "../store/task-queries.js";

export type IngestorOptions = {
  bus: Bus;
  db: Db;
  log: Logger;
  meter: Meter;
  batchSize: number;
  /** Bytes of events the ingestion holds from the server at most. */
  maxBytes?: number;
  /** Called after each committed batch (e.g. to wake live readers). */
  onCommitted?: (result: AppendResult) => void;
};

/** What the ingestion consumer reads: an event, or the rejection of an invalid submission. */
type Ingested = { event: CodefleetEvent } | { rejection: CodefleetEventOf<"task.rejected"> };

/**
 * Feeds every codefleet event from JetStream into the event store and projections: one
 * transaction per fetched batch, acked only after commit. While Postgres is unreachable the batch
 * is held (with working() heartbeats) and retried instead of burning deliveries.
 */
export async function startIngestor(opts: IngestorOptions): Promise<Subscription> {
  const { bus, db, log, meter } = opts;
  const ingested = meter.createCounter("codefleet_registry_events_ingested_total", { description: "events appended to the event store" });
  const duplicates = meter.createCounter("codefleet_registry_events_duplicate_total", {
    description: "redelivered events skipped as duplicates",
  });
  const anomalies = meter.createCounter("codefleet_registry_event_anomalies_total", {
    description: "events stored but flagged as illegal transitions",
  });
  const lag = meter.createHistogram("codefleet_registry_ingest_lag_ms", {
    description: "time from event occurrence to projection commit",
    unit: "ms",
  });
  const c = bus.topology.consumers.registryIngest;

  const rejected = meter.createCounter("codefleet_registry_submissions_rejected_total", {
    description: "invalid task.submitted messages recorded as task.rejected",
  });

  /**
   * Stored submissions whose tasks are still queued go on their tenant's run queue (de-duplicated
   * per task), after the commit and before the ack: a crash in between re-queues on redelivery,
   * and a replay of old events does not queue finished tasks again.
   */
  const enqueueAdmitted = async (events: readonly Delivery<CodefleetEvent>[]) => {
    const submitted = events.filter((d) => d.value.type === "task.submitted") as Delivery<CodefleetEventOf<"task.submitted">>[];
    if (submitted.length === 0) return;
    const statuses = await taskStatuses(
      db,
      submitted.map((d) => d.value.taskId),
    );
    await Promise.all(
      submitted.filter((d) => statuses.get(d.value.taskId) === "queued").map((d) => bus.enqueueTask(d.value, { ctx: d.ctx.traceContext })),
    );
  };

  /**
   * A turn that ended in a rebase conflict, of a task that asks for it (`push.onConflict:
   * follow-up`), gets its follow-up turn: published (its id per task and turn, so a redelivered
   * batch publishes it once), then ingested and queued like any follow-up.
   */
  const followUpConflicts = async (events: readonly Delivery<CodefleetEvent>[]) => {
    for (const d of events) {
      if (d.value.type !== "run.finished" || d.value.data.reasonCode !== "rebase_conflict") continue;
      const view = await getTaskView(db, d.value.taskId);
      const followUp = view && conflictFollowUp(view);
      if (!followUp) continue;
      await bus.publish(followUp, { ctx: d.ctx.traceContext });
      log.info({ taskId: followUp.taskId, turn: followUp.data.turn }, "rebase conflict handed to the agent as a follow-up turn");
    }
  };

  /** Follow-ups whose turn is the task's current one and still queued go on the run queue too (de-duplicated per turn). */
  const enqueueFollowUps = async (events: readonly Delivery<CodefleetEvent>[]) => {
    const followUps = events.filter((d) => d.value.type === "task.follow_up_requested") as Delivery<
      CodefleetEventOf<"task.follow_up_requested">
    >[];
    for (const d of followUps) {
      const view = await getTaskView(db, d.value.taskId);
      if (view?.status === "queued" && view.turn === d.value.data.turn) await bus.enqueueTask(d.value, { ctx: d.ctx.traceContext });
    }
  };

  return bus.consumeBatches<Ingested>({
    stream: c.stream,
    durable: c.durable,
    filter: c.filter,
    description: "task-registry: event store and projections",
    // An invalid task.submitted whose task id can be read is recorded as task.rejected (published
    // below, on the task's own subject); any other invalid message is dead-lettered by the bus.
    decode: (data, subject): Ingested => {
      try {
        return { event: parseEvent(data) };
      } catch (err) {
        const rejection = rejectionFor(data, subject, err, { namespace: bus.topology.namespace, producer: PRODUCER });
        if (!rejection) throw err;
        return { rejection };
      }
    },
    spanName: (v) => ("event" in v ? `ingest ${v.event.type}` : "reject task.submitted"),
    batchSize: opts.batchSize,
    ...(opts.maxBytes ? { maxBytes: opts.maxBytes } : {}),
    maxDeliver: 20,
    ackWaitMs: 30_000,
    maxAckPending: opts.batchSize * 4,
    handleBatch: async (batch: readonly Delivery<Ingested>[]) => {
      const events: Delivery<CodefleetEvent>[] = [];
      for (const d of batch) {
        if ("event" in d.value) {
          events.push({ value: d.value.event, ctx: d.ctx });
          continue;
        }
        const r = d.value.rejection;
        // published, not appended here: the rejection reaches its subject (for the dispatcher) and is ingested from there
        const published = await bus.publish(r, { ctx: d.ctx.traceContext });
        if (!published.duplicate) rejected.add(1);
        log.warn({ taskId: r.taskId, code: r.data.code, errors: r.data.errors.length }, "invalid task.submitted recorded as task.rejected");
      }
      if (events.length === 0) return;
      const incoming = events.map((d) => ({ event: d.value, natsStream: c.stream, natsSeq: d.ctx.streamSequence }));
      const signal = batch[0]?.ctx.signal;
      // a database away holds the batch (its messages kept alive) until it is back or the consumer stops
      await retry(
        async () => {
          const result = await appendEvents(db, incoming);
          ingested.add(result.appended);
          duplicates.add(result.duplicates);
          anomalies.add(result.anomalies.length);
          const now = Date.now();
          for (const d of events) lag.record(Math.max(0, now - Date.parse(d.value.occurredAt)));
          for (const a of result.anomalies)
            log.warn({ taskId: a.taskId, eventId: a.eventId, anomaly: a.reason }, "event stored as anomaly");
          opts.onCommitted?.(result);
          await enqueueAdmitted(events);
          await enqueueFollowUps(events);
          await followUpConflicts(events);
        },
        {
          attempts: Number.POSITIVE_INFINITY,
          baseDelayMs: 500,
          maxDelayMs: 5000,
          retryable: (err) => isTransientDbError(err) && !signal?.aborted,
          onRetry: (err, { attempt }) => {
            log.warn({ attempt, error: errorMessage(err) }, "database unavailable; holding the batch and retrying");
            for (const d of batch) d.ctx.working();
          },
        },
      );
    },
  });
}

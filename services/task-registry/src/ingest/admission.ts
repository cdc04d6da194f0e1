import { createEvent, parseEvent, type SecurityPolicy, ValidationError } from "@codefleet/contracts";
import type { TenantQuota } from "@codefleet/contracts/access";
import type { Bus, DeliveryContext, Subscription } from "@codefleet/platform/bus";
import type { Logger } from "@codefleet/platform/runtime";
import type { Meter } from "@opentelemetry/api";
import { rejectionFor } from "../domain/rejection.js";
import { admitAndPublish, assertSubmissionAllowed, PRODUCER } from "../domain/submission.js";
import { decideCancel } from "../domain/task-state.js";
import type { Db } from "../store/database.js";
import { submittedEventIdOf } from "../store/event-store.js";
import { getTaskView } from "../store/task-queries.js";

export type AdmissionOptions = {
  bus: Bus;
  db: Db;
  log: Logger;
  meter: Meter;
  securityPolicy: SecurityPolicy;
  quota?: (tenant: string) => Required<TenantQuota>;
  concurrency?: number;
};

type IngressMessage = { raw: unknown; subject: string };

/**
 * Admits what dispatchers publish on the ingress (`<ns>.ingress.<tenant>.<dispatcher>.<type>`).
 * The tenant and the dispatcher come from the subject, which NATS permissions tie to the
 * dispatcher's user; a payload naming another tenant is refused. A submission passes the same
 * checks as over HTTP (schema, repository and endpoint policy, the tenant's quota) and is then
 * published as task.submitted, or recorded as task.rejected with the reasons, on the task's own
 * subject: `GET /v1/tasks/{id}` and the CLI explain a refusal to the dispatcher.
 * A cancel is honoured only for a task of the dispatcher's tenant.
 */
export async function startAdmission(opts: AdmissionOptions): Promise<Subscription> {
  const { bus, db, log } = opts;
  const { topology } = bus;
  const c = topology.consumers.registryAdmission;
  const admitted = opts.meter.createCounter("codefleet_registry_bus_submissions_total", {
    description: "dispatchers' submissions on the ingress, by outcome",
  });

  const reject = async (msg: IngressMessage, from: { tenant: string; dispatcher: string }, err: unknown, ctx: DeliveryContext) => {
    const rejection = rejectionFor(msg.raw, msg.subject, err, {
      namespace: topology.namespace,
      producer: PRODUCER,
      ingress: from,
    });
    if (!rejection) throw err; // no task id to record it on: dead-lettered with the reason
    // a rejection is recorded on a task id nobody else holds: never into another task's history
    const owner = await getTaskView(db, rejection.taskId);
    if (owner) throw new ValidationError("task_id_taken", `task id ${rejection.taskId} already exists`);
    await bus.publish(rejection, { ctx: ctx.traceContext });
    admitted.add(1, { outcome: "rejected", code: rejection.data.code });
    log.warn(
      { taskId: rejection.taskId, tenant: from.tenant, dispatcher: from.dispatcher, code: rejection.data.code },
      "bus submission rejected",
    );
  };

  return bus.consume<IngressMessage>({
    stream: c.stream,
    durable: c.durable,
    filter: c.filter,
    description: "task-registry: admission of dispatchers' submissions and cancels",
    decode: (raw, subject) => ({ raw, subject }),
    spanName: (m) => `admit ${topology.subjects.parseIngress(m.subject)?.type ?? "message"}`,
    concurrency: opts.concurrency ?? 4,
    maxDeliver: 10,
    ackWaitMs: 30_000,
    handle: async (msg, ctx) => {
      const from = topology.subjects.parseIngress(msg.subject);
      if (!from) throw new ValidationError("invalid_ingress_subject", `not an ingress subject: ${msg.subject}`);
      const who = { tenant: from.tenant, dispatcher: from.dispatcher };
      let event: ReturnType<typeof parseEvent>;
      try {
        event = parseEvent(msg.raw);
        if (event.type !== from.type)
          throw new ValidationError("event_type_mismatch", `a ${event.type} event published on the ${from.type} subject`);
      } catch (err) {
        if (from.type === "task.submitted") return reject(msg, who, err, ctx);
        throw err;
      }

      if (event.type === "task.submitted") {
        try {
          if (event.data.tenant !== undefined && event.data.tenant !== from.tenant)
            throw new ValidationError(
              "tenant_mismatch",
              `the submission names tenant '${event.data.tenant}' but was published by a dispatcher of tenant '${from.tenant}'`,
            );
          assertSubmissionAllowed(event.data.spec, opts.securityPolicy, from.tenant);
        } catch (err) {
          return reject(msg, who, err, ctx);
        }
        // a redelivery of an admitted submission publishes the same event again (de-duplicated); another
        // event for a task id that exists is refused: a dispatcher cannot write into a task it does not own
        const existing = await submittedEventIdOf(db, event.taskId);
        if (existing !== undefined && existing !== event.id)
          throw new ValidationError("task_id_taken", `task id ${event.taskId} already exists`);
        const stamped = createEvent("task.submitted", {
          id: event.id,
          taskId: event.taskId,
          producer: PRODUCER,
          correlationId: event.metadata.correlationId,
          data: {
            ...event.data,
            submittedVia: "bus",
            tenant: from.tenant,
            submittedBy: from.dispatcher,
          },
        });
        try {
          await admitAndPublish({ db, bus, ...(opts.quota ? { quota: opts.quota } : {}) }, stamped, ctx.traceContext);
        } catch (err) {
          if ((err as { code?: string }).code === "quota_exceeded") return reject(msg, who, err, ctx);
          throw err;
        }
        admitted.add(1, { outcome: "admitted" });
        log.info({ taskId: event.taskId, tenant: from.tenant, dispatcher: from.dispatcher }, "bus submission admitted");
        return;
      }

      if (event.type === "task.cancel_requested") {
        const view = await getTaskView(db, event.taskId);
        // not (yet) projected: the submission may still be on its way; redelivered, then dead-lettered
        if (!view) throw new Error(`no task ${event.taskId} (yet)`);
        if (view.tenant !== from.tenant) throw new ValidationError("task_not_found", `no task ${event.taskId} for tenant ${from.tenant}`);
        const decision = decideCancel(view);
        if (decision.kind === "reject") {
          log.info({ taskId: event.taskId, tenant: from.tenant, reason: decision.reason }, "bus cancel ignored");
          return;
        }
        await bus.publish(
          createEvent("task.cancel_requested", {
            id: event.id,
            taskId: event.taskId,
            producer: PRODUCER,
            data: {
              ...(event.data.reason ? { reason: event.data.reason } : {}),
              requestedBy: from.dispatcher,
              tenant: view.tenant,
            },
          }),
          { ctx: ctx.traceContext },
        );
        return;
      }
      throw new ValidationError(
        "unsupported_ingress_event",
        `dispatchers may publish task.submitted and task.cancel_requested, not ${event.type}`,
      );
    },
  });
}

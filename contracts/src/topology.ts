import type { EventType } from "./events.js";

/**
 * Every subject, stream and durable consumer name in one place. A namespace prefixes all of them so
 * that several installations (or parallel test runs) can share one NATS account without colliding.
 *
 * Subjects:
 *   <ns>.events.<taskId>.<event type>   e.g. codefleet.events.tsk_01H....task.submitted
 *   <ns>.logs.<taskId>                  log chunks of every attempt of a task
 *   <ns>.dlq.<consumer>                 dead-lettered messages of a durable consumer
 *   <ns>.rpc.<service>.<verb>           request/reply APIs (repo-pool)
 *   <ns>.ingress.<tenant>.<dispatcher>.<event type>
 *                                       what dispatchers publish (task.submitted, task.cancel_requested);
 *                                       NATS permissions let a dispatcher publish only under its own
 *                                       tenant and name, so both come from the subject, never the payload
 *   <ns>.queue.<tenant>                 admitted tasks waiting for a runner, one subject per tenant so
 *                                       runners can take them fairly across tenants
 *
 * Schedules are event streams of their own: `<ns>.events.<scheduleId>.schedule.<what>` (ids `sch_…`),
 * in the events stream beside tasks' (the registry projects them into its schedules table).
 */
export type Topology = ReturnType<typeof topology>;

export const DEFAULT_NAMESPACE = "codefleet";
const NAMESPACE_RE = /^[a-z][a-z0-9_-]{0,31}$/;

export function isValidNamespace(ns: string): boolean {
  return NAMESPACE_RE.test(ns);
}

export function topology(namespace: string = DEFAULT_NAMESPACE) {
  if (!isValidNamespace(namespace)) {
    throw new Error(`invalid namespace '${namespace}': lowercase letters, digits, '_' and '-', starting with a letter`);
  }
  const ns = namespace;
  const upper = ns.toUpperCase().replace(/-/g, "_");
  return {
    namespace: ns,
    streams: {
      /** The event log: every task, run, slot and artifact event. Source of truth feeding the registry. */
      events: { name: `${upper}_EVENTS`, subjects: [`${ns}.events.>`] },
      /** Live log chunks: high volume, kept for a bounded time; the full log is also an artifact. */
      logs: { name: `${upper}_LOGS`, subjects: [`${ns}.logs.>`] },
      /** Dispatchers' submissions and cancels, waiting for the registry's admission. */
      ingress: { name: `${upper}_INGRESS`, subjects: [`${ns}.ingress.>`] },
      /** Admitted tasks waiting for a runner (work-queue retention: a task leaves when a runner acks it). */
      queue: { name: `${upper}_QUEUE`, subjects: [`${ns}.queue.*`] },
      /** Messages that exhausted their deliveries or failed validation, with the reason. */
      deadLetters: { name: `${upper}_DLQ`, subjects: [`${ns}.dlq.>`] },
    },
    subjects: {
      event: (taskId: string, type: EventType) => `${ns}.events.${taskId}.${type}`,
      allEvents: `${ns}.events.>`,
      eventsOfTask: (taskId: string) => `${ns}.events.${taskId}.>`,
      eventsOfType: (type: EventType) => `${ns}.events.*.${type}`,
      logs: (taskId: string) => `${ns}.logs.${taskId}`,
      allLogs: `${ns}.logs.>`,
      deadLetter: (consumer: string) => `${ns}.dlq.${consumer}`,
      rpc: (service: string, verb: string) => `${ns}.rpc.${service}.${verb}`,
      /** Where a dispatcher publishes (its NATS user may publish only `ingressOf(tenant, dispatcher)`). */
      ingress: (tenant: string, dispatcher: string, type: "task.submitted" | "task.cancel_requested") =>
        `${ns}.ingress.${tenant}.${dispatcher}.${type}`,
      ingressOf: (tenant: string, dispatcher: string) => `${ns}.ingress.${tenant}.${dispatcher}.>`,
      allIngress: `${ns}.ingress.>`,
      /** Reads tenant and dispatcher off an ingress subject (undefined: not one). */
      parseIngress: (subject: string): { tenant: string; dispatcher: string; type: string } | undefined => {
        const prefix = `${ns}.ingress.`;
        if (!subject.startsWith(prefix)) return undefined;
        const [tenant, dispatcher, ...rest] = subject.slice(prefix.length).split(".");
        if (!tenant || !dispatcher || rest.length === 0) return undefined;
        return { tenant, dispatcher, type: rest.join(".") };
      },
      /** A runner's status heartbeat (core NATS): its capacity, what it runs, its warm containers. */
      runnerStatus: (runnerId: string) => `${ns}.status.runner.${runnerId.replace(/[^A-Za-z0-9_-]/g, "_")}`,
      allRunnerStatus: `${ns}.status.runner.*`,
      queue: (tenant: string) => `${ns}.queue.${tenant}`,
      allQueues: `${ns}.queue.*`,
      /** The tenant of a queue subject (undefined: not one). */
      queueTenant: (subject: string): string | undefined => {
        const prefix = `${ns}.queue.`;
        return subject.startsWith(prefix) && !subject.slice(prefix.length).includes(".") ? subject.slice(prefix.length) : undefined;
      },
    },
    /** NATS KV buckets (each is the stream `KV_<bucket>`, its keys `$KV.<bucket>.<key>`). */
    buckets: {
      /** task-registry: leases among its replicas (the scheduler's leader). */
      registryLeases: `${ns.replace(/-/g, "_")}_registry_leases`,
    },
    consumers: {
      /** task-registry: appends every event to the event store and projections. */
      registryIngest: { stream: `${upper}_EVENTS`, durable: "registry-ingest", filter: `${ns}.events.>` },
      /** task-registry: admits what dispatchers publish (validation, policy, quotas, tenant from the subject). */
      registryAdmission: { stream: `${upper}_INGRESS`, durable: "registry-admission", filter: `${ns}.ingress.>` },
      /** runner: one shared durable per tenant's queue; every runner replica pulls from all of them in turn. */
      runnerQueue: (tenant: string) => ({ stream: `${upper}_QUEUE`, durable: `runner-queue-${tenant}`, filter: `${ns}.queue.${tenant}` }),
    },
  } as const;
}

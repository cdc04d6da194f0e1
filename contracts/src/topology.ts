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
    },
    consumers: {
      /** task-registry: appends every event to the event store and projections. */
      registryIngest: { stream: `${upper}_EVENTS`, durable: "registry-ingest", filter: `${ns}.events.>` },
      /** runner: the shared work queue of submitted tasks. */
      runnerTasks: { stream: `${upper}_EVENTS`, durable: "runner-tasks", filter: `${ns}.events.*.task.submitted` },
    },
  } as const;
}

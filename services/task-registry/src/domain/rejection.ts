import { createHash } from "node:crypto";
import {
  type CodefleetEventOf,
  createEvent,
  errorMessage,
  isValidTaskId,
  TENANT_NAME_PATTERN,
  ValidationError,
  type ValidationIssue,
} from "@codefleet/contracts";
import { stripRepoUrlCredentials } from "@codefleet/contracts/access";
import { SecretMasker } from "@codefleet/platform/runtime";

/**
 * A `task.submitted` published on the bus that fails validation becomes a `task.rejected` event on
 * the same task's subject, so that `GET /v1/tasks/{id}` (and `codefleet show`) says why instead of
 * answering 404. Pure: the ingestor publishes what this returns.
 */

const MAX_ERRORS = 20;
const masker = new SecretMasker(); // token shapes and URL credentials: no value is known here
const TENANT_RE = new RegExp(TENANT_NAME_PATTERN);
const EVENT_ID_RE = /^[A-Za-z0-9_-]{1,100}$/;

function bounded(text: string, max: number): string {
  const masked = masker.mask(text.length > max * 4 ? text.slice(0, max * 4) : text);
  return masked.length > max ? `${masked.slice(0, max - 1)}…` : masked;
}

const record = (v: unknown): Record<string, unknown> | undefined =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
const str = (v: unknown): string | undefined => (typeof v === "string" && v.length > 0 ? v : undefined);

/** The task id of a `<namespace>.events.<taskId>.task.submitted` subject, if it is one. */
export function submittedTaskIdOf(subject: string, namespace: string): string | undefined {
  const prefix = `${namespace}.events.`;
  const suffix = ".task.submitted";
  if (!subject.startsWith(prefix) || !subject.endsWith(suffix)) return undefined;
  const id = subject.slice(prefix.length, subject.length - suffix.length);
  return isValidTaskId(id) ? id : undefined;
}

/**
 * The rejection of an invalid message read on `subject`, or undefined when it is not a
 * submission of a task id one can read (it is then only dead-lettered). The event's id derives
 * from the message, so a redelivery or a republish of the same bytes records it once.
 */
export function rejectionFor(
  raw: unknown,
  subject: string,
  err: unknown,
  opts: {
    namespace: string;
    producer: string;
    now?: Date;
    /** A dispatcher's submission on the ingress: tenant and dispatcher come from its subject, the task id from the envelope. */
    ingress?: { tenant: string; dispatcher: string };
  },
): CodefleetEventOf<"task.rejected"> | undefined {
  const envelope = record(raw) ?? {};
  const envelopeTaskId = str(envelope.taskId);
  const taskId = opts.ingress
    ? envelopeTaskId && isValidTaskId(envelopeTaskId)
      ? envelopeTaskId
      : undefined
    : submittedTaskIdOf(subject, opts.namespace);
  if (!taskId) return undefined;
  const data = record(envelope.data) ?? {};
  const spec = record(data.spec) ?? {};
  const issues: readonly ValidationIssue[] = err instanceof ValidationError ? err.issues : [];
  const ownCode = (err as { code?: unknown } | undefined)?.code;
  const code = err instanceof ValidationError ? err.code : typeof ownCode === "string" && ownCode ? ownCode : "invalid_submission";
  const rejectedEventId = str(envelope.id);
  const submittedVia = opts.ingress ? "bus" : data.submittedVia === "http" || data.submittedVia === "bus" ? data.submittedVia : undefined;
  const submittedBy = opts.ingress ? opts.ingress.dispatcher : str(data.submittedBy);
  const tenant = opts.ingress ? opts.ingress.tenant : str(data.tenant);
  const title = str(spec.title);
  const repoUrl = str(record(spec.repo)?.url);
  const id = `rej-${createHash("sha256")
    .update(`${subject}\n${JSON.stringify(raw) ?? ""}`)
    .digest("hex")
    .slice(0, 40)}`;
  return createEvent("task.rejected", {
    id,
    taskId,
    producer: opts.producer,
    ...(opts.now ? { now: opts.now } : {}),
    data: {
      code: bounded(code, 100),
      reason: bounded(errorMessage(err), 2000),
      errors: issues.slice(0, MAX_ERRORS).map((i) => ({ path: bounded(i.path, 300), message: bounded(i.message, 500) })),
      ...(rejectedEventId && EVENT_ID_RE.test(rejectedEventId) ? { rejectedEventId } : {}),
      ...(submittedVia ? { submittedVia } : {}),
      ...(submittedBy ? { submittedBy: bounded(submittedBy, 200) } : {}),
      ...(tenant && TENANT_RE.test(tenant) ? { tenant } : {}),
      ...(title ? { title: bounded(title, 500) } : {}),
      ...(repoUrl ? { repoUrl: bounded(stripRepoUrlCredentials(repoUrl), 2048) } : {}),
    },
  });
}

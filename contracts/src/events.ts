import "./formats.js";
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { type TypeCheck, TypeCompiler } from "@sinclair/typebox/compiler";
import { Value } from "@sinclair/typebox/value";
import { ValidationError, type ValidationIssue } from "./errors.js";
import { newEventId, TASK_ID_PATTERN, ulid } from "./ids.js";
import { AgentSpec, MAX_CANDIDATES, PHASES, PULL_REQUEST_PROVIDERS, TaskSpec } from "./task-spec.js";

/**
 * The event catalogue. Every event travels in one envelope; `type` + `version` select the schema of
 * `data`. Stored types are never renamed: a new shape is a new version plus an upcaster from the
 * previous one, so old events in the log still read as the latest shape.
 */

const Phase = Type.Union(PHASES.map((p) => Type.Literal(p)));
const RunStatus = Type.Union([Type.Literal("succeeded"), Type.Literal("failed"), Type.Literal("timed_out"), Type.Literal("canceled")]);
const PhaseOutcome = Type.Union([
  Type.Literal("succeeded"),
  Type.Literal("failed"),
  Type.Literal("skipped"),
  Type.Literal("timed_out"),
  Type.Literal("canceled"),
]);
const Sha = Type.String({ pattern: "^[0-9a-f]{40}([0-9a-f]{24})?$" });
const Sha256 = Type.String({ pattern: "^[0-9a-f]{64}$" });
const IsoTime = Type.String({ format: "date-time", maxLength: 40 });

/** A tenant's name: every task belongs to one. Events written before tenancy carry none: read them as `default`. */
export const TENANT_NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,62}$";
export const DEFAULT_TENANT = "default";
/** The most turns (the submission and its follow-ups) a task takes. */
export const MAX_TURNS = 100;
const TenantName = Type.String({ pattern: TENANT_NAME_PATTERN });

export const ArtifactKind = Type.Union([
  Type.Literal("diff"),
  Type.Literal("log"),
  Type.Literal("test-report"),
  Type.Literal("transcript"),
  Type.Literal("other"),
]);
export type ArtifactKind = Static<typeof ArtifactKind>;
export const ARTIFACT_KINDS: readonly ArtifactKind[] = ["diff", "log", "test-report", "transcript", "other"];

/**
 * Schedules are streams of their own in the event log: their events carry the schedule's id
 * (`sch_<ulid>`) where task events carry the task id (envelope `taskId`, subject
 * `<ns>.events.<scheduleId>.schedule.<what>`).
 */
export const SCHEDULE_ID_PREFIX = "sch_";
export const SCHEDULE_ID_PATTERN = "^sch_[0-9A-HJKMNP-TV-Z]{26}$";
export function newScheduleId(now?: number): string {
  return `${SCHEDULE_ID_PREFIX}${ulid(now)}`;
}
export function isScheduleId(id: string): boolean {
  return new RegExp(SCHEDULE_ID_PATTERN).test(id);
}
/** The label every task a schedule submits carries: `schedule=<schedule id>`. */
export const SCHEDULE_LABEL = "schedule";

const Actor = Type.String({ maxLength: 200, description: "the API token's name (never the token)" });
/** What a webhook delivery is about: a generic kind so later notifications (e.g. `pr.opened`) fit in. */
const NotificationKind = Type.String({ minLength: 1, maxLength: 100, pattern: "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*$" });
const WebhookDelivery = {
  /** Sent to the receiver as `Codefleet-Delivery`; the same for every attempt of one delivery. */
  deliveryId: Type.String({ minLength: 1, maxLength: 100 }),
  kind: NotificationKind,
  /** `task`: the task's `notify.url`; `tenant`: the tenant's default webhook (operator config). */
  target: Type.Union([Type.Literal("task"), Type.Literal("tenant")]),
  /** The receiver's host (never the whole URL, which may carry a token). */
  host: Type.String({ maxLength: 300 }),
  /** 1 for the first attempt. */
  attempt: Type.Integer({ minimum: 1, maximum: 1000 }),
  durationMs: Type.Integer({ minimum: 0 }),
};

/** A candidate of a best-of-N attempt (`spec.candidates`). */
const CandidateNumber = Type.Integer({ minimum: 1, maximum: MAX_CANDIDATES });

/** How the test oracle saw one candidate (`candidate.selected`). */
const CandidateScore = Type.Object({
  candidate: CandidateNumber,
  /** `passed`: through implement and test; `failed`: its agent or tests failed; `error`: it could not run. */
  status: Type.Union([Type.Literal("passed"), Type.Literal("failed"), Type.Literal("error")]),
  testsPassed: Type.Optional(Type.Integer({ minimum: 0 })),
  testsFailed: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Lines added plus removed, as measured in the candidate's container (absent: not measured). */
  diffLines: Type.Optional(Type.Integer({ minimum: 0 })),
  reasonCode: Type.Optional(Type.String({ maxLength: 100 })),
  reason: Type.Optional(Type.String({ maxLength: 2000 })),
  /** The candidate's own trace. */
  traceId: Type.Optional(Type.String({ maxLength: 64 })),
});

/** type → version → schema of `data`. The highest version is the one producers write. */
export const EventCatalogue = {
  "task.submitted": {
    1: Type.Object({
      spec: TaskSpec,
      submittedVia: Type.Union([Type.Literal("http"), Type.Literal("bus")]),
      /** The name of the API token that submitted it (never the token). */
      submittedBy: Type.Optional(Type.String({ maxLength: 200 })),
      idempotencyKey: Type.Optional(Type.String({ maxLength: 200 })),
      /** Added compatibly (optional, still v1): absent means `default`. */
      tenant: Type.Optional(TenantName),
    }),
  },
  "task.cancel_requested": {
    1: Type.Object({
      reason: Type.Optional(Type.String({ maxLength: 2000 })),
      /** The name of the API token that asked (never the token). */
      requestedBy: Type.Optional(Type.String({ maxLength: 200 })),
      /** The tenant of the task it was asked for; absent means `default`. */
      tenant: Type.Optional(TenantName),
      /** The turn it was asked for (a follow-up is a turn); absent means 1. Added compatibly. */
      turn: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TURNS })),
    }),
  },
  /**
   * A follow-up: a new turn of a finished task, on the same branch (and pull request). The runner
   * starts from the previous turn's pushed commit (or its change, when the task does not push),
   * with this prompt; its attempts are numbered from `firstAttempt` on.
   */
  "task.follow_up_requested": {
    1: Type.Object({
      /** 2 for the first follow-up; the submission is turn 1. */
      turn: Type.Integer({ minimum: 2, maximum: MAX_TURNS }),
      prompt: Type.String({ minLength: 1, maxLength: 200_000 }),
      /** Another agent for this turn; absent: the task's own. */
      agent: Type.Optional(AgentSpec),
      /** The number of this turn's first attempt: one past the task's last attempt when it was asked. */
      firstAttempt: Type.Integer({ minimum: 2 }),
      /** The commit the turn starts from: the previous turn's push (absent: it pushed nothing). */
      fromCommit: Type.Optional(Type.String({ pattern: "^(?:[0-9a-f]{40}|[0-9a-f]{64})$" })),
      /** The name of the API token that asked (never the token). */
      requestedBy: Type.Optional(Type.String({ maxLength: 200 })),
      tenant: Type.Optional(TenantName),
    }),
  },
  /**
   * A `task.submitted` published on the bus failed validation: recorded by the registry on the
   * task's own subject so the dispatcher can read why. Messages are masked and bounded.
   */
  "task.rejected": {
    1: Type.Object({
      code: Type.String({ minLength: 1, maxLength: 100 }),
      reason: Type.String({ maxLength: 2000 }),
      errors: Type.Array(Type.Object({ path: Type.String({ maxLength: 300 }), message: Type.String({ maxLength: 500 }) }), {
        maxItems: 20,
      }),
      /** The id of the rejected event, when it had a readable one. */
      rejectedEventId: Type.Optional(Type.String({ maxLength: 100 })),
      submittedVia: Type.Optional(Type.Union([Type.Literal("http"), Type.Literal("bus")])),
      submittedBy: Type.Optional(Type.String({ maxLength: 200 })),
      tenant: Type.Optional(TenantName),
      /** Best-effort fields of the rejected spec, for display: masked, repository credentials removed. */
      title: Type.Optional(Type.String({ maxLength: 500 })),
      repoUrl: Type.Optional(Type.String({ maxLength: 2048 })),
    }),
  },
  "run.started": {
    1: Type.Object({
      runnerId: Type.String({ minLength: 1, maxLength: 200 }),
      agentKind: Type.String({ maxLength: 50 }),
      image: Type.Optional(Type.String({ maxLength: 512 })),
      /** The container's egress as enforced (`none`, `llm`, `allow`, `open`) and its allow-list. */
      network: Type.Optional(Type.String({ maxLength: 20 })),
      networkAllow: Type.Optional(Type.Array(Type.String({ maxLength: 255 }), { maxItems: 64 })),
      /** The OCI runtime the container runs under (`runc`, `runsc`). */
      runtime: Type.Optional(Type.String({ maxLength: 50 })),
    }),
  },
  "phase.started": {
    /** `candidate` (added compatibly): the phase of one candidate of a best-of-N attempt. */
    1: Type.Object({ phase: Phase, candidate: Type.Optional(CandidateNumber) }),
  },
  "phase.finished": {
    1: Type.Object({
      phase: Phase,
      candidate: Type.Optional(CandidateNumber),
      outcome: PhaseOutcome,
      durationMs: Type.Integer({ minimum: 0 }),
      exitCode: Type.Optional(Type.Integer()),
      detail: Type.Optional(Type.String({ maxLength: 4000 })),
      /** Phase-specific facts: the commit sha after push, the branch, test counts... */
      facts: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String({ maxLength: 2000 }), Type.Number(), Type.Boolean()]))),
    }),
  },
  /**
   * The test oracle's choice among a best-of-N attempt's candidates: every candidate's score and
   * the winner (absent: none passed; the attempt then ends with the best failure). Only the winner
   * goes on to rebase and push.
   */
  "candidate.selected": {
    1: Type.Object({
      winner: Type.Optional(CandidateNumber),
      candidates: Type.Array(CandidateScore, { minItems: 1, maxItems: 8 }),
      /** Why this one, in words. */
      reason: Type.String({ maxLength: 2000 }),
    }),
  },
  "run.finished": {
    1: Type.Object({
      status: RunStatus,
      reason: Type.Optional(Type.String({ maxLength: 4000 })),
      /** A stable machine-readable reason, e.g. `test_failed`, `oom_killed`, `push_rejected`. */
      reasonCode: Type.Optional(Type.String({ maxLength: 100 })),
      branch: Type.Optional(Type.String({ maxLength: 250 })),
      commitSha: Type.Optional(Sha),
      durationMs: Type.Integer({ minimum: 0 }),
    }),
  },
  "slot.allocated": {
    1: Type.Object({
      slotId: Type.String({ minLength: 1, maxLength: 200 }),
      repoUrl: Type.String({ maxLength: 2048 }),
      ref: Type.String({ maxLength: 250 }),
      commitSha: Type.Optional(Sha),
      leaseExpiresAt: IsoTime,
      warm: Type.Boolean(),
    }),
  },
  "slot.released": {
    1: Type.Object({
      slotId: Type.String({ minLength: 1, maxLength: 200 }),
      outcome: Type.Union([Type.Literal("recycled"), Type.Literal("destroyed")]),
      reason: Type.Optional(Type.String({ maxLength: 2000 })),
    }),
  },
  "slot.reclaimed": {
    1: Type.Object({
      slotId: Type.String({ minLength: 1, maxLength: 200 }),
      reason: Type.String({ maxLength: 2000 }),
    }),
  },
  "artifact.stored": {
    1: Type.Object({
      artifactId: Type.String({ minLength: 1, maxLength: 200 }),
      kind: ArtifactKind,
      name: Type.String({ minLength: 1, maxLength: 255 }),
      size: Type.Integer({ minimum: 0 }),
      sha256: Sha256,
      contentType: Type.String({ maxLength: 255 }),
    }),
  },
  /**
   * One model call of an attempt through the runner's LLM gateway: what it used and cost (from the
   * operator's price table). No prompt, no answer (those are in the attempt's llm-exchanges.jsonl).
   */
  "llm.called": {
    1: Type.Object({
      model: Type.String({ maxLength: 200 }),
      api: Type.Union([Type.Literal("openai"), Type.Literal("anthropic")]),
      stream: Type.Boolean(),
      status: Type.Integer({ minimum: 0, maximum: 999 }),
      promptTokens: Type.Integer({ minimum: 0 }),
      completionTokens: Type.Integer({ minimum: 0 }),
      costUsd: Type.Number({ minimum: 0 }),
      /** The price table had the model. */
      priced: Type.Boolean(),
      latencyMs: Type.Integer({ minimum: 0 }),
      /** Provider attempts (1 without retries). */
      attempts: Type.Integer({ minimum: 0 }),
    }),
  },
  /** A schedule was created: `task` is submitted at every firing of `cron` (in `timezone`). Stream: the schedule id. */
  "schedule.created": {
    1: Type.Object({
      cron: Type.String({ minLength: 1, maxLength: 200 }),
      /** IANA time zone the cron expression is read in; absent: UTC. */
      timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
      task: TaskSpec,
      tenant: TenantName,
      createdBy: Type.Optional(Actor),
    }),
  },
  "schedule.paused": { 1: Type.Object({ by: Type.Optional(Actor) }) },
  "schedule.resumed": { 1: Type.Object({ by: Type.Optional(Actor) }) },
  "schedule.deleted": { 1: Type.Object({ by: Type.Optional(Actor) }) },
  /**
   * One firing of a schedule: the task it submitted (idempotency key `schedule:<id>:<fireTime>`),
   * or why it submitted none (`refused`: quota, policy; recorded once, not retried).
   */
  "schedule.fired": {
    1: Type.Object({
      fireTime: IsoTime,
      outcome: Type.Union([Type.Literal("submitted"), Type.Literal("refused")]),
      taskId: Type.Optional(Type.String({ pattern: TASK_ID_PATTERN })),
      code: Type.Optional(Type.String({ maxLength: 100 })),
      reason: Type.Optional(Type.String({ maxLength: 2000 })),
    }),
  },
  /**
   * The runner opened the task's pull (merge) request after its push, or found one open for the
   * branch and updated it (`created: false`: a redelivered push, a later turn). `url` is the
   * provider's web page of it (http(s) only), `number` its number (GitLab: the MR's iid).
   */
  "pull_request.opened": {
    1: Type.Object({
      url: Type.String({ minLength: 1, maxLength: 2048, pattern: "^https?://[^\\s]+$" }),
      number: Type.Integer({ minimum: 1 }),
      provider: Type.Optional(Type.Union(PULL_REQUEST_PROVIDERS.map((p) => Type.Literal(p)))),
      created: Type.Optional(Type.Boolean()),
      /** The branch it merges, and into which. */
      head: Type.Optional(Type.String({ maxLength: 250 })),
      base: Type.Optional(Type.String({ maxLength: 250 })),
    }),
  },
  /** A webhook attempt the receiver answered with 2xx. On the task's stream; no body, no secret. */
  "webhook.delivered": {
    1: Type.Object({ ...WebhookDelivery, statusCode: Type.Integer({ minimum: 100, maximum: 599 }) }),
  },
  /** A webhook attempt that failed; `final`: no more attempts (given up, or not retryable). */
  "webhook.failed": {
    1: Type.Object({
      ...WebhookDelivery,
      statusCode: Type.Optional(Type.Integer({ minimum: 100, maximum: 599 })),
      /** `http_<status>`, `timeout`, `connection_failed`, `address_refused`, `url_refused`, `no_signing_secret`. */
      code: Type.String({ minLength: 1, maxLength: 100 }),
      final: Type.Boolean(),
      nextAttemptAt: Type.Optional(IsoTime),
    }),
  },
} as const satisfies Record<string, Record<number, TSchema>>;

type Catalogue = typeof EventCatalogue;
export type EventType = keyof Catalogue;
export const EVENT_TYPES = Object.keys(EventCatalogue) as EventType[];

/** The schema producers write for each type: update it together with the catalogue when a version is added. */
export const LatestEventSchemas = {
  "task.submitted": EventCatalogue["task.submitted"][1],
  "task.cancel_requested": EventCatalogue["task.cancel_requested"][1],
  "task.rejected": EventCatalogue["task.rejected"][1],
  "task.follow_up_requested": EventCatalogue["task.follow_up_requested"][1],
  "run.started": EventCatalogue["run.started"][1],
  "phase.started": EventCatalogue["phase.started"][1],
  "phase.finished": EventCatalogue["phase.finished"][1],
  "run.finished": EventCatalogue["run.finished"][1],
  "candidate.selected": EventCatalogue["candidate.selected"][1],
  "slot.allocated": EventCatalogue["slot.allocated"][1],
  "slot.released": EventCatalogue["slot.released"][1],
  "slot.reclaimed": EventCatalogue["slot.reclaimed"][1],
  "artifact.stored": EventCatalogue["artifact.stored"][1],
  "llm.called": EventCatalogue["llm.called"][1],
  "schedule.created": EventCatalogue["schedule.created"][1],
  "schedule.paused": EventCatalogue["schedule.paused"][1],
  "schedule.resumed": EventCatalogue["schedule.resumed"][1],
  "schedule.deleted": EventCatalogue["schedule.deleted"][1],
  "schedule.fired": EventCatalogue["schedule.fired"][1],
  "pull_request.opened": EventCatalogue["pull_request.opened"][1],
  "webhook.delivered": EventCatalogue["webhook.delivered"][1],
  "webhook.failed": EventCatalogue["webhook.failed"][1],
} as const satisfies Record<EventType, TSchema>;

/** Event types whose stream is a schedule (`sch_…`), not a task. */
export const SCHEDULE_EVENT_TYPES = [
  "schedule.created",
  "schedule.paused",
  "schedule.resumed",
  "schedule.deleted",
  "schedule.fired",
] as const;
export type ScheduleEventType = (typeof SCHEDULE_EVENT_TYPES)[number];
export function isScheduleEventType(type: string): type is ScheduleEventType {
  return (SCHEDULE_EVENT_TYPES as readonly string[]).includes(type);
}
export type EventData<T extends EventType> = Static<(typeof LatestEventSchemas)[T]>;

export const EventMetadata = Type.Object({
  producer: Type.String({ minLength: 1, maxLength: 200 }),
  traceparent: Type.Optional(Type.String({ pattern: "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$" })),
  tracestate: Type.Optional(Type.String({ maxLength: 512 })),
  causationId: Type.Optional(Type.String({ maxLength: 200 })),
  correlationId: Type.Optional(Type.String({ maxLength: 200 })),
});
export type EventMetadata = Static<typeof EventMetadata>;

export const EventEnvelope = Type.Object({
  id: Type.String({ minLength: 8, maxLength: 100, pattern: "^[A-Za-z0-9_-]+$" }),
  type: Type.String({ minLength: 1, maxLength: 100 }),
  version: Type.Integer({ minimum: 1 }),
  occurredAt: IsoTime,
  taskId: Type.String({ pattern: TASK_ID_PATTERN }),
  /** 0 for events about the task as a whole (submitted, cancel requested); 1.. for a run attempt. */
  attempt: Type.Integer({ minimum: 0, maximum: 1000 }),
  metadata: EventMetadata,
  data: Type.Unknown(),
});
export type RawEvent = Static<typeof EventEnvelope>;

type EventOf<T extends EventType> = Readonly<{
  id: string;
  type: T;
  version: number;
  occurredAt: string;
  taskId: string;
  attempt: number;
  metadata: EventMetadata;
  data: EventData<T>;
}>;
export type CodefleetEvent = { [T in EventType]: EventOf<T> }[EventType];
export type CodefleetEventOf<T extends EventType> = Extract<CodefleetEvent, { type: T }>;

/** Upcasters turn version N data into version N+1 data. None exist yet: every type is at v1. */
type Upcaster = (data: unknown) => unknown;
const upcasters: Partial<Record<EventType, Record<number, Upcaster>>> = {};

export function latestVersion(type: EventType): number {
  return Math.max(...Object.keys(EventCatalogue[type]).map(Number));
}

for (const type of Object.keys(EventCatalogue) as EventType[]) {
  const versions = EventCatalogue[type] as Record<number, TSchema>;
  if (versions[latestVersion(type)] !== LatestEventSchemas[type]) {
    throw new Error(`LatestEventSchemas['${type}'] is not the highest version in EventCatalogue`);
  }
}

export function isEventType(type: string): type is EventType {
  return Object.hasOwn(EventCatalogue, type);
}

const compiled = new Map<string, TypeCheck<TSchema>>();
function checker(key: string, schema: TSchema): TypeCheck<TSchema> {
  let check = compiled.get(key);
  if (!check) {
    check = TypeCompiler.Compile(schema);
    compiled.set(key, check);
  }
  return check;
}

function issuesOf(check: TypeCheck<TSchema>, value: unknown, prefix: string): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  for (const err of check.Errors(value)) {
    out.push({ path: `${prefix}${err.path}`, message: err.message });
    if (out.length >= 10) break;
  }
  return out;
}

/**
 * Validates a raw envelope at the boundary and returns the event in its latest shape.
 * Throws ValidationError with stable codes: `invalid_envelope`, `unknown_event_type`,
 * `unknown_event_version`, `invalid_event_data`.
 */
export function parseEvent(raw: unknown): CodefleetEvent {
  const envelopeCheck = checker("envelope", EventEnvelope);
  if (!envelopeCheck.Check(raw)) {
    throw new ValidationError("invalid_envelope", "event envelope is invalid", issuesOf(envelopeCheck, raw, ""));
  }
  const env = raw as RawEvent;
  if (!isEventType(env.type)) {
    throw new ValidationError("unknown_event_type", `unknown event type '${env.type}'`);
  }
  const versions = EventCatalogue[env.type] as Record<number, TSchema>;
  const schema = versions[env.version];
  if (!schema) {
    throw new ValidationError("unknown_event_version", `unknown version ${env.version} of '${env.type}'`);
  }
  const check = checker(`${env.type}@${env.version}`, schema);
  if (!check.Check(env.data)) {
    throw new ValidationError("invalid_event_data", `data of '${env.type}' v${env.version} is invalid`, issuesOf(check, env.data, "/data"));
  }
  let data = env.data;
  let version = env.version;
  const latest = latestVersion(env.type);
  while (version < latest) {
    const up = upcasters[env.type]?.[version];
    if (!up) throw new ValidationError("missing_upcaster", `no upcaster for '${env.type}' v${version}`);
    data = up(data);
    version++;
  }
  return { ...env, type: env.type, version, data } as CodefleetEvent;
}

export function validateEventData<T extends EventType>(type: T, data: unknown): asserts data is EventData<T> {
  const version = latestVersion(type);
  const schema = (EventCatalogue[type] as Record<number, TSchema>)[version] as TSchema;
  const check = checker(`${type}@${version}`, schema);
  if (!check.Check(data)) {
    throw new ValidationError("invalid_event_data", `data of '${type}' v${version} is invalid`, issuesOf(check, data, "/data"));
  }
}

export type NewEvent<T extends EventType> = {
  taskId: string;
  attempt?: number;
  data: EventData<T>;
  producer: string;
  id?: string;
  causationId?: string;
  correlationId?: string;
  now?: Date;
};

/** Builds a validated event of the latest version. Trace context is added by the bus on publish. */
export function createEvent<T extends EventType>(type: T, input: NewEvent<T>): CodefleetEventOf<T> {
  validateEventData(type, input.data);
  const metadata: EventMetadata = { producer: input.producer };
  if (input.causationId !== undefined) metadata.causationId = input.causationId;
  metadata.correlationId = input.correlationId ?? input.taskId;
  return {
    id: input.id ?? newEventId(),
    type,
    version: latestVersion(type),
    occurredAt: (input.now ?? new Date()).toISOString(),
    taskId: input.taskId,
    attempt: input.attempt ?? 0,
    metadata,
    data: input.data,
  } as unknown as CodefleetEventOf<T>;
}

/** Narrowing helper for handlers: `if (isEvent(e, "run.finished")) e.data.status`. */
export function isEvent<T extends EventType>(event: CodefleetEvent, type: T): event is CodefleetEventOf<T> {
  return event.type === type;
}

/** Log chunks travel on their own stream: high volume, bounded retention, not part of the event store. */
export const LogChunk = Type.Object({
  taskId: Type.String({ pattern: TASK_ID_PATTERN }),
  attempt: Type.Integer({ minimum: 1 }),
  /** Per-attempt sequence number of this chunk, from 1; lets readers order and de-duplicate. */
  seq: Type.Integer({ minimum: 1 }),
  /** A best-of-N candidate's output (its own sequence): absent for the attempt's own. */
  candidate: Type.Optional(CandidateNumber),
  phase: Type.Optional(Phase),
  stream: Type.Union([Type.Literal("stdout"), Type.Literal("stderr"), Type.Literal("system")]),
  text: Type.String({ maxLength: 65_536 }),
  /** True when output was dropped before this chunk to respect the per-task log cap. */
  truncated: Type.Optional(Type.Boolean()),
  at: IsoTime,
});
export type LogChunk = Static<typeof LogChunk>;

export function parseLogChunk(raw: unknown): LogChunk {
  const check = checker("log.chunk", LogChunk);
  if (!check.Check(raw)) throw new ValidationError("invalid_log_chunk", "log chunk is invalid", issuesOf(check, raw, ""));
  return raw as LogChunk;
}

/** Validates a task spec (a submission's body) outside the HTTP API, e.g. in the CLI before sending it. */
export function parseTaskSpec(raw: unknown): TaskSpec {
  const check = checker("task-spec", TaskSpec);
  // checked as the API checks it, with the schema's defaults filled in; returned as given
  const withDefaults = Value.Default(TaskSpec, structuredClone(raw));
  if (!check.Check(withDefaults))
    throw new ValidationError("invalid_task_spec", "the task spec is invalid", issuesOf(check, withDefaults, ""));
  return raw as TaskSpec;
}

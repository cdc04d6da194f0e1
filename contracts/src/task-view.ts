import type { EventData } from "./events.js";
import type { PoolStatus } from "./rpc.js";
import type { Phase, TaskSpec, TaskStatus } from "./task-spec.js";

/**
 * The task's projection as the registry's HTTP API returns it (`GET /v1/tasks/{id}`): the
 * contract between the registry and its clients (the CLI, dispatchers, dashboards).
 */

export type PhaseView = {
  phase: Phase;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  outcome?: EventData<"phase.finished">["outcome"];
  exitCode?: number;
  detail?: string;
  facts?: Record<string, string | number | boolean>;
};

export type LlmUsage = {
  calls: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  /** Calls whose model had no price. */
  unpricedCalls: number;
  byModel: Record<string, { calls: number; promptTokens: number; completionTokens: number; costUsd: number }>;
};

export type ArtifactRef = EventData<"artifact.stored"> & { attempt: number; storedAt: string };

export type AttemptView = {
  attempt: number;
  runnerId: string;
  agentKind: string;
  startedAt: string;
  finishedAt?: string;
  status?: TaskStatus;
  reason?: string;
  slotId?: string;
  /** The turn this attempt ran (1: the submission; 2…: its follow-ups). */
  turn?: number;
  /** The attempt's trace: attempt 1 continues the submission's trace, later attempts start their own, linked to the one before. */
  traceId?: string;
  phases: PhaseView[];
};

/** One turn of a task: the submission (turn 1) or a follow-up on the same branch. */
export type TurnView = {
  turn: number;
  /** The turn's prompt; turn 1's is the spec's. */
  prompt: string;
  agentKind: TaskSpec["agent"]["kind"] | "unknown";
  requestedAt: string;
  /** The API token that asked (turn 1: the submitter). */
  requestedBy?: string;
  /** Its first attempt's number (attempts are numbered across the task). */
  firstAttempt: number;
  /** The commit it started from (a follow-up: the previous turn's push). */
  fromCommit?: string;
  /** Its end, as the task's status was when it ended; absent while it runs. */
  status?: TaskStatus;
  finishedAt?: string;
  /** The commit it pushed (or made, when the task does not push). */
  commitSha?: string;
  reasonCode?: string;
};

/** One candidate of a best-of-N attempt (`spec.candidates`), as the test oracle scored it. */
export type CandidateView = Omit<EventData<"candidate.selected">["candidates"][number], "status"> & {
  /** `running` until the oracle scored it. */
  status: EventData<"candidate.selected">["candidates"][number]["status"] | "running";
  attempt: number;
  /** Its phases (fetch through test): the winner's rebase and push are the task's own. */
  phases: PhaseView[];
  winner: boolean;
};

export type TaskView = {
  id: string;
  status: TaskStatus;
  title: string;
  /** Repository credentials are never shown (a URL's user:password is removed). */
  repo: { url: string; ref?: string };
  /** `unknown` only for a rejected submission whose agent could not be read. */
  agentKind: TaskSpec["agent"]["kind"] | "unknown";
  labels: Record<string, string>;
  /** The full spec: only in a single task's view (`GET /v1/tasks/{id}`), never in lists, nor for a rejected submission. */
  spec?: TaskSpec;
  submittedVia: "http" | "bus";
  submittedAt: string;
  /** The tenant the task belongs to (`default` for tasks from before tenancy and bus submissions). */
  tenant: string;
  /** The name of the API token that submitted it (never the token); absent for bus submissions. */
  submittedBy?: string;
  /** The name of the API token that asked to cancel it. */
  cancelRequestedBy?: string;
  /** Why a submission was rejected (status `rejected`): a stable code, a reason and the validation errors. */
  rejection?: { code: string; reason: string; errors: { path: string; message: string }[] };
  startedAt?: string;
  finishedAt?: string;
  /** The current (latest) turn: 1 until a follow-up is asked for. The status is this turn's. */
  turn: number;
  /** Every turn, in order (views projected before follow-ups existed have none until rebuilt). */
  turns: TurnView[];
  /** Current (latest) attempt; 0 while queued. */
  attempt: number;
  currentPhase?: Phase;
  runnerId?: string;
  phases: PhaseView[];
  attempts: AttemptView[];
  branch: string;
  commitSha?: string;
  failureReason?: string;
  reasonCode?: string;
  cancelRequested: boolean;
  artifacts: ArtifactRef[];
  /** The latest best-of-N attempt's candidates (absent for a task with one candidate). */
  candidates?: CandidateView[];
  /** The pull (merge) request the runner opened or updated for the task's branch (`spec.pullRequest`). */
  pullRequest?: { url: string; number: number };
  /** Model calls through the runner's LLM gateway, summed over every attempt (absent: none made). */
  llmUsage?: LlmUsage;
  /** The latest attempt's trace (the submission's while queued). */
  traceId?: string;
  /** Version of the task's event stream this view reflects. */
  version: number;
  anomalies: number;
};

/** A task in a list: the view without its spec (a spec can be megabytes). */
export type TaskSummary = Omit<TaskView, "spec">;

/** `GET /v1/tasks`: a page of summaries, newest first; `nextCursor` is absent on the last page. */
export type TaskPage = { items: TaskSummary[]; nextCursor?: string };

/** `GET /v1/tasks/{id}/events`: the raw history, in order. */
export type StoredEventView = {
  position: string;
  streamVersion: number;
  id: string;
  type: string;
  version: number;
  attempt: number | null;
  occurredAt: string;
  recordedAt: string;
  data: unknown;
  metadata: unknown;
  anomaly?: string;
};

/** `GET /v1/tasks/{id}/artifacts`: the task's artifacts with where to download them. */
export type ArtifactLink = ArtifactRef & { downloadUrl: string };

/** `GET /v1/fleet`: the fleet at a glance, its task numbers the token's tenant's. */
export type FleetView = {
  generatedAt: string;
  /** The tenant the task numbers are about; `*` for a token of every tenant. */
  tenant: string;
  /** The tenant's tasks waiting for a runner and running now. */
  tasks: { queued: number; running: number };
  /**
   * Runners that started an attempt (of any tenant) within the last hour or run one now; `running`
   * counts the tenant's tasks on each.
   */
  runners: {
    runnerId: string;
    running: number;
    lastStartedAt?: string;
    /** From the runner's heartbeat, when it is live: its capacity, attempts running now (any tenant's), warm containers. */
    concurrency?: number;
    active?: number;
    warm?: { ready: number; filling: number };
    lastSeenAt?: string;
  }[];
  /** Live runners' capacity and attempts running now, summed (null: no runner heartbeat heard). */
  capacity: { concurrency: number; active: number; warmReady: number } | null;
  /**
   * The runners' queue (the tenant's lane, or every lane for a token of every tenant): admitted tasks
   * no runner has taken yet, and those a runner holds (delivered, not yet acked). Null when the
   * queue's stream does not exist yet.
   */
  workQueue: { pending: number; inProgress: number; lanes: number } | null;
  /** The tenant's limit of running tasks (0: none); null for a token of every tenant. */
  maxRunning: number | null;
  /** repo-pool's slots and mirrors (fleet-wide: every host's summed); null when no repo-pool answers. */
  warmPool: PoolStatus | null;
  /**
   * The runner hosts (`CODEFLEET_HOST`) live runners say they are on, each with its own repo-pool's
   * status (null: it did not answer) and its live runners; empty when hosts are not named.
   */
  hosts: { host: string; pool: PoolStatus | null; runners: string[] }[];
  /** The tenant's workspace allocations of the last hour, and how many got a warm slot. */
  allocations: { total: number; warm: number };
  /** The tenant's submissions and finished tasks per minute over the last hour, oldest first. */
  throughput: {
    bucketSeconds: number;
    since: string;
    buckets: { start: string; submitted: number; finished: Partial<Record<TaskStatus, number>> }[];
  };
};

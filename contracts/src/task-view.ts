import type { EventData } from "./events.js";
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
  /** The attempt's trace: attempt 1 continues the submission's trace, later attempts start their own, linked to the one before. */
  traceId?: string;
  phases: PhaseView[];
};

export type TaskView = {
  id: string;
  status: TaskStatus;
  title: string;
  repo: { url: string; ref?: string };
  agentKind: TaskSpec["agent"]["kind"];
  labels: Record<string, string>;
  spec: TaskSpec;
  submittedVia: "http" | "bus";
  submittedAt: string;
  startedAt?: string;
  finishedAt?: string;
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
  /** The latest attempt's trace (the submission's while queued). */
  traceId?: string;
  /** Version of the task's event stream this view reflects. */
  version: number;
  anomalies: number;
};

/** `GET /v1/tasks`: a page of views, newest first; `nextCursor` is absent on the last page. */
export type TaskPage = { items: TaskView[]; nextCursor?: string };

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

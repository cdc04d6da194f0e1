import type { AllocateResult, EventData, Phase, ReasonCode, ResolvedTaskSpec } from "@codefleet/contracts";
import type { SecretMasker } from "@codefleet/platform/runtime";
import type { GitCredentials } from "@codefleet/repo-pool/git";
import type { AgentImages, AgentResult } from "../agents/agent.js";
import type { AgentRegistry } from "../agents/registry.js";
import type { Turn } from "../attempt/turns.js";
import type { RunHandle, WorkspaceReader } from "../execution/driver.js";
import type { LlmGateway } from "../gateway/index.js";
import type { LogStream } from "../logs/log-stream.js";
import type { PullRequestServices } from "../pull-requests/open.js";
import type { TestOutcome } from "./test.js";

export type PhaseOutcome = EventData<"phase.finished">["outcome"];
export type Facts = Record<string, string | number | boolean>;

/** How an attempt ends. */
export type AttemptEnd = {
  status: EventData<"run.finished">["status"];
  /** A thrown error's code when it is a `ReasonCode`, else `internal_error` (`reasonOf`). */
  reasonCode?: ReasonCode;
  /** A newer attempt owns the task: this one neither pushes nor finishes it. */
  superseded?: true;
  reason?: string;
  commitSha?: string;
};

/** What a phase reports: its outcome for phase.finished, and `end` when the attempt stops here. */
export type PhaseReport = {
  outcome: PhaseOutcome;
  detail?: string;
  exitCode?: number;
  facts?: Facts;
  end?: AttemptEnd;
};

export const stopWith = (reasonCode: ReasonCode, reason: string, status: AttemptEnd["status"] = "failed"): AttemptEnd => ({
  status,
  reasonCode,
  reason,
});

/** A model key the runner resolved: its secret's name and value. */
export type ModelKey = { name: string; value: string };

/** What the attempt learns as its phases run: the record the artifacts and the final status come from. */
export type AttemptRecord = {
  baseSha: string;
  agentResult?: AgentResult;
  testOutcome?: TestOutcome;
  /** The attempt's commit (pushed or not) and the reader that made it: the diff comes from them. */
  head?: { sha: string; workspace: WorkspaceReader };
  pushedSha?: string;
  /**
   * The base branch moved while the task ran (the rebase phase found it, and ran the tests again
   * on the rebased tree when the task has tests): push takes the change from `from` onto `onto`,
   * as it is when the workspace already holds `onto`'s changes (`applied`), else merged onto it.
   */
  rebase?: { from: string; onto: string; branch: string; applied: boolean };
  /** The model calls of the attempt through the gateway, masked (the llm-exchanges.jsonl artifact). */
  llmExchanges?: string;
};

/** Everything a phase may use. Phases hold no state of their own: they read and fill `record`. */
export type PhaseContext = {
  taskId: string;
  attempt: number;
  /** The turn the attempt belongs to (1: the submission; a follow-up starts at its previous turn's commit). */
  turn: Turn;
  spec: ResolvedTaskSpec;
  slot: AllocateResult;
  run: RunHandle;
  /** The container's workspace already has the agent's git (a warm container made it before the task came). */
  agentGitReady: boolean;
  /** Environment of the task's commands: its env, its secrets, codefleet's variables. */
  env: Record<string, string>;
  secrets: Record<string, string>;
  /** The agent's model key and the gateway that holds it for the agent: present when the runner has a key for the agent. */
  model?: { key?: ModelKey; gateway: LlmGateway; tenant: string; recordCall(data: EventData<"llm.called">): void };
  log: LogStream;
  masker: SecretMasker;
  /** Aborted on cancel, timeout, lost lease or full disk. */
  signal: AbortSignal;
  /** Milliseconds left of the task's time limit. */
  remainingMs(): number;
  /** Bytes in use when the workspace is over its disk limit (asked of repo-pool), else undefined. */
  workspaceFull(): Promise<number | undefined>;
  record: AttemptRecord;
  agents: AgentRegistry;
  images: AgentImages;
  settings: {
    agentIdleTimeoutMs: number;
    commitAuthor: { name: string; email: string };
    defaults: { openaiBaseUrl: string; anthropicBaseUrl?: string };
  };
  /** Removes the task's container: nothing of the agent may run while the runner reads its tree. */
  removeContainer(): Promise<void>;
  /** Opens the slot's tree as data, into the attempt's scratch store. */
  openWorkspace(): Promise<WorkspaceReader>;
  credentialsFor(remoteUrl: string): GitCredentials | undefined;
  /** The environment cache bound to this attempt's slot and image, when the runner has one. */
  environmentCache?: {
    /** The key of this task's setup: its lockfiles' content at the base commit and everything else it depends on. */
    key(lockfiles: readonly string[]): Promise<string>;
    restore(key: string, paths: readonly string[]): Promise<{ hit: boolean; bytes?: number }>;
    save(key: string, paths: readonly string[]): Promise<{ saved: boolean; bytes?: number; detail?: string }>;
  };
  /** Advances the attempt's fencing claim to `pushing`; false when a newer attempt owns the task. */
  fenceForPush(): Promise<boolean>;
  /** Opens the task's pull request after its push (`spec.pullRequest`): the token and the event. Absent: none is opened. */
  pullRequests?: PullRequestServices;
};

/** One step of fetch → setup → implement → test → rebase → push, with its own failure classification. */
export interface AttemptPhase {
  readonly name: Phase;
  /** Whether the phase runs for this task at all (no test phase without a test command). */
  appliesTo?(spec: ResolvedTaskSpec): boolean;
  run(ctx: PhaseContext): Promise<PhaseReport>;
}

/** Thrown by a phase when a newer attempt owns the task: the attempt ends without a status of its own. */
export class Superseded extends Error {
  constructor() {
    super("a newer attempt owns this task");
    this.name = "Superseded";
  }
}

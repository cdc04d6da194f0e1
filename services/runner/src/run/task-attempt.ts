import { chown, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import type { ArtifactStoreClient } from "@codefleet/artifact-store/client";
import type {
  AllocateResult,
  ArtifactKind,
  CodefleetEventOf,
  EventData,
  Phase,
  ResolvedTaskSpec,
  SecurityPolicy,
} from "@codefleet/contracts";
import {
  agentKeyProblem,
  CodefleetError,
  checkRepoUrl,
  createEvent,
  errorMessage,
  isCodefleetError,
  resolveTaskSpec,
  slotLayout,
} from "@codefleet/contracts";
import { type Bus, contextFromFields } from "@codefleet/contracts/bus";
import { findSecret, type Logger, type SecretMasker, StreamMasker, secretVariants } from "@codefleet/contracts/runtime";
import type { RepoPoolClient } from "@codefleet/repo-pool/client";
import { type GitRunner, parseRemoteUrl, type RepoAccess } from "@codefleet/repo-pool/git";
import { type Context, context, type Link, SpanStatusCode, trace } from "@opentelemetry/api";
import type { AgentDriver, AgentResult } from "../agents/agent.js";
import type { ExecutionDriver, RunHandle } from "../execution/driver.js";
import { LogStream } from "../logs/log-stream.js";
import { runTestPhase, type TestOutcome } from "../phases/test-phase.js";
import type { SecretResolver } from "../secrets.js";
import { setUpAgentGit } from "../workspace/agent-git.js";
import { WorkspaceGit } from "../workspace/workspace-git.js";
import type { ClaimStore } from "./claims.js";
import { platformRetry } from "./platform-retry.js";

const tracer = trace.getTracer("@codefleet/runner");
const PRODUCER = "runner";

export type RunnerSettings = {
  runnerId: string;
  images: { default: string; opencode: string; claudeCode: string };
  network: "bridge" | "none";
  extraHosts: string[];
  pidsLimit: number;
  leaseTtlMs: number;
  heartbeatMs: number;
  noCapacityRetryMs: number;
  agentIdleTimeoutMs: number;
  maxLogBytes: number;
  /** Cap of the stored diff and transcript artifacts (the secret scan still reads every byte). */
  maxArtifactBytes: number;
  commitAuthor: { name: string; email: string };
  /** The operator's policy: repository URLs, and which endpoints each secret may be sent to. */
  security: SecurityPolicy;
  /** Owner of the attempt's scratch dir when the runner runs as root (its git runs as this uid). */
  gitOwner?: { uid: number; gid: number };
  /** Label value on every container and network of the deployment (stack:down removes by it). */
  deployment?: string;
  /** How long a running attempt rides out the platform being away (bus publishes, fencing, uploads). */
  platformRetryMs: number;
  defaults: { openaiBaseUrl: string; anthropicBaseUrl?: string };
};

export type AttemptDeps = {
  bus: Bus;
  driver: ExecutionDriver;
  repoPool: RepoPoolClient;
  artifacts: ArtifactStoreClient;
  claims: ClaimStore;
  secrets: SecretResolver;
  /** Masks the runner's own secrets; per-task secrets are added on top. */
  masker: SecretMasker;
  /** Hardened git, never as root: reads the agent's tree as data, writes only the attempt's scratch dir. */
  git: GitRunner;
  /** Repository URL policy and per-host git credentials. */
  repoAccess: RepoAccess;
  agents: Record<string, AgentDriver>;
  log: Logger;
  settings: RunnerSettings;
  metrics?: { phaseDuration(phase: Phase, outcome: string, ms: number): void; finished(status: string): void };
};

export type AttemptInput = {
  event: CodefleetEventOf<"task.submitted">;
  attempt: number;
  /** Keeps the JetStream message alive while the attempt runs. */
  working: () => void;
  /** Aborted when the task's cancel is requested. */
  cancel: AbortSignal;
  traceContext: Context;
};

type Final = { status: EventData<"run.finished">["status"]; reason?: string; reasonCode?: string; commitSha?: string };

class AttemptFailure extends CodefleetError {
  override readonly name = "AttemptFailure";
}

const fail = (reasonCode: string, reason: string) => new AttemptFailure(reasonCode, reason, { retry: { kind: "never" } });

/** What happened to a delivery of task.submitted. */
export type AttemptOutcome = "ran" | "skipped_finished" | "skipped_canceled" | "skipped_superseded";

async function lastEventOf(
  bus: Bus,
  taskId: string,
  type: "run.finished" | "run.started" | "task.cancel_requested",
): Promise<unknown | undefined> {
  try {
    const m = await bus.jsm.streams.getMessage(bus.topology.streams.events.name, {
      last_by_subj: bus.topology.subjects.event(taskId, type),
    });
    return m ? m.json() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs one attempt of a task: claim → run.started → slot → container → fetch → implement → test →
 * push → artifacts → run.finished, with heartbeats, cancel, timeout and clean-up whatever happens.
 */
export async function runAttempt(deps: AttemptDeps, input: AttemptInput): Promise<AttemptOutcome> {
  const { bus, settings, log: baseLog } = deps;
  const taskId = input.event.taskId;
  const attempt = input.attempt;
  if (await lastEventOf(bus, taskId, "run.finished")) return "skipped_finished";
  if (await lastEventOf(bus, taskId, "task.cancel_requested")) return "skipped_canceled";
  const claimed = await deps.claims.claim(taskId, attempt, settings.runnerId);
  if (claimed === undefined) return "skipped_superseded";
  let revision = claimed;

  const log = baseLog.child({ taskId, attempt });
  const spec = resolveTaskSpec(input.event.data.spec, taskId);
  const started = Date.now();
  const abort = new AbortController();
  let abortReason: Final | undefined;
  const stop = (f: Final) => {
    if (!abortReason) abortReason = f;
    abort.abort();
  };
  const onCancel = () => stop({ status: "canceled", reason: "cancel requested", reasonCode: "canceled" });
  input.cancel.addEventListener("abort", onCancel, { once: true });
  if (input.cancel.aborted) onCancel();
  const timeout = setTimeout(
    () => stop({ status: "timed_out", reason: `task exceeded its ${spec.limits.timeoutSeconds} s limit`, reasonCode: "task_timeout" }),
    spec.limits.timeoutSeconds * 1000,
  );

  const removed = await deps.driver.removeStale(taskId).catch(() => 0);
  if (removed) log.info({ removed }, "removed containers of earlier attempts");

  // Attempt 1 continues the submission's trace. A later attempt (a redelivery after a runner
  // died) is its own trace, linked to the pickup that started it and to the attempt before.
  const links: Link[] = [];
  if (attempt > 1) {
    const pickup = trace.getSpanContext(input.traceContext);
    if (pickup) links.push({ context: pickup, attributes: { "codefleet.link": "pickup" } });
    const before = (await lastEventOf(bus, taskId, "run.started")) as { metadata?: { traceparent?: string } } | undefined;
    const previous = trace.getSpanContext(contextFromFields({ traceparent: before?.metadata?.traceparent }));
    if (previous) links.push({ context: previous, attributes: { "codefleet.link": "previous attempt" } });
  }
  const root = await tracer.startActiveSpan(
    `task attempt ${attempt}`,
    {
      root: attempt > 1,
      links,
      attributes: {
        "codefleet.task_id": taskId,
        "codefleet.attempt": attempt,
        "codefleet.repo": spec.repo.url,
        "codefleet.agent_kind": spec.agent.kind,
        "codefleet.runner_id": settings.runnerId,
      },
    },
    input.traceContext,
    (span) => span,
  );
  const ctx = trace.setSpan(input.traceContext, root);
  /** Platform calls of a running attempt ride out a hiccup (NATS restarting) within platformRetryMs. */
  const durably = <T>(what: string, f: () => Promise<T>) =>
    platformRetry(what, f, {
      withinMs: settings.platformRetryMs,
      onRetry: (w, error, delayMs) => log.warn({ error, retryInMs: delayMs }, `${w} failed; retrying`),
    });
  const publish = (e: Parameters<Bus["publish"]>[0]) => durably(`publish ${e.type}`, () => bus.publish(e, { ctx }));
  const event = <T extends Parameters<typeof createEvent>[0]>(type: T, data: EventData<T>) =>
    createEvent(type, { taskId, attempt, producer: PRODUCER, data, causationId: input.event.id, correlationId: taskId } as never) as never;

  let secretValues: Record<string, string> = {};
  const workDir = await mkdtemp(join(tmpdir(), `codefleet-${taskId}-`));
  // the attempt's git (never root) writes its scratch index and objects here
  if (settings.gitOwner && process.getuid?.() === 0) await chown(workDir, settings.gitOwner.uid, settings.gitOwner.gid);
  let masker = deps.masker;
  const logStream = new LogStream({
    taskId,
    attempt,
    masker,
    sink: (chunk) => bus.publishLog(chunk, { ctx }).then(() => undefined),
    filePath: join(workDir, "task.log"),
    maxBytes: settings.maxLogBytes,
    onSinkError: (err) => log.warn({ error: errorMessage(err) }, "live log chunk not published"),
    onFileError: (err) => log.error({ error: errorMessage(err) }, "the task's log file could not be written: the stored log is cut there"),
  });

  let slot: AllocateResult | undefined;
  let run: RunHandle | undefined;
  let baseSha: string | undefined;
  let final: Final = { status: "failed", reason: "the attempt did not finish", reasonCode: "internal_error" };
  let agentResult: AgentResult | undefined;
  let testOutcome: TestOutcome | undefined;
  let pushedSha: string | undefined;
  /** The commit of the attempt's change (pushed or not), and the git that made it: the diff comes from them. */
  let headSha: string | undefined;
  let workspace: WorkspaceGit | undefined;
  const heartbeat = setInterval(() => {
    input.working();
    if (slot) {
      deps.repoPool
        .heartbeat({ slotId: slot.slotId, taskId, attempt, leaseTtlMs: settings.leaseTtlMs }, { ctx })
        .then((hb) => {
          if (hb.overQuota) {
            stop({
              status: "failed",
              reason: `the workspace grew past its disk limit (${hb.diskBytes} bytes)`,
              reasonCode: "disk_limit",
            });
            void run?.remove();
          }
        })
        .catch((err) => {
          if (isCodefleetError(err) && err.code === "lease_lost") {
            // The slot may already be someone else's: stop writing into it at once.
            stop({ status: "failed", reason: "the workspace slot's lease was lost", reasonCode: "lease_lost" });
            void run?.remove();
          }
          log.warn({ error: errorMessage(err) }, "slot heartbeat failed");
        });
    }
  }, settings.heartbeatMs);

  /** A failure in a workspace that is full is the task filling its disk (the limit is enforced by repo-pool). */
  const failIfDiskFull = async () => {
    if (!slot) return;
    const hb = await deps.repoPool
      .heartbeat({ slotId: slot.slotId, taskId, attempt, leaseTtlMs: settings.leaseTtlMs }, { ctx })
      .catch(() => undefined);
    if (hb?.overQuota) throw fail("disk_limit", `the workspace is full: the task wrote past its disk limit (${hb.diskBytes} bytes in use)`);
  };

  type PhaseResult<T> = {
    outcome: EventData<"phase.finished">["outcome"];
    detail?: string;
    exitCode?: number;
    facts?: Record<string, string | number | boolean>;
    value: T;
  };
  const phase = async <T>(name: Phase, f: (signal: AbortSignal) => Promise<PhaseResult<T>>): Promise<T> => {
    if (abort.signal.aborted) throw fail(abortReason?.reasonCode ?? "aborted", abortReason?.reason ?? "aborted");
    logStream.phase = name;
    logStream.system(`phase ${name} started`);
    await publish(event("phase.started", { phase: name }));
    const t0 = Date.now();
    return tracer.startActiveSpan(
      `phase ${name}`,
      { attributes: { "codefleet.phase": name, "codefleet.task_id": taskId, "codefleet.attempt": attempt } },
      ctx,
      async (span) => {
        let outcome: EventData<"phase.finished">["outcome"] = "failed";
        let detail: string | undefined;
        let exitCode: number | undefined;
        let facts: Record<string, string | number | boolean> | undefined;
        try {
          const r = await f(abort.signal);
          ({ outcome, detail, exitCode, facts } = r);
          return r.value;
        } catch (err) {
          outcome = abort.signal.aborted
            ? abortReason?.status === "timed_out"
              ? "timed_out"
              : abortReason?.status === "canceled"
                ? "canceled"
                : "failed"
            : "failed";
          detail = masker.mask(errorMessage(err));
          throw err;
        } finally {
          const durationMs = Date.now() - t0;
          span.setAttribute("codefleet.outcome", outcome);
          if (exitCode !== undefined) span.setAttribute("process.exit.code", exitCode);
          if (outcome === "failed" || outcome === "timed_out") span.setStatus({ code: SpanStatusCode.ERROR, message: detail ?? outcome });
          span.end();
          deps.metrics?.phaseDuration(name, outcome, durationMs);
          logStream.system(`phase ${name} ${outcome}${detail ? `: ${detail}` : ""} (${durationMs} ms)`);
          await publish(
            event("phase.finished", {
              phase: name,
              outcome,
              durationMs,
              ...(exitCode === undefined ? {} : { exitCode }),
              ...(detail ? { detail: masker.mask(detail).slice(0, 4000) } : {}),
              ...(facts ? { facts } : {}),
            }),
          ).catch((err) => log.warn({ error: errorMessage(err) }, "phase.finished not published"));
        }
      },
    );
  };

  try {
    // not retried: with the bus away at the very start, the delivery is simply tried again later
    await bus.publish(event("run.started", { runnerId: settings.runnerId, agentKind: spec.agent.kind, image: imageFor(spec, settings) }), {
      ctx,
    });
    refuseByPolicy(spec, settings.security);
    secretValues = await resolveSecrets(deps, spec);
    masker = deps.masker.with(Object.values(secretValues));
    logStream.masker = masker;
    logStream.system(`runner ${settings.runnerId} took attempt ${attempt} of task ${taskId}`);

    slot = await allocateSlot(deps, spec, taskId, attempt, abort.signal, ctx, input.working);
    logStream.system(`workspace slot ${slot.slotId} at ${slot.commitSha.slice(0, 12)} (${slot.warm ? "warm" : "new"})`);
    const local = slotLayout(slot.path);
    const host = slotLayout(slot.hostPath);
    // dockerode calls are traced under the active span: this attempt's
    run = await context.with(ctx, () =>
      deps.driver.createRun({
        taskId,
        attempt,
        runnerId: settings.runnerId,
        ...(settings.deployment ? { deployment: settings.deployment } : {}),
        image: imageFor(spec, settings),
        workspace: { tree: host.tree, baseObjects: join(host.gitDir, "objects"), baseIndex: host.index },
        memoryMb: spec.limits.memoryMb,
        cpus: spec.limits.cpus,
        pidsLimit: settings.pidsLimit,
        network: networkFor(spec, settings),
        extraHosts: settings.extraHosts,
        env: { CODEFLEET_TASK_ID: taskId, CODEFLEET_ATTEMPT: String(attempt) },
      }),
    );
    const container = run;
    root.setAttribute("container.id", container.id);
    const execEnv = {
      ...(spec.env ?? {}),
      ...secretValues,
      CODEFLEET_TASK_ID: taskId,
      GIT_AUTHOR_NAME: settings.commitAuthor.name,
      GIT_AUTHOR_EMAIL: settings.commitAuthor.email,
      GIT_COMMITTER_NAME: settings.commitAuthor.name,
      GIT_COMMITTER_EMAIL: settings.commitAuthor.email,
    };

    await phase("fetch", async () => {
      baseSha = slot?.commitSha as string;
      // The agent's own git: a disposable repository in the container, never read by the runner.
      const agentGit = await setUpAgentGit(container, { branch: spec.push.branch, baseSha, signal: abort.signal });
      if (!agentGit.ok) logStream.system(`no git for the agent in this image (${agentGit.detail}); the tree is there without it`);
      return {
        outcome: "succeeded",
        detail: `branch ${spec.push.branch} at ${baseSha.slice(0, 12)}`,
        facts: { baseSha, branch: spec.push.branch, warm: slot?.warm === true },
        value: undefined,
      };
    });

    agentResult = await phase("implement", async (signal) => {
      const driver = deps.agents[spec.agent.kind];
      if (!driver) throw fail("agent_unsupported", `agent kind '${spec.agent.kind}' is not available on this runner`);
      const budget = Math.max(1000, spec.limits.timeoutSeconds * 1000 - (Date.now() - started));
      const r = await driver.run(spec.agent as never, {
        taskId,
        attempt,
        spec,
        run: container,
        env: execEnv,
        secrets: secretValues,
        log: logStream,
        masker,
        signal,
        timeoutMs: budget,
        idleTimeoutMs: settings.agentIdleTimeoutMs,
        defaults: settings.defaults,
      });
      const facts: Record<string, number | string> = {};
      if (r.usage?.inputTokens !== undefined) facts.inputTokens = r.usage.inputTokens;
      if (r.usage?.outputTokens !== undefined) facts.outputTokens = r.usage.outputTokens;
      if (r.usage?.costUsd !== undefined) facts.costUsd = r.usage.costUsd;
      if (r.usage?.turns !== undefined) facts.turns = r.usage.turns;
      if (r.usage?.sessionId !== undefined) facts.sessionId = r.usage.sessionId;
      const outcome = r.canceled ? "canceled" : r.timedOut || r.idleTimedOut ? "timed_out" : r.exitCode === 0 ? "succeeded" : "failed";
      return { outcome, exitCode: r.exitCode, ...(r.summary ? { detail: r.summary } : {}), facts, value: r };
    });
    if (abort.signal.aborted) throw fail(abortReason?.reasonCode ?? "aborted", abortReason?.reason ?? "aborted");
    if (agentResult.exitCode !== 0) {
      await failIfDiskFull();
      const st = await container.state();
      if (st.oomKilled || agentResult.exitCode === 137) {
        if (st.oomKilled || !agentResult.timedOut)
          throw fail("oom_killed", `the agent was killed for exceeding ${spec.limits.memoryMb} MB of memory`);
      }
      if (agentResult.idleTimedOut)
        throw fail("agent_stalled", `the agent printed nothing for ${Math.round(settings.agentIdleTimeoutMs / 1000)} s and was stopped`);
      if (agentResult.timedOut) stop({ status: "timed_out", reason: "the agent ran out of time", reasonCode: "task_timeout" });
      throw fail("agent_failed", `the agent failed: ${agentResult.summary ?? `exit code ${agentResult.exitCode}`}`);
    }

    if (spec.test) {
      const test = spec.test;
      testOutcome = await phase("test", async (signal) => {
        const budget = Math.max(1000, spec.limits.timeoutSeconds * 1000 - (Date.now() - started));
        const r = await runTestPhase(test, { run: container, env: execEnv, log: logStream, signal, timeoutMs: budget });
        const facts: Record<string, number> = r.counts ? { ...r.counts } : {};
        return { outcome: r.outcome, detail: r.detail, ...(r.exitCode === undefined ? {} : { exitCode: r.exitCode }), facts, value: r };
      });
      if (testOutcome.outcome !== "succeeded") {
        await failIfDiskFull();
        const st = await container.state();
        if (st.oomKilled) throw fail("oom_killed", `the tests were killed for exceeding ${spec.limits.memoryMb} MB of memory`);
        if (testOutcome.outcome === "timed_out")
          stop({ status: "timed_out", reason: "the tests ran out of time", reasonCode: "test_timeout" });
        throw fail("test_failed", testOutcome.detail);
      }
    }

    await phase("push", async (): Promise<PhaseResult<undefined>> => {
      // Nothing of the agent may run while the runner reads its tree: the container goes first.
      await context.with(ctx, () => container.remove());
      const ws = await WorkspaceGit.open(deps.git, local, workDir, settings.gitOwner);
      workspace = ws;
      const staged = await ws.stage();
      for (const s of staged.skipped.slice(0, 20)) logStream.system(`not committed: ${s.path} (${s.why})`);
      const message = spec.push.commitMessage ?? `${spec.title}\n\nCodefleet-Task: ${taskId}\nCodefleet-Attempt: ${attempt}\n`;
      const withTrailer = message.includes("Codefleet-Task:") ? message : `${message.trimEnd()}\n\nCodefleet-Task: ${taskId}\n`;
      const commit = await ws.commit(withTrailer, settings.commitAuthor, baseSha as string);
      if (!commit.changed) return { outcome: "skipped", detail: "nothing changed", value: undefined };
      pushedSha = commit.sha;
      headSha = commit.sha;
      const leaked = await findSecretInCommit(ws, baseSha as string, commit.sha, secretValues);
      if (leaked) throw fail("secret_in_diff", `the change contains the value of secret ${leaked}: not pushed`);
      if (!spec.push.enabled)
        return { outcome: "skipped", detail: "push disabled for this task", facts: { commitSha: commit.sha }, value: undefined };
      const remoteUrl = slot?.remoteUrl as string;
      const credentials = deps.repoAccess.credentialsFor(parseRemoteUrl(remoteUrl));
      // Exactly one push per task: a previous attempt that pushed and died before finishing counts.
      const remote = await ws.remoteBranch(remoteUrl, spec.push.branch, credentials);
      if (remote) {
        await ws.fetchBranch(remoteUrl, spec.push.branch, credentials).catch(() => undefined);
        const msg = await ws.commitMessage(remote).catch(() => "");
        if (msg.includes(`Codefleet-Task: ${taskId}`)) {
          pushedSha = remote;
          return {
            outcome: "skipped",
            detail: `already pushed by an earlier attempt (${remote.slice(0, 12)})`,
            facts: { commitSha: remote, branch: spec.push.branch, alreadyPushed: true },
            value: undefined,
          };
        }
        throw fail("push_rejected", `branch ${spec.push.branch} already exists on the remote with other work`);
      }
      const fence = await durably("advance the claim to pushing", () =>
        deps.claims.advance(taskId, attempt, settings.runnerId, revision, "pushing"),
      );
      if (fence === undefined) throw new Superseded();
      revision = fence;
      try {
        await ws.push(remoteUrl, commit.sha, spec.push.branch, credentials);
      } catch (err) {
        throw fail("push_rejected", `push to ${spec.push.branch} was rejected: ${masker.mask(errorMessage(err))}`);
      }
      return {
        outcome: "succeeded",
        detail: `pushed ${commit.sha.slice(0, 12)} to ${spec.push.branch}`,
        facts: { commitSha: commit.sha, branch: spec.push.branch },
        value: undefined,
      };
    });
    final = { status: "succeeded", ...(pushedSha ? { commitSha: pushedSha } : {}) };
  } catch (err) {
    if (err instanceof Superseded) {
      log.warn("attempt superseded by a newer one: not pushing, not finishing");
      final = { status: "failed", reasonCode: "superseded" };
    } else if (abortReason) final = abortReason;
    else if (isCodefleetError(err)) final = { status: "failed", reason: masker.mask(err.message), reasonCode: err.code };
    else {
      log.error({ err }, "attempt failed unexpectedly");
      final = { status: "failed", reason: masker.mask(errorMessage(err)), reasonCode: "internal_error" };
    }
    logStream.system(`attempt failed: ${final.reason ?? final.reasonCode}`);
  } finally {
    clearTimeout(timeout);
    input.cancel.removeEventListener("abort", onCancel);
  }

  // Clean-up and the record of what happened, whatever happened. The container goes first: the
  // diff of a failed or stopped attempt is read from its tree too, and nothing may write it then.
  await context.with(ctx, async () => run?.remove()).catch((err) => log.warn({ error: errorMessage(err) }, "container not removed"));
  await logStream.close();
  if (final.reasonCode !== "superseded") {
    // a slot whose lease was lost may be another task's already: its tree is not this attempt's record
    if (!headSha && slot && baseSha && final.reasonCode !== "lease_lost") {
      // An attempt that did not reach push still leaves its change for the record (never pushed).
      const partial = await commitForTheRecord(deps, slotLayout(slot.path), workDir, baseSha, settings.commitAuthor).catch((err) => {
        log.warn({ error: errorMessage(err) }, "the attempt's change could not be read");
        return undefined;
      });
      if (partial) ({ workspace, headSha } = partial);
    }
    await uploadArtifacts(deps, { taskId, attempt, workDir, workspace, baseSha, headSha, agentResult, testOutcome, masker, log, ctx });
  }
  // The heartbeat (JetStream's in-progress and the slot's lease) runs until the slot is given back:
  // a slow upload must not get a finished attempt redelivered.
  clearInterval(heartbeat);
  if (slot) {
    await deps.repoPool
      .release({ slotId: slot.slotId, taskId, attempt }, { ctx })
      .catch((err) => log.warn({ error: errorMessage(err) }, "slot not released (its lease will expire)"));
  }
  await rm(workDir, { recursive: true, force: true });

  if (final.reasonCode !== "superseded") {
    // A bus error here is not "superseded": retry it; only a lost compare-and-set means another attempt owns the task.
    const fenced = await durably("advance the claim to finished", () =>
      deps.claims.advance(taskId, attempt, settings.runnerId, revision, "finished"),
    );
    if (fenced === undefined) {
      log.warn("attempt superseded before it finished: not publishing a final status");
    } else {
      await publish(
        event("run.finished", {
          status: final.status,
          durationMs: Date.now() - started,
          branch: spec.push.branch,
          ...(final.reason ? { reason: masker.mask(final.reason).slice(0, 4000) } : {}),
          ...(final.reasonCode ? { reasonCode: final.reasonCode } : {}),
          ...(final.commitSha ? { commitSha: final.commitSha } : {}),
        }),
      );
      deps.metrics?.finished(final.status);
    }
  }
  if (final.status !== "succeeded")
    root.setStatus({ code: SpanStatusCode.ERROR, message: final.reason ?? final.reasonCode ?? final.status });
  root.setAttribute("codefleet.status", final.status);
  root.end();
  log.info({ status: final.status, reasonCode: final.reasonCode, ms: Date.now() - started }, "attempt finished");
  return "ran";
}

class Superseded extends Error {}

function imageFor(spec: ResolvedTaskSpec, settings: RunnerSettings): string {
  switch (spec.agent.kind) {
    case "opencode":
      return settings.images.opencode;
    case "claude-code":
      return settings.images.claudeCode;
    case "command":
      return spec.agent.image ?? settings.images.default;
    default:
      return settings.images.default;
  }
}

/** Agents whose model runs in the runner (script, openai) need no network in their container. */
function networkFor(spec: ResolvedTaskSpec, settings: RunnerSettings): "bridge" | "none" {
  if (settings.network === "none") return "none";
  return spec.agent.kind === "script" || spec.agent.kind === "openai" ? "none" : "bridge";
}

/**
 * The operator's policy, checked again here: a task published straight on the bus never passed
 * the registry's checks.
 */
function refuseByPolicy(spec: ResolvedTaskSpec, policy: SecurityPolicy): void {
  const url = checkRepoUrl(spec.repo.url, policy.repoUrls);
  if (!url.ok) throw fail(url.code, url.message);
  const key = agentKeyProblem(spec.agent, policy.secretEndpoints);
  if (key) throw fail(key.code, key.message);
}

/** Which of the task's secrets (by name) appears in what the commit adds, plain, base64 or URL-encoded. */
async function findSecretInCommit(
  ws: WorkspaceGit,
  baseSha: string,
  headSha: string,
  secrets: Record<string, string>,
): Promise<string | undefined> {
  const values = Object.values(secrets);
  const nameOf = new Map(Object.entries(secrets).map(([name, value]) => [value, name]));
  // a variant cut across two pieces of the stream is found in the overlap kept from the first
  const overlap = Math.max(0, ...values.flatMap(secretVariants).map((v) => v.length - 1));
  let tail = "";
  let found: string | undefined;
  await ws.addedText(baseSha, headSha, (text) => {
    if (found) return;
    const window = tail + text;
    const hit = findSecret(window, values);
    if (hit !== undefined) found = nameOf.get(hit);
    tail = overlap > 0 ? window.slice(-overlap) : "";
  });
  return found;
}

/** Stages and commits what an attempt left in its tree (not pushed): the diff of a failed attempt. */
async function commitForTheRecord(
  deps: AttemptDeps,
  layout: ReturnType<typeof slotLayout>,
  workDir: string,
  baseSha: string,
  author: { name: string; email: string },
): Promise<{ workspace: WorkspaceGit; headSha: string } | undefined> {
  const ws = await WorkspaceGit.open(deps.git, layout, workDir, deps.settings.gitOwner);
  await ws.stage();
  const commit = await ws.commit("partial work of a failed attempt (not pushed)\n", author, baseSha);
  return commit.changed ? { workspace: ws, headSha: commit.sha } : undefined;
}

async function resolveSecrets(deps: AttemptDeps, spec: ResolvedTaskSpec): Promise<Record<string, string>> {
  const required = await deps.secrets.resolve(spec.secrets ?? []);
  const agent = spec.agent as { apiKeySecret?: string; kind: string };
  const defaultKey =
    agent.kind === "openai" || agent.kind === "opencode"
      ? "OPENAI_API_KEY"
      : agent.kind === "claude-code"
        ? "ANTHROPIC_API_KEY"
        : undefined;
  const keyName = agent.apiKeySecret ?? defaultKey;
  const optional = keyName ? await deps.secrets.resolveOptional([keyName]) : {};
  return { ...optional, ...required };
}

async function allocateSlot(
  deps: AttemptDeps,
  spec: ResolvedTaskSpec,
  taskId: string,
  attempt: number,
  signal: AbortSignal,
  ctx: Context,
  working: () => void,
): Promise<AllocateResult> {
  const deadline = Date.now() + deps.settings.noCapacityRetryMs;
  let delay = 500;
  for (;;) {
    try {
      return await deps.repoPool.allocate(
        { repoUrl: spec.repo.url, ...(spec.repo.ref ? { ref: spec.repo.ref } : {}), taskId, attempt, leaseTtlMs: deps.settings.leaseTtlMs },
        { ctx },
      );
    } catch (err) {
      const retryable = isCodefleetError(err) && err.retry.kind !== "never";
      if (!retryable || Date.now() > deadline || signal.aborted) {
        if (isCodefleetError(err) && err.code === "no_capacity")
          throw fail("no_capacity", `no workspace slot became free within ${Math.round(deps.settings.noCapacityRetryMs / 1000)} s`);
        throw err;
      }
      working();
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  }
}

async function uploadArtifacts(
  deps: AttemptDeps,
  a: {
    taskId: string;
    attempt: number;
    workDir: string;
    workspace?: WorkspaceGit;
    baseSha?: string;
    headSha?: string;
    agentResult?: AgentResult;
    testOutcome?: TestOutcome;
    masker: SecretMasker;
    log: Logger;
    ctx: Context;
  },
): Promise<void> {
  const uploads: { name: string; kind: ArtifactKind; contentType: string; body: () => Promise<string | Buffer> }[] = [];
  const logPath = join(a.workDir, "task.log");
  if (await stat(logPath).catch(() => undefined))
    uploads.push({ name: "task.log", kind: "log", contentType: "text/plain; charset=utf-8", body: () => readFile(logPath) });
  if (a.workspace && a.baseSha && a.headSha) {
    const { workspace, baseSha, headSha } = a;
    uploads.push({
      name: "changes.diff",
      kind: "diff",
      contentType: "text/x-diff; charset=utf-8",
      body: () => cappedMasked(a.masker, deps.settings.maxArtifactBytes, (onChunk) => workspace.diff(baseSha, headSha, onChunk)),
    });
  }
  if (a.testOutcome?.report) {
    const r = a.testOutcome.report;
    uploads.push({
      name: r.format === "junit" ? "test-report.xml" : "test-report.tap",
      kind: "test-report",
      contentType: r.format === "junit" ? "application/xml" : "text/plain",
      body: async () => a.masker.mask(r.content),
    });
  }
  if (a.agentResult?.transcript) {
    const t = a.agentResult.transcript;
    uploads.push({
      name: "transcript",
      kind: "transcript",
      contentType: a.agentResult.transcriptContentType ?? "text/plain",
      body: async () =>
        a.masker.mask(
          t.length > deps.settings.maxArtifactBytes
            ? `${t.slice(0, deps.settings.maxArtifactBytes)}\n[codefleet] transcript truncated\n`
            : t,
        ),
    });
  }
  for (const u of uploads) {
    await tracer.startActiveSpan(
      `upload artifact ${u.name}`,
      {
        attributes: {
          "codefleet.task_id": a.taskId,
          "codefleet.attempt": a.attempt,
          "codefleet.artifact.name": u.name,
          "codefleet.artifact.kind": u.kind,
        },
      },
      a.ctx,
      async (span) => {
        try {
          const body = await u.body();
          span.setAttribute("codefleet.artifact.bytes", Buffer.byteLength(body));
          // the artifact-store away for a moment: retried (an upload is idempotent by task, attempt, name and sha256)
          const stored = await platformRetry(
            `upload ${u.name}`,
            () =>
              deps.artifacts.upload({ taskId: a.taskId, attempt: a.attempt, name: u.name, kind: u.kind, contentType: u.contentType, body }),
            { withinMs: deps.settings.platformRetryMs },
          );
          span.setAttributes({ "codefleet.artifact.id": stored.id, "codefleet.artifact.sha256": stored.sha256 });
        } catch (err) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
          a.log.warn({ artifact: u.name, error: errorMessage(err) }, "artifact not stored");
        } finally {
          span.end();
        }
      },
    );
  }
}

/** Collects a stream masked (a secret cut across two chunks included), keeping at most `max` bytes and saying so. */
async function cappedMasked(
  masker: SecretMasker,
  max: number,
  produce: (onChunk: (chunk: Buffer) => void) => Promise<void>,
): Promise<string> {
  const stream = new StreamMasker(masker);
  const parts: string[] = [];
  let bytes = 0;
  let dropped = 0;
  const keep = (text: string) => {
    if (bytes >= max) {
      dropped += text.length;
      return;
    }
    const room = max - bytes;
    parts.push(text.length > room ? text.slice(0, room) : text);
    if (text.length > room) dropped += text.length - room;
    bytes += Math.min(room, text.length);
  };
  const utf8 = new StringDecoder("utf8");
  await produce((chunk) => keep(stream.push(utf8.write(chunk))));
  keep(stream.push(utf8.end()));
  keep(stream.end());
  if (dropped > 0) parts.push(`\n[codefleet] truncated: ${dropped} more characters not stored\n`);
  return parts.join("");
}

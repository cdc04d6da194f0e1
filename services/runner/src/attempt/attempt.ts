import { chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ArtifactStoreClient } from "@codefleet/artifact-store/client";
import type {
  AllocateResult,
  CodefleetEventOf,
  EventData,
  Phase,
  ReasonCode,
  ResolvedTaskSpec,
  SecurityPolicy,
} from "@codefleet/contracts";
import {
  agentKeyProblem,
  CodefleetError,
  checkRepoUrl,
  createEvent,
  DEFAULT_TENANT,
  errorMessage,
  isCodefleetError,
  networkPolicyProblem,
  pullRequestProblem,
  reasonOf,
  resolveTaskSpec,
  secretTenantProblem,
  specKeyProblem,
  taskSecretNames,
} from "@codefleet/contracts";
import { hasRepoUrlCredentials, stripRepoUrlCredentials } from "@codefleet/contracts/access";
import { type Bus, contextFromFields } from "@codefleet/platform/bus";
import type { Logger, SecretMasker } from "@codefleet/platform/runtime";
import type { RepoPoolClient } from "@codefleet/repo-pool/client";
import { parseRemoteUrl, type RepoAccess } from "@codefleet/repo-pool/git";
import { type Context, context, isSpanContextValid, type Link, SpanStatusCode, trace } from "@opentelemetry/api";
import type { AgentImages, AgentNeeds } from "../agents/agent.js";
import { type AgentRegistry, agentNeedsFor } from "../agents/registry.js";
import type { ExecutionDriver, RunHandle } from "../execution/driver.js";
import { environmentKey } from "../execution/env-cache.js";
import type { WarmClass, WarmPool, WarmStart } from "../execution/warm-pool.js";
import type { LlmGateway } from "../gateway/index.js";
import { LogStream } from "../logs/log-stream.js";
import { fetchPhase } from "../phases/fetch.js";
import { implementPhase } from "../phases/implement.js";
import type { AttemptEnd, AttemptPhase, AttemptRecord, ModelKey, PhaseContext } from "../phases/phase.js";
import { Superseded } from "../phases/phase.js";
import { type PipelineHooks, runPipeline } from "../phases/pipeline.js";
import { pushPhase } from "../phases/push.js";
import { rebasePhase } from "../phases/rebase.js";
import { setupPhase } from "../phases/setup.js";
import { testPhase } from "../phases/test.js";
import { type PullRequestSettings, pullRequestServices } from "../pull-requests/open.js";
import type { SecretResolver } from "../secrets.js";
import { candidateLogName, uploadArtifacts } from "./artifacts.js";
import { type Candidate, endWithoutWinner, runCandidates } from "./candidates.js";
import type { ClaimStore } from "./claims.js";
import { type ContainerPlan, containerPlan, isPlanProblem, type RuntimeSettings } from "./container-plan.js";
import { AttemptLifecycle, type AttemptOutcome, claimAttempt, previousRunStarted } from "./lifecycle.js";
import { platformRetry } from "./platform-retry.js";
import type { Turn } from "./turns.js";

export type { AttemptOutcome } from "./lifecycle.js";

const tracer = trace.getTracer("@codefleet/runner");
const PRODUCER = "runner";

/** fetch → setup (only with spec.setup) → implement → test → rebase (when the base branch moved) → push. */
export const PHASES: readonly AttemptPhase[] = [fetchPhase, setupPhase, implementPhase, testPhase, rebasePhase, pushPhase];

export type RunnerSettings = {
  runnerId: string;
  images: AgentImages;
  /** The container runtimes this runner has and the operator's choice for tasks without network. */
  runtimes: RuntimeSettings;
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
  /** Links and limits of the pull requests tasks ask for (`spec.pullRequest`). */
  pullRequests?: PullRequestSettings;
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
  /** Repository URL policy and per-host git credentials. */
  repoAccess: RepoAccess;
  agents: AgentRegistry;
  /** Containers made ahead of their tasks; absent: every attempt starts its container. */
  warmPool?: WarmPool;
  /** Where agents call their model: the provider key stays in the runner (absent: the key goes to the agent, tests only). */
  gateway?: LlmGateway;
  log: Logger;
  settings: RunnerSettings;
  metrics?: { phaseDuration(phase: Phase, outcome: string, ms: number): void; finished(status: string): void };
  /** Work that outlives an attempt's delivery (giving its slot back): awaited when the runner stops. */
  background?: Set<Promise<unknown>>;
};

export type AttemptInput = {
  /** The task's submission, with the spec this turn runs (a follow-up's prompt and agent). */
  event: CodefleetEventOf<"task.submitted">;
  /** The turn the attempt belongs to (1: the submission). */
  turn: Turn;
  attempt: number;
  /** Keeps the JetStream message alive while the attempt runs. */
  working: () => void;
  /** Aborted when the task's cancel is requested. */
  cancel: AbortSignal;
  traceContext: Context;
};

class AttemptFailure extends CodefleetError {
  override readonly name = "AttemptFailure";
}

const fail = (reasonCode: ReasonCode, reason: string) => new AttemptFailure(reasonCode, reason, { retry: { kind: "never" } });

/**
 * One attempt of a task: claim → run.started → workspace and container (warm or made now) →
 * phases → artifacts → run.finished, with heartbeats, cancel, timeout and clean-up whatever
 * happens. The phases are in ../phases; the attempt's life (stops, leases, fencing) in lifecycle.
 */
export async function runAttempt(deps: AttemptDeps, input: AttemptInput): Promise<AttemptOutcome> {
  const { bus, settings } = deps;
  const taskId = input.event.taskId;
  const attempt = input.attempt;
  const t0 = performance.now();
  /** Milliseconds from the delivery to each step: where an attempt's start time went (in its last log line). */
  const marks: Record<string, number> = {};
  const mark = (name: string) => {
    marks[name] = Math.round(performance.now() - t0);
  };
  const spec = resolveTaskSpec(input.event.data.spec, taskId);
  // events from before tenancy carry none
  const tenant = input.event.data.tenant ?? DEFAULT_TENANT;
  const needs = agentNeedsFor(deps.agents, spec.agent, settings.images);
  // the container's network (behind its egress proxy) and runtime, from the task's policy and what its agent needs
  const plan = containerPlan(spec, needs, {
    ...(settings.security.network ? { network: settings.security.network } : {}),
    ...(deps.gateway ? { gatewayUrl: deps.gateway.url } : {}),
    runtimes: settings.runtimes,
  });
  // A warm container is asked for while the attempt is claimed: both are on the way to the first
  // command. Nothing runs in it before the claim is ours; a skipped delivery gives it back.
  // a follow-up starts at its previous turn's commit: warm containers sit at their class's ref
  const warmTake =
    deps.warmPool && !input.turn.fromCommit && !isPlanProblem(plan) && policyRefusal(spec, tenant, settings.security) === undefined
      ? deps.warmPool.take(warmClassOf(spec, needs, plan), { taskId, attempt }, input.traceContext).catch(() => undefined)
      : undefined;
  const log = deps.log.child({ taskId, attempt });
  /** Platform calls of a running attempt ride out a hiccup (NATS restarting) within platformRetryMs. */
  const durably = <T>(what: string, f: () => Promise<T>) =>
    platformRetry(what, f, {
      withinMs: settings.platformRetryMs,
      onRetry: (w, error, delayMs) => log.warn({ error, retryInMs: delayMs }, `${w} failed; retrying`),
    });
  const claimed = await claimAttempt(bus, deps.claims, { taskId, attempt, turn: input.turn, runnerId: settings.runnerId, durably });
  mark("claimed");
  if (typeof claimed === "string") {
    const w = await warmTake;
    if (w) {
      await w.run.remove().catch(() => undefined);
      releaseLater(deps, w.slot, { taskId, attempt }, undefined, input.traceContext, deps.log);
    }
    return claimed;
  }

  const started = Date.now();
  // Earlier attempts' containers (a runner that died): removed meanwhile, waited for before the end.
  const staleRemoval =
    attempt > 1
      ? deps.driver
          .removeStale(taskId, attempt)
          .then((n) => n && log.info({ removed: n }, "removed containers of earlier attempts"))
          .catch(() => undefined)
      : undefined;

  const root = await startAttemptSpan(deps, input, spec);
  const ctx = trace.setSpan(input.traceContext, root);
  const event = <T extends Parameters<typeof createEvent>[0]>(type: T, data: EventData<T>) =>
    createEvent(type, {
      taskId,
      attempt,
      producer: PRODUCER,
      data,
      causationId: input.turn.causationId,
      correlationId: taskId,
    } as never) as never;
  // the event is made once: a retry after a lost answer publishes the same id, which JetStream de-duplicates
  const publish = (type: Parameters<typeof createEvent>[0], data: unknown) => {
    const e = event(type as never, data as never);
    return durably(`publish ${type}`, () => bus.publish(e, { ctx }));
  };

  const life = new AttemptLifecycle({
    taskId,
    attempt,
    runnerId: settings.runnerId,
    timeoutSeconds: spec.limits.timeoutSeconds,
    heartbeatMs: settings.heartbeatMs,
    leaseTtlMs: settings.leaseTtlMs,
    cancel: input.cancel,
    working: input.working,
    claims: deps.claims,
    revision: claimed.revision,
    repoPool: deps.repoPool,
    log,
    traceContext: ctx,
    durably,
  });

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

  const record: AttemptRecord = { baseSha: "" };
  let slot: AllocateResult | undefined;
  let run: RunHandle | undefined;
  let end: AttemptEnd;
  // Best-of-N (spec.candidates): the candidates' own slots and containers (2..N), logs and scratch
  // dirs; the outcome; and the slot whose tree is the attempt's record (the winner's).
  const candidateSlots: { slot: AllocateResult; run: RunHandle; slotOwner: SlotOwner }[] = [];
  const candidateLogs = new Map<number, LogStream>();
  let bestOfN: BestOfN | undefined;
  let recordSlot: AllocateResult | undefined;
  const candidateLog = (n: number) => {
    const l = new LogStream({
      taskId,
      attempt,
      candidate: n,
      masker,
      sink: (chunk) => bus.publishLog(chunk, { ctx }).then(() => undefined),
      filePath: join(workDir, candidateLogName(n)),
      maxBytes: settings.maxLogBytes,
      onSinkError: (err) => log.warn({ candidate: n, error: errorMessage(err) }, "live log chunk not published"),
    });
    candidateLogs.set(n, l);
    return l;
  };
  const candidateScratch = async (n: number) => {
    const dir = join(workDir, `candidate-${n}`);
    await mkdir(dir);
    if (settings.gitOwner && process.getuid?.() === 0) await chown(dir, settings.gitOwner.uid, settings.gitOwner.gid);
    return dir;
  };
  // the candidates' slots are leased like the attempt's: renewed until they go back
  const candidateBeat = setInterval(() => {
    for (const c of candidateSlots)
      deps.repoPool
        .heartbeat({ slotId: c.slot.slotId, ...c.slotOwner, leaseTtlMs: settings.leaseTtlMs }, { ctx })
        .catch((err) => log.warn({ error: errorMessage(err) }, "candidate slot heartbeat failed"));
  }, settings.heartbeatMs);
  // run.started goes out first, whatever follows (the registry's view of a task starts there), and
  // overlaps the container's start. Retried through a bus outage like every publish: a delivery
  // given up at its start would cost the task one of its attempts.
  const announced = publish("run.started", {
    runnerId: settings.runnerId,
    agentKind: spec.agent.kind,
    image: needs.image,
    ...(isPlanProblem(plan)
      ? {}
      : { network: plan.mode, ...(plan.allow.length ? { networkAllow: plan.allow } : {}), runtime: plan.runtime }),
  }).then(() => mark("started"));
  announced.catch(() => undefined); // awaited on every path below
  try {
    let secrets: Record<string, string>;
    let modelKey: ModelKey | undefined;
    try {
      refuseByPolicy(spec, tenant, settings.security);
      if (isPlanProblem(plan)) throw fail(plan.code, plan.message);
      ({ secrets, modelKey } = await resolveSecrets(deps.secrets, spec, needs, tenant));
      if (modelKey && !deps.gateway) secrets = { ...secrets, [modelKey.name]: modelKey.value }; // no gateway: the agent holds the key
    } catch (err) {
      await announced;
      throw err;
    }
    masker = deps.masker.with([...Object.values(secrets), ...(modelKey ? [modelKey.value] : [])]);
    logStream.masker = masker;
    logStream.system(
      `runner ${settings.runnerId} took attempt ${attempt} of task ${taskId}${input.turn.number > 1 ? ` (turn ${input.turn.number}, from ${input.turn.fromCommit?.slice(0, 12) ?? "the base"})` : ""}`,
    );
    /** A container and slot for the attempt (a warm one when the pool has one), or for a best-of-N candidate (2..N). */
    const startFor = (o: { warmTake: Promise<WarmStart | undefined> | undefined; candidate?: number }) =>
      context.with(ctx, () =>
        startContainer(
          deps,
          spec,
          needs,
          plan as ContainerPlan,
          { taskId, attempt },
          {
            life,
            ctx,
            working: input.working,
            ...(input.turn.fromCommit ? { ref: input.turn.fromCommit } : {}),
            ...o,
          },
        ),
      );
    const starting = startFor({ warmTake });
    const [start] = await Promise.all([
      starting,
      announced.catch(async (err) => {
        // the container is not this attempt's to keep
        await starting.then(
          (s) => {
            s.run.remove().catch(() => undefined);
            releaseLater(deps, s.slot, { taskId, attempt }, undefined, ctx, log);
          },
          () => undefined,
        );
        throw err;
      }),
    ]);
    slot = start.slot;
    run = start.run;
    mark("container");
    life.keepSlot(slot, () => run);
    record.baseSha = slot.commitSha;
    root.setAttribute("container.id", run.id);
    logStream.system(
      `workspace slot ${slot.slotId} at ${slot.commitSha.slice(0, 12)} (${slot.warm ? "warm" : "new"} slot, ${start.warm ? "warm" : "new"} container)`,
    );
    /** A phase context on a slot and container: the attempt's own, or one of its best-of-N candidates'. */
    const contextFor = (c: {
      slot: AllocateResult;
      run: RunHandle;
      agentGitReady: boolean;
      record: AttemptRecord;
      log: LogStream;
      /** Where the runner's git writes its scratch index and objects for this tree. */
      scratch: string;
      candidate?: number;
      /** The slot's owner at repo-pool when it is not the attempt (a candidate's). */
      slotOwner?: SlotOwner;
    }): PhaseContext => ({
      taskId,
      attempt,
      turn: input.turn,
      spec,
      slot: c.slot,
      run: c.run,
      agentGitReady: c.agentGitReady,
      env: {
        ...(spec.env ?? {}),
        ...secrets,
        CODEFLEET_TASK_ID: taskId,
        CODEFLEET_ATTEMPT: String(attempt),
        CODEFLEET_TURN: String(input.turn.number),
        ...(c.candidate ? { CODEFLEET_CANDIDATE: String(c.candidate) } : {}),
        GIT_AUTHOR_NAME: settings.commitAuthor.name,
        GIT_AUTHOR_EMAIL: settings.commitAuthor.email,
        GIT_COMMITTER_NAME: settings.commitAuthor.name,
        GIT_COMMITTER_EMAIL: settings.commitAuthor.email,
      },
      secrets,
      // the gateway is the only way a container reaches a model, with the runner's key or without one (a keyless endpoint)
      ...(deps.gateway && needs.modelApi
        ? {
            model: {
              ...(modelKey ? { key: modelKey } : {}),
              gateway: deps.gateway,
              tenant,
              // each call is an event (usage and cost, no content), summed in the task's view
              recordCall: (data: EventData<"llm.called">) => {
                publish("llm.called", data).catch((err: unknown) => log.warn({ error: errorMessage(err) }, "llm.called not published"));
              },
            },
          }
        : {}),
      log: c.log,
      masker,
      signal: life.abort.signal,
      remainingMs: () => spec.limits.timeoutSeconds * 1000 - (Date.now() - started),
      workspaceFull: () =>
        c.slotOwner
          ? deps.repoPool
              .heartbeat({ slotId: c.slot.slotId, ...c.slotOwner, leaseTtlMs: settings.leaseTtlMs }, { ctx })
              .then((hb) => (hb.overQuota ? (hb.diskBytes ?? 0) : undefined))
              .catch(() => undefined)
          : life.workspaceFull(c.slot),
      record: c.record,
      agents: deps.agents,
      images: settings.images,
      settings,
      removeContainer: () => context.with(ctx, () => c.run.remove()),
      openWorkspace: () => deps.driver.openWorkspace(c.slot, c.scratch),
      credentialsFor: (remoteUrl) => deps.repoAccess.credentialsFor(parseRemoteUrl(remoteUrl)),
      fenceForPush: () => life.advance("pushing"),
      pullRequests: pullRequestServices({
        secrets: deps.secrets,
        tenant,
        publish: (data) => publish("pull_request.opened", data),
        ...(settings.pullRequests ? { settings: settings.pullRequests } : {}),
      }),
      ...(deps.driver.environmentCache
        ? {
            environmentCache: boundEnvironmentCache(deps, spec, input.event.data, c.slot, needs.image),
          }
        : {}),
    });
    const phaseContext = contextFor({ slot, run, agentGitReady: start.warm, record, log: logStream, scratch: workDir });
    const hooks = (candidate?: number): PipelineHooks => ({
      publish: (type, data) => publish(type, candidate ? { ...data, candidate } : data),
      stoppedBy: () => life.stoppedBy(),
      traceContext: ctx,
      log: candidate ? log.child({ candidate }) : log,
      ...(deps.metrics ? { metrics: deps.metrics } : {}),
    });
    mark("pipeline");
    if (spec.candidates && spec.candidates > 1) {
      const best = await runBestOfN(deps, {
        count: spec.candidates,
        first: contextFor({
          slot,
          run,
          agentGitReady: start.warm,
          record: { baseSha: record.baseSha },
          log: candidateLog(1),
          scratch: await candidateScratch(1),
          candidate: 1,
        }),
        start: async (n) => {
          const made = await startFor({ warmTake: undefined, candidate: n });
          candidateSlots.push(made);
          return {
            candidate: n,
            ctx: contextFor({
              slot: made.slot,
              run: made.run,
              agentGitReady: false,
              record: { baseSha: made.slot.commitSha },
              log: candidateLog(n),
              scratch: await candidateScratch(n),
              candidate: n,
              slotOwner: made.slotOwner,
            }),
          };
        },
        hooks,
        traceContext: ctx,
        publish,
        logStream,
        log,
        signal: life.abort.signal,
      });
      bestOfN = best;
      if (best.winner) {
        // the winner goes on alone: its record is the attempt's, its tree the one pushed
        Object.assign(record, best.winner.ctx.record);
        recordSlot = best.winner.ctx.slot;
        end = await runPipeline(WINNER_PHASES, { ...best.winner.ctx, record, log: logStream }, hooks());
      } else end = best.end;
    } else end = await runPipeline(PHASES, phaseContext, hooks());
  } catch (err) {
    if (err instanceof Superseded) end = { status: "failed", superseded: true };
    else if (life.stoppedBy()) end = life.stoppedBy() as AttemptEnd;
    else if (isCodefleetError(err)) end = { status: "failed", ...reasonOf(err, masker.mask(err.message)) };
    else {
      log.error({ err }, "attempt failed unexpectedly");
      end = { status: "failed", reason: masker.mask(errorMessage(err)), reasonCode: "internal_error" };
    }
  }
  if (end.status !== "succeeded") logStream.system(`attempt ${end.status}: ${end.reason ?? end.reasonCode}`);
  if (!run && warmTake) {
    // stopped before its container was its own (a secret missing, say): the warm one goes back
    const w = await warmTake;
    if (w) {
      await w.run.remove().catch(() => undefined);
      releaseLater(deps, w.slot, { taskId, attempt }, undefined, ctx, log);
    }
  }

  // Clean-up and the record of what happened, whatever happened. The container goes first: the
  // diff of a failed or stopped attempt is read from its tree too, and nothing may write it then.
  await context.with(ctx, async () => run?.remove()).catch((err) => log.warn({ error: errorMessage(err) }, "container not removed"));
  await Promise.all(candidateSlots.map((c) => context.with(ctx, () => c.run.remove()).catch(() => undefined)));
  await logStream.close();
  // An attempt the registry never saw start (its run.started never got out, so nothing ran) gets no
  // final status: the registry would not apply it and the task would stay open. The delivery fails
  // instead, and is tried again (or closes the task when it was the last).
  const announcedOk = await announced.then(
    () => true,
    () => false,
  );
  if (end.superseded) log.warn("attempt superseded by a newer one: not pushing, not finishing");
  else if (!announcedOk) log.warn("run.started was never published: no final status; the delivery is tried again");
  else {
    // a slot whose lease was lost may be another task's already: its tree is not this attempt's record
    if (!record.head && slot && end.reasonCode !== "lease_lost") await commitForTheRecord(deps, recordSlot ?? slot, workDir, record, log);
    // every candidate's own log, and the losers' change, tests and transcript (the winner's are the attempt's)
    if (bestOfN) await keepCandidates(deps, bestOfN, { taskId, attempt, workDir, masker, log, ctx, logs: candidateLogs });
    await uploadArtifacts({
      artifacts: deps.artifacts,
      taskId,
      attempt,
      workDir,
      record,
      masker,
      maxArtifactBytes: settings.maxArtifactBytes,
      platformRetryMs: settings.platformRetryMs,
      log,
      ctx,
    });
    // A bus error here is not "superseded": retried; only a lost compare-and-set means another attempt owns the task.
    if (!(await life.advance("finished"))) log.warn("attempt superseded before it finished: not publishing a final status");
    else {
      await publish("run.finished", {
        status: end.status,
        durationMs: Date.now() - started,
        branch: spec.push.branch,
        ...(end.reason ? { reason: masker.mask(end.reason).slice(0, 4000) } : {}),
        ...(end.reasonCode ? { reasonCode: end.reasonCode } : {}),
        ...(end.commitSha ? { commitSha: end.commitSha } : {}),
      });
      deps.metrics?.finished(end.status);
    }
  }
  life.settle();
  await rm(workDir, { recursive: true, force: true });
  await staleRemoval;
  // The slot goes back after the attempt's status is out: off the task's critical path. Its lease
  // is renewed until then; a runner that dies first leaves it to expire (repo-pool destroys it).
  if (slot) releaseLater(deps, slot, { taskId, attempt }, life, ctx, log);
  clearInterval(candidateBeat);
  for (const c of candidateSlots) releaseLater(deps, c.slot, c.slotOwner, undefined, ctx, log);

  if (end.status !== "succeeded") root.setStatus({ code: SpanStatusCode.ERROR, message: end.reason ?? end.reasonCode ?? end.status });
  root.setAttribute("codefleet.status", end.status);
  root.end();
  mark("done");
  log.info({ status: end.status, reasonCode: end.reasonCode, ms: Date.now() - started, marks }, "attempt finished");
  if (!announcedOk && !end.superseded)
    throw new Error(`attempt ${attempt} could not announce itself on the bus: ${end.reason ?? end.status}`);
  return "ran";
}

/** Attempt 1 continues the submission's trace; a later one (a redelivery) is its own trace, linked to its pickup and the attempt before. */
async function startAttemptSpan(deps: AttemptDeps, input: AttemptInput, spec: ResolvedTaskSpec) {
  const { taskId } = input.event;
  const links: Link[] = [];
  // a turn's first attempt continues the trace of whoever asked for the turn (a follow-up's request)
  const redelivery = input.attempt > input.turn.firstAttempt;
  if (redelivery) {
    const pickup = trace.getSpanContext(input.traceContext);
    if (pickup) links.push({ context: pickup, attributes: { "codefleet.link": "pickup" } });
    const before = await previousRunStarted(deps.bus, taskId);
    const previous = trace.getSpanContext(contextFromFields({ traceparent: before?.metadata?.traceparent }));
    if (previous) links.push({ context: previous, attributes: { "codefleet.link": "previous attempt" } });
  }
  return tracer.startSpan(
    `task attempt ${input.attempt}`,
    {
      root: redelivery,
      links,
      attributes: {
        "codefleet.task_id": taskId,
        "codefleet.attempt": input.attempt,
        "codefleet.turn": input.turn.number,
        "codefleet.repo": stripRepoUrlCredentials(spec.repo.url),
        "codefleet.agent_kind": spec.agent.kind,
        "codefleet.runner_id": deps.settings.runnerId,
      },
    },
    input.traceContext,
  );
}

/**
 * The attempt's container and slot: a warm one when the pool has one of the task's class (its
 * first command is then an exec), else a slot from repo-pool and a container made now.
 */
function warmClassOf(spec: ResolvedTaskSpec, needs: AgentNeeds, plan: ContainerPlan): WarmClass {
  return {
    repoUrl: spec.repo.url,
    ...(spec.repo.ref ? { ref: spec.repo.ref } : {}),
    image: needs.image,
    network: plan.network,
    ...(plan.egress ? { egress: plan.egress } : {}),
    ...(plan.runtime !== "runc" ? { runtime: plan.runtime } : {}),
    memoryMb: spec.limits.memoryMb,
    cpus: spec.limits.cpus,
  };
}

async function startContainer(
  deps: AttemptDeps,
  spec: ResolvedTaskSpec,
  needs: AgentNeeds,
  plan: ContainerPlan,
  owner: { taskId: string; attempt: number },
  o: {
    life: AttemptLifecycle;
    ctx: Context;
    working: () => void;
    warmTake: Promise<WarmStart | undefined> | undefined;
    /** Where the slot starts when not at the spec's ref (a follow-up: the previous turn's commit). */
    ref?: string;
    /** A best-of-N candidate (2..N): a slot and container of its own, next to the attempt's. */
    candidate?: number;
  },
): Promise<{ slot: AllocateResult; run: RunHandle; warm: boolean; slotOwner: SlotOwner }> {
  const { life, ctx, working } = o;
  const warm = await o.warmTake;
  if (warm) {
    void warm.run.adopt(owner).catch((err) => deps.log.warn({ error: errorMessage(err) }, "warm container not renamed"));
    return { ...warm, warm: true, slotOwner: owner };
  }
  // repo-pool holds one slot per task attempt: a candidate's is a reservation (no slot events) of its own name
  const slotOwner: SlotOwner = o.candidate ? { taskId: candidateSlotOwner(owner.taskId, o.candidate), attempt: owner.attempt } : owner;
  const slot = await allocateSlot(deps, spec, slotOwner, life.abort.signal, ctx, working, {
    ...(o.ref ? { at: o.ref } : {}),
    // an extra candidate waits for a slot only briefly: the attempt goes on with the candidates it has
    ...(o.candidate ? { reservation: true, waitMs: Math.min(deps.settings.noCapacityRetryMs, CANDIDATE_SLOT_WAIT_MS) } : {}),
  });
  try {
    const run = await deps.driver.createRun({
      ...owner,
      ...(o.candidate ? { candidate: o.candidate } : {}),
      runnerId: deps.settings.runnerId,
      ...(deps.settings.deployment ? { deployment: deps.settings.deployment } : {}),
      image: needs.image,
      slot,
      memoryMb: spec.limits.memoryMb,
      cpus: spec.limits.cpus,
      pidsLimit: deps.settings.pidsLimit,
      network: plan.network,
      ...(plan.egress ? { egress: plan.egress } : {}),
      ...(plan.runtime !== "runc" ? { runtime: plan.runtime } : {}),
      env: {},
    });
    return { slot, run, warm: false, slotOwner };
  } catch (err) {
    releaseLater(deps, slot, slotOwner, undefined, ctx, deps.log);
    throw err;
  }
}

type SlotOwner = { taskId: string; attempt: number };

/** How long a best-of-N attempt's extra candidate waits for a slot before it is scored `error` (no_capacity). */
export const CANDIDATE_SLOT_WAIT_MS = 15_000;

/** The owner repo-pool knows a best-of-N candidate's slot by (2..N; candidate 1 has the attempt's). */
export const candidateSlotOwner = (taskId: string, candidate: number) => `${taskId.slice(0, 120)}-c${candidate}`;

function releaseLater(
  deps: AttemptDeps,
  slot: AllocateResult,
  owner: { taskId: string; attempt: number },
  life: AttemptLifecycle | undefined,
  ctx: Context,
  log: Logger,
): void {
  const p = deps.repoPool
    .release({ slotId: slot.slotId, ...owner }, { ctx })
    .catch((err) => log.warn({ error: errorMessage(err) }, "slot not released (its lease will expire)"))
    .finally(() => {
      life?.released();
      deps.background?.delete(p);
    });
  deps.background?.add(p);
}

/**
 * The operator's policy, checked again here: a task published straight on the bus never passed
 * the registry's checks.
 */
function refuseByPolicy(spec: ResolvedTaskSpec, tenant: string, policy: SecurityPolicy): void {
  const refusal = policyRefusal(spec, tenant, policy);
  if (refusal) throw refusal;
}

function policyRefusal(spec: ResolvedTaskSpec, tenant: string, policy: SecurityPolicy): AttemptFailure | undefined {
  const keys = specKeyProblem(spec);
  if (keys) return fail(keys.code, keys.message);
  // credentials come from the operator's per-host configuration, never from a task
  if (hasRepoUrlCredentials(spec.repo.url))
    return fail("repo_url_credentials_refused", "the repository URL carries credentials: configure them for its host instead");
  const url = checkRepoUrl(spec.repo.url, policy.repoUrls);
  if (!url.ok) return fail(url.code, url.message);
  const key = agentKeyProblem(spec.agent, policy.secretEndpoints);
  if (key) return fail(key.code, key.message);
  const pr = pullRequestProblem(spec, policy.secretEndpoints);
  if (pr) return fail(pr.code, pr.message);
  const network = networkPolicyProblem(spec, policy.network);
  if (network) return fail(network.code, network.message);
  // checked before a container is taken or made; a refusal never depends on whether the secret exists
  const secrets = secretTenantProblem(taskSecretNames(spec), tenant, policy.secretTenants);
  if (secrets) return fail(secrets.code, secrets.message);
  return undefined;
}

/**
 * The task's secrets (all required; they reach its commands' environment), and apart from them its
 * agent's model key when the runner has one (it stays in the runner, behind the LLM gateway, unless
 * the task names it among its secrets). The resolver checks the tenant again.
 */
async function resolveSecrets(
  resolver: SecretResolver,
  spec: ResolvedTaskSpec,
  needs: AgentNeeds,
  tenant: string,
): Promise<{ secrets: Record<string, string>; modelKey?: ModelKey }> {
  const secrets = await resolver.resolve(spec.secrets ?? [], tenant);
  const name = needs.modelKeySecret;
  const value = name ? (secrets[name] ?? (await resolver.resolveOptional([name], tenant))[name]) : undefined;
  return { secrets, ...(name && value !== undefined ? { modelKey: { name, value } } : {}) };
}

/** An attempt that did not reach push still leaves its change for the record (never pushed). */
async function commitForTheRecord(deps: AttemptDeps, slot: AllocateResult, workDir: string, record: AttemptRecord, log: Logger) {
  try {
    const ws = await deps.driver.openWorkspace(slot, workDir);
    await ws.stage();
    const commit = await ws.commit("partial work of a failed attempt (not pushed)\n", deps.settings.commitAuthor, record.baseSha);
    if (commit.changed) record.head = { sha: commit.sha, workspace: ws };
  } catch (err) {
    log.warn({ error: errorMessage(err) }, "the attempt's change could not be read");
  }
}

/** The driver's environment cache for this attempt: keyed by what makes a setup's result the same. */
function boundEnvironmentCache(
  deps: AttemptDeps,
  spec: ResolvedTaskSpec,
  submitted: EventData<"task.submitted">,
  slot: AllocateResult,
  image: string,
): NonNullable<PhaseContext["environmentCache"]> {
  const cache = deps.driver.environmentCache as NonNullable<ExecutionDriver["environmentCache"]>;
  return {
    key: async (lockfiles) =>
      environmentKey({
        repoUrl: slot.remoteUrl,
        tenant: (submitted as { tenant?: string }).tenant ?? "default",
        imageId: await deps.driver.imageId(image),
        command: spec.setup?.command ?? "",
        cachePaths: spec.setup?.cachePaths ?? [],
        env: spec.env ?? {},
        lockfiles: await deps.driver.blobIds(slot, slot.commitSha, lockfiles),
      }),
    restore: (key, paths) => cache.restore(key, slot, paths),
    save: (key, paths) => cache.save(key, slot, paths),
  };
}

/** A slot from repo-pool, waiting for one while none is free (warm containers give theirs back first). */
async function allocateSlot(
  deps: AttemptDeps,
  spec: ResolvedTaskSpec,
  owner: { taskId: string; attempt: number },
  signal: AbortSignal,
  ctx: Context,
  working: () => void,
  o: { at?: string; reservation?: boolean; waitMs?: number } = {},
): Promise<AllocateResult> {
  const at = o.at ?? spec.repo.ref;
  const reservation = o.reservation === true;
  const waitMs = o.waitMs ?? deps.settings.noCapacityRetryMs;
  const deadline = Date.now() + waitMs;
  let delay = 500;
  for (;;) {
    try {
      return await deps.repoPool.allocate(
        {
          repoUrl: spec.repo.url,
          ...(at ? { ref: at } : {}),
          ...owner,
          leaseTtlMs: deps.settings.leaseTtlMs,
          ...(reservation ? { reservation } : {}),
        },
        { ctx },
      );
    } catch (err) {
      const retryable = isCodefleetError(err) && err.retry.kind !== "never";
      if (!retryable || Date.now() > deadline || signal.aborted) {
        if (isCodefleetError(err) && err.code === "no_capacity")
          throw fail("no_capacity", `no workspace slot became free within ${Math.round(waitMs / 1000)} s`);
        throw err;
      }
      working();
      // a task before a warm container: the pool gives a slot back, and the task asks again at once
      if (isCodefleetError(err) && err.code === "no_capacity" && (await deps.warmPool?.shrink(spec.repo.url))) continue;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  }
}

/** The winner's way on, after the candidates' pipelines (fetch through test). */
const WINNER_PHASES: readonly AttemptPhase[] = [rebasePhase, pushPhase];

type BestOfN = { candidates: Candidate[]; winner?: Candidate; end: AttemptEnd; reason: string };

/**
 * Runs a best-of-N attempt's candidates at once, each with a root span of its own (its own trace,
 * linked to the attempt's), records the oracle's choice as `candidate.selected` and removes the
 * losers' containers at once (their slots go back with the attempt's).
 */
async function runBestOfN(
  deps: AttemptDeps,
  o: {
    count: number;
    first: PhaseContext;
    start(n: number): Promise<{ candidate: number; ctx: PhaseContext }>;
    hooks(candidate?: number): PipelineHooks;
    traceContext: Context;
    publish(type: Parameters<typeof createEvent>[0], data: unknown): Promise<unknown>;
    logStream: LogStream;
    log: Logger;
    signal: AbortSignal;
  },
): Promise<BestOfN> {
  const attemptSpan = trace.getSpanContext(o.traceContext);
  o.logStream.system(`best of ${o.count}: ${o.count} candidates run at once, each on its own slot and container`);
  const result = await runCandidates({
    count: o.count,
    first: o.first,
    start: async (n) => ({ ...(await o.start(n)), dispose: async () => undefined }),
    hooks: (n) => o.hooks(n),
    span: (n) => {
      const span = tracer.startSpan(`candidate ${n}`, {
        root: true,
        ...(attemptSpan ? { links: [{ context: attemptSpan, attributes: { "codefleet.link": "attempt" } }] } : {}),
        attributes: {
          "codefleet.task_id": o.first.taskId,
          "codefleet.attempt": o.first.attempt,
          "codefleet.candidate": n,
        },
      });
      return {
        ctx: trace.setSpan(o.traceContext, span),
        ...(isSpanContextValid(span.spanContext()) ? { traceId: span.spanContext().traceId } : {}),
        end: (end) => {
          if (end.status !== "succeeded")
            span.setStatus({ code: SpanStatusCode.ERROR, message: end.reason ?? end.reasonCode ?? end.status });
          span.setAttribute("codefleet.status", end.status);
          span.end();
        },
      };
    },
    publishSelection: (data) => o.publish("candidate.selected", data),
    log: o.log,
    signal: o.signal,
  });
  o.logStream.system(`best of ${o.count}: ${result.reason}`);
  for (const c of result.candidates)
    if (c !== result.winner)
      await c.ctx.removeContainer().catch((err) => o.log.warn({ error: errorMessage(err) }, "candidate not removed"));
  return {
    candidates: result.candidates,
    ...(result.winner ? { winner: result.winner } : {}),
    end: result.winner ? { status: "succeeded" } : endWithoutWinner(result.candidates, result.order, result.reason),
    reason: result.reason,
  };
}

/**
 * What a best-of-N attempt keeps of its candidates: each one's log, and for the losers their change
 * (committed for the record, never pushed), test report and transcript, named `candidate-<n>.…`.
 */
async function keepCandidates(
  deps: AttemptDeps,
  best: BestOfN,
  o: { taskId: string; attempt: number; workDir: string; masker: SecretMasker; log: Logger; ctx: Context; logs: Map<number, LogStream> },
): Promise<void> {
  for (const c of best.candidates) {
    await o.logs.get(c.candidate)?.close();
    const record = c === best.winner ? { baseSha: c.ctx.record.baseSha } : c.ctx.record;
    if (c !== best.winner && !record.head && c.end?.reasonCode !== "lease_lost")
      await commitForTheRecord(deps, c.ctx.slot, join(o.workDir, `candidate-${c.candidate}`), record, o.log);
    await uploadArtifacts({
      artifacts: deps.artifacts,
      taskId: o.taskId,
      attempt: o.attempt,
      candidate: c.candidate,
      workDir: o.workDir,
      record,
      masker: o.masker,
      maxArtifactBytes: deps.settings.maxArtifactBytes,
      platformRetryMs: deps.settings.platformRetryMs,
      log: o.log,
      ctx: o.ctx,
    });
  }
}

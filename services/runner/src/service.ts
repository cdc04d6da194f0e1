import { chmod, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArtifactStoreClient } from "@codefleet/artifact-store/client";
import type { RunnerStatus } from "@codefleet/contracts";
import { Bus, connectNats, natsStreamSettings } from "@codefleet/platform/bus";
import {
  createLogger,
  csv,
  guardMetrics,
  installErrorHandling,
  installHealthRoutes,
  type Logger,
  SecretMasker,
  startTelemetry,
} from "@codefleet/platform/runtime";
import { RepoPoolClient } from "@codefleet/repo-pool/client";
import { ASKPASS_SCRIPT, createGitRunner, createRepoAccess, GLOBAL_GIT_CONFIG } from "@codefleet/repo-pool/git";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { agentRegistry } from "./agents/registry.js";
import type { RunnerSettings } from "./attempt/attempt.js";
import { ClaimStore } from "./attempt/claims.js";
import { Worker } from "./attempt/worker.js";
import type { RunnerConfig } from "./config.js";
import type { ExecutionDriver } from "./execution/driver.js";
import { createExecutionDriver } from "./execution/select-driver.js";
import { WarmPool } from "./execution/warm-pool.js";
import { type Budget, LlmGateway, otelGatewayMetrics, parsePriceTable } from "./gateway/index.js";
import { SecretResolver } from "./secrets.js";

export type RunnerService = {
  app: FastifyInstance;
  worker: Worker;
  driver: ExecutionDriver;
  warmPool?: WarmPool;
  bus: Bus;
  log: Logger;
  stop(): Promise<void>;
};

/** Composes a runner: bus, fencing, clients of repo-pool and artifact-store, Docker, agents, worker. Does not listen. */
/** A budget from settings where 0 means "no limit". */
function budgetOf(maxTokens: number, maxCostUsd: number, maxRequests: number): Budget {
  return {
    ...(maxTokens > 0 ? { maxTokens } : {}),
    ...(maxCostUsd > 0 ? { maxCostUsd } : {}),
    ...(maxRequests > 0 ? { maxRequests } : {}),
  };
}

export async function startRunner(
  config: RunnerConfig,
  opts: { logger?: Logger; env?: Record<string, string | undefined> } = {},
): Promise<RunnerService> {
  const masker = new SecretMasker([config.CODEFLEET_API_TOKEN, ...config.gitCredentials.map((r) => r.password ?? "")]);
  const log = opts.logger ?? createLogger({ service: "runner", level: config.LOG_LEVEL, masker });
  const telemetry = startTelemetry({ serviceName: "runner" });
  const nc = await connectNats({
    ...config.nats,
    name: `runner-${config.RUNNER_ID}`,
    log: (level, msg, fields) => log[level](fields ?? {}, msg),
  });
  const bus = await Bus.create(nc, { namespace: config.CODEFLEET_NAMESPACE, logger: log, ...natsStreamSettings(config) });
  await bus.ensureStreams();
  const claims = await ClaimStore.open(bus);

  const gitOwner = { uid: config.GIT_UID, gid: config.GIT_GID };
  const gitHome = await mkdtemp(join(tmpdir(), "codefleet-runner-git-"));
  await chmod(gitHome, 0o755); // git runs as the git uid and must reach the askpass helper and its config
  const askPassPath = join(gitHome, "askpass.sh");
  await writeFile(askPassPath, ASKPASS_SCRIPT, { mode: 0o755 });
  const globalConfigPath = join(gitHome, "gitconfig");
  await writeFile(globalConfigPath, GLOBAL_GIT_CONFIG, { mode: 0o644 });
  const git = createGitRunner({ askPassPath, masker, globalConfigPath, runAs: gitOwner });
  // docker, or local (plain processes, no isolation, only when the operator allowed it: see config)
  const driver = createExecutionDriver(config, { git, gitOwner, log, path: (opts.env ?? process.env).PATH });
  await driver.ping();
  // Containers of this runner that no attempt owns (a runner that died leaves them): gone before work starts.
  const swept = await driver.sweep(config.RUNNER_ID);
  if (swept) log.info({ removed: swept }, "removed orphaned task containers of this runner");

  const settings: RunnerSettings = {
    runnerId: config.RUNNER_ID,
    images: { default: config.AGENT_IMAGE, opencode: config.AGENT_IMAGE_OPENCODE, claudeCode: config.AGENT_IMAGE_CLAUDE_CODE },
    runtimes: {
      available: (await driver.runtimes?.()) ?? ["runc"],
      ...(config.RUNTIME_NO_NETWORK ? { noNetwork: config.RUNTIME_NO_NETWORK } : {}),
      runscWithNetwork: config.RUNSC_WITH_NETWORK,
    },
    pidsLimit: config.AGENT_PIDS_LIMIT,
    leaseTtlMs: config.SLOT_LEASE_TTL_MS,
    heartbeatMs: config.RUNNER_HEARTBEAT_MS,
    noCapacityRetryMs: config.NO_CAPACITY_RETRY_MS,
    agentIdleTimeoutMs: config.AGENT_IDLE_TIMEOUT_MS,
    maxLogBytes: config.MAX_LOG_BYTES,
    maxArtifactBytes: config.MAX_ARTIFACT_BYTES,
    commitAuthor: { name: config.COMMIT_AUTHOR_NAME, email: config.COMMIT_AUTHOR_EMAIL },
    security: config.security,
    gitOwner,
    platformRetryMs: config.PLATFORM_RETRY_MS,
    deployment: config.CODEFLEET_DEPLOYMENT ?? config.CODEFLEET_NAMESPACE,
    defaults: {
      openaiBaseUrl: config.OPENAI_BASE_URL,
      ...(config.ANTHROPIC_BASE_URL ? { anthropicBaseUrl: config.ANTHROPIC_BASE_URL } : {}),
    },
    pullRequests: {
      ...(config.REGISTRY_PUBLIC_URL ? { publicUrl: config.REGISTRY_PUBLIC_URL } : {}),
      ...(config.JAEGER_URL ? { jaegerUrl: config.JAEGER_URL } : {}),
      timeoutMs: config.PULL_REQUEST_TIMEOUT_MS,
      retries: config.PULL_REQUEST_RETRIES,
    },
  };
  // Agents call their model through the gateway: a per-attempt token, never the provider key.
  const gateway = await LlmGateway.start({
    host: config.LLM_GATEWAY_HOST,
    port: config.LLM_GATEWAY_PORT,
    advertiseUrl: config.LLM_GATEWAY_ADVERTISE_URL,
    ...(config.LLM_PRICES ? { prices: parsePriceTable(config.LLM_PRICES) } : {}),
    defaultBudget: budgetOf(config.LLM_BUDGET_MAX_TOKENS, config.LLM_BUDGET_MAX_COST_USD, config.LLM_BUDGET_MAX_REQUESTS),
    budgetCeiling: budgetOf(config.LLM_BUDGET_CEILING_TOKENS, config.LLM_BUDGET_CEILING_COST_USD, 0),
    keyLimits: {
      ...(config.LLM_KEY_CONCURRENCY ? { concurrency: config.LLM_KEY_CONCURRENCY } : {}),
      ...(config.LLM_KEY_RPM ? { requestsPerMinute: config.LLM_KEY_RPM } : {}),
    },
    masker,
    metrics: otelGatewayMetrics(telemetry.meter),
    log,
  });
  log.info({ url: gateway.url }, "llm gateway listening");
  const repoPool = new RepoPoolClient(nc, {
    namespace: config.CODEFLEET_NAMESPACE,
    ...(config.CODEFLEET_HOST ? { host: config.CODEFLEET_HOST } : {}),
  });
  const warmPool =
    config.WARM_CONTAINERS_MAX > 0
      ? new WarmPool({
          driver,
          repoPool,
          runnerId: settings.runnerId,
          ...(settings.deployment ? { deployment: settings.deployment } : {}),
          pidsLimit: settings.pidsLimit,
          leaseTtlMs: settings.leaseTtlMs,
          heartbeatMs: settings.heartbeatMs,
          perClass: config.WARM_CONTAINERS_PER_CLASS,
          max: config.WARM_CONTAINERS_MAX,
          idleMs: config.WARM_CONTAINER_IDLE_MS,
          log,
        })
      : undefined;
  const background = new Set<Promise<unknown>>();
  const phaseHist = telemetry.meter.createHistogram("codefleet_runner_phase_duration_ms", { description: "phase duration", unit: "ms" });
  const finishedCounter = telemetry.meter.createCounter("codefleet_runner_tasks_finished_total", {
    description: "attempts finished, by final status",
  });
  const artifacts = new ArtifactStoreClient({ baseUrl: config.ARTIFACT_STORE_URL, token: config.CODEFLEET_API_TOKEN });
  const worker = new Worker(
    {
      bus,
      driver,
      repoPool,
      artifacts,
      claims,
      secrets: new SecretResolver({
        env: opts.env ?? process.env,
        ...(config.SECRETS_DIR ? { dir: config.SECRETS_DIR } : {}),
        tenants: config.security.secretTenants,
      }),
      masker,
      repoAccess: createRepoAccess(config.security.repoUrls, config.gitCredentials),
      agents: agentRegistry,
      ...(warmPool ? { warmPool } : {}),
      gateway,
      background,
      log,
      settings,
      metrics: {
        phaseDuration: (phase, outcome, ms) => phaseHist.record(ms, { phase, outcome }),
        finished: (status) => finishedCounter.add(1, { status }),
      },
    },
    {
      concurrency: config.RUNNER_CONCURRENCY,
      maxAttempts: config.RUNNER_MAX_ATTEMPTS,
      ackWaitMs: config.RUNNER_ACK_WAIT_MS,
      ...(warmPool && config.RUNNER_AFFINITY_WAIT_MS > 0
        ? { affinity: { waitMs: config.RUNNER_AFFINITY_WAIT_MS, runnerId: config.RUNNER_ID, warmRepos: () => warmPool.warmRepos() } }
        : {}),
    },
    log,
  );
  await worker.start();
  const sweeper = setInterval(() => {
    driver
      .sweep(config.RUNNER_ID)
      .then((n) => n && log.warn({ removed: n }, "removed task containers no running attempt owns"))
      .catch((err) => log.warn({ error: (err as Error).message }, "container sweep failed"));
  }, config.RUNNER_SWEEP_INTERVAL_MS);

  // who this runner is and what it has, every few seconds, for the fleet view (not stored: the last one counts)
  const statusSubject = bus.topology.subjects.runnerStatus(config.RUNNER_ID);
  const publishStatus = (stopping = false) => {
    const status: RunnerStatus = {
      runnerId: config.RUNNER_ID,
      concurrency: config.RUNNER_CONCURRENCY,
      active: worker.active,
      warm: warmPool?.size ?? { ready: 0, filling: 0 },
      intervalMs: config.RUNNER_STATUS_INTERVAL_MS,
      sentAt: new Date().toISOString(),
      runtimes: [...settings.runtimes.available],
      ...(config.CODEFLEET_HOST ? { host: config.CODEFLEET_HOST } : {}),
      ...(warmPool ? { warmRepos: [...warmPool.warmRepos()].slice(0, 64) } : {}),
      ...(stopping ? { stopping: true } : {}),
    };
    try {
      bus.announce(statusSubject, status);
    } catch (err) {
      log.debug({ error: (err as Error).message }, "runner status not published");
    }
  };
  publishStatus();
  const statusTimer = setInterval(() => publishStatus(), config.RUNNER_STATUS_INTERVAL_MS);
  statusTimer.unref();

  const gauge = telemetry.meter.createObservableGauge("codefleet_runner_running_containers", {
    description: "task containers this runner has",
  });
  gauge.addCallback(async (r) => r.observe(await driver.running(config.RUNNER_ID).catch(() => 0)));
  const active = telemetry.meter.createObservableGauge("codefleet_runner_active_attempts", { description: "attempts running now" });
  active.addCallback((r) => r.observe(worker.active));
  const warmGauge = telemetry.meter.createObservableGauge("codefleet_runner_warm_containers", {
    description: "warm containers of this runner, by state (ready, filling)",
  });
  warmGauge.addCallback((r) => {
    const size = warmPool?.size ?? { ready: 0, filling: 0 };
    r.observe(size.ready, { state: "ready" });
    r.observe(size.filling, { state: "filling" });
  });

  const app = Fastify({ loggerInstance: log as FastifyBaseLogger });
  installErrorHandling(app);
  installHealthRoutes(app, {
    metrics: guardMetrics(telemetry.metricsHandler, config.METRICS_TOKEN),
    ready: async () => {
      const checks = {
        nats: nc.isClosed() ? "closed" : "ok",
        [driver.name]: await driver.ping().then(
          () => "ok",
          (e: Error) => e.message,
        ),
      };
      return { ok: Object.values(checks).every((v) => v === "ok"), checks };
    },
  });
  await app.ready();
  let stopped = false;
  return {
    app,
    worker,
    driver,
    ...(warmPool ? { warmPool } : {}),
    bus,
    log,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(sweeper);
      clearInterval(statusTimer);
      publishStatus(true);
      await app.close();
      await worker.stop();
      await Promise.allSettled([...background]);
      await warmPool?.stop();
      await gateway.close();
      await artifacts.close();
      await bus.drain();
      await telemetry.shutdown();
    },
  };
}

import { ArtifactStoreClient } from "@codefleet/artifact-store/client";
import { quotaFor, tokenVerifier } from "@codefleet/contracts/access";
import { Bus, connectNats, natsStreamSettings } from "@codefleet/platform/bus";
import { createLogger, type Logger, pingDatabase, startTelemetry, type Telemetry } from "@codefleet/platform/runtime";
import type { FastifyInstance } from "fastify";
import type { RegistryConfig } from "./config.js";
import { RunnerDirectory } from "./fleet/runner-directory.js";
import { buildApp } from "./http/app.js";
import { startAdmission } from "./ingest/admission.js";
import { startIngestor } from "./ingest/ingestor.js";
import { startScheduling } from "./schedules/wiring.js";
import { createDatabase, type Db, migrate } from "./store/database.js";
import { type Notifier, startNotifier } from "./webhooks/notifier.js";

export type RegistryService = {
  app: FastifyInstance;
  db: Db;
  bus: Bus;
  log: Logger;
  /** The scheduler of this replica: fires only while it holds the leader lease. */
  scheduler: { isLeader(): boolean; tick(): Promise<number> };
  notifier: Notifier;
  stop(): Promise<void>;
};

/** Composes the registry from its config: database, bus, ingestion, HTTP app. Does not listen. */
export async function startRegistry(
  config: RegistryConfig,
  opts: { logger?: Logger; telemetry?: Telemetry; now?: () => Date } = {},
): Promise<RegistryService> {
  const log = opts.logger ?? createLogger({ service: "task-registry", level: config.LOG_LEVEL });
  const telemetry = opts.telemetry ?? startTelemetry({ serviceName: "task-registry" });
  const { db } = createDatabase({ url: config.DATABASE_URL, schema: config.DATABASE_SCHEMA });
  await migrate(db, config.DATABASE_SCHEMA);
  const nc = await connectNats({
    ...config.nats,
    name: "task-registry",
    log: (level, msg, fields) => log[level](fields ?? {}, msg),
  });
  const bus = await Bus.create(nc, { namespace: config.CODEFLEET_NAMESPACE, logger: log, ...natsStreamSettings(config) });
  await bus.ensureStreams();
  const ingestion = await startIngestor({
    bus,
    db,
    log,
    meter: telemetry.meter,
    batchSize: config.INGEST_BATCH_SIZE,
    maxBytes: config.INGEST_MAX_BYTES,
  });
  const admission = await startAdmission({
    bus,
    db,
    log,
    meter: telemetry.meter,
    securityPolicy: config.securityPolicy,
    quota: (tenant) => quotaFor(config.access, tenant, config.defaultQuota),
  });
  observeConsumerBacklog(bus, telemetry);
  const scheduling = await startScheduling({ config, bus, db, log, meter: telemetry.meter, ...(opts.now ? { now: opts.now } : {}) });
  const notifier = startNotifier({
    db,
    bus,
    log,
    meter: telemetry.meter,
    settings: config.webhooks,
    ...(config.securityPolicy.webhookUrls ? { urlPolicy: config.securityPolicy.webhookUrls } : {}),
  });

  // with the artifact-store reachable, logs older than the live stream are served from the stored task.log
  const artifacts =
    config.ARTIFACT_STORE_URL && config.CODEFLEET_API_TOKEN
      ? new ArtifactStoreClient({ baseUrl: config.ARTIFACT_STORE_URL, token: config.CODEFLEET_API_TOKEN })
      : undefined;
  const runnerDirectory = new RunnerDirectory(bus);
  const app = await buildApp({
    db,
    bus,
    runnerDirectory,
    logger: log,
    tokens: tokenVerifier(config.access),
    quota: (tenant) => quotaFor(config.access, tenant, config.defaultQuota),
    quotaRetryAfterSeconds: config.QUOTA_RETRY_AFTER_SECONDS,
    ...(config.METRICS_TOKEN ? { metricsToken: config.METRICS_TOKEN } : {}),
    bodyLimitBytes: config.BODY_LIMIT_BYTES,
    artifactStorePublicUrl: config.ARTIFACT_STORE_PUBLIC_URL,
    securityPolicy: config.securityPolicy,
    dashboard: { ...(config.DASHBOARD_DIR ? { dir: config.DASHBOARD_DIR } : {}), jaegerUrl: config.DASHBOARD_JAEGER_URL },
    ...(opts.now ? { now: opts.now } : {}),
    logTail: { heartbeatMs: 15_000, finishCheckMs: 1000, ...(artifacts ? { storedLog: (id: string) => artifacts.downloadText(id) } : {}) },
    health: {
      metrics: telemetry.metricsHandler,
      ready: async () => {
        const checks: Record<string, string> = {};
        checks.nats = nc.isClosed() ? "closed" : "ok";
        checks.postgres = await pingDatabase(db);
        return { ok: Object.values(checks).every((v) => v === "ok"), checks };
      },
    },
  });

  await app.ready(); // schema compilation errors surface at start, not on the first request

  let stopped = false;
  return {
    app,
    db,
    bus,
    log,
    scheduler: scheduling,
    notifier,
    async stop() {
      if (stopped) return;
      stopped = true;
      await app.close();
      runnerDirectory.stop();
      await scheduling.stop();
      await notifier.stop();
      await admission.stop();
      await ingestion.stop();
      await artifacts?.close();
      await bus.drain();
      await db.destroy();
      if (!opts.telemetry) await telemetry.shutdown();
    },
  };
}

/**
 * Backlog as gauges: the run queue per tenant (admitted tasks not yet taken by a runner, and taken
 * but not yet acknowledged) and the registry's own consumers (pending, unacknowledged).
 */
function observeConsumerBacklog(bus: Bus, telemetry: Telemetry): void {
  const pending = telemetry.meter.createObservableGauge("codefleet_bus_consumer_pending_messages", {
    description: "Messages waiting for a consumer (not yet delivered)",
  });
  const unacked = telemetry.meter.createObservableGauge("codefleet_bus_consumer_ack_pending_messages", {
    description: "Messages delivered to a consumer and not yet acknowledged (in progress)",
  });
  const queued = telemetry.meter.createObservableGauge("codefleet_run_queue_messages", {
    description: "Tasks on a tenant's run queue (waiting for a runner or being started)",
  });
  const { topology } = bus;
  telemetry.meter.addBatchObservableCallback(
    async (result) => {
      for (const c of [topology.consumers.registryIngest, topology.consumers.registryAdmission]) {
        const counts = await bus.consumerCounts(c.stream, c.durable).catch(() => undefined);
        if (!counts) continue;
        result.observe(pending, counts.pending, { consumer: c.durable });
        result.observe(unacked, counts.ackPending, { consumer: c.durable });
      }
      const q = await bus.messagesPerSubject(topology.streams.queue.name, topology.subjects.allQueues).catch(() => undefined);
      for (const [subject, n] of Object.entries(q ?? {})) {
        const tenant = topology.subjects.queueTenant(subject);
        if (tenant) result.observe(queued, n, { tenant });
      }
    },
    [pending, unacked, queued],
  );
}

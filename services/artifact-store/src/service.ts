import { tokenVerifier } from "@codefleet/contracts/access";
import { Bus, connectNats, natsStreamSettings } from "@codefleet/platform/bus";
import { createLogger, type Logger, pingDatabase, startTelemetry } from "@codefleet/platform/runtime";
import type { FastifyInstance } from "fastify";
import type { ArtifactStoreConfig } from "./config.js";
import { ArtifactService } from "./domain/artifacts.js";
import { buildApp } from "./http/app.js";
import { BlobStore } from "./store/blob-store.js";
import { createDatabase, type Db, migrate } from "./store/database.js";
import { TaskTenants } from "./store/task-tenants.js";

export type ArtifactStore = {
  app: FastifyInstance;
  db: Db;
  blobs: BlobStore;
  artifacts: ArtifactService;
  log: Logger;
  stop(): Promise<void>;
};

/** Composes the artifact-store from its config. Does not listen. */
export async function startArtifactStore(config: ArtifactStoreConfig, opts: { logger?: Logger } = {}): Promise<ArtifactStore> {
  const log = opts.logger ?? createLogger({ service: "artifact-store", level: config.LOG_LEVEL });
  const telemetry = startTelemetry({ serviceName: "artifact-store" });
  const { db } = createDatabase({ url: config.DATABASE_URL, schema: config.DATABASE_SCHEMA });
  await migrate(db, config.DATABASE_SCHEMA);
  const blobs = new BlobStore(config.ARTIFACT_DATA_DIR);
  await blobs.init();
  const nc = await connectNats({
    ...config.nats,
    name: "artifact-store",
    log: (level, msg, fields) => log[level](fields ?? {}, msg),
  });
  const bus = await Bus.create(nc, { namespace: config.CODEFLEET_NAMESPACE, logger: log, ...natsStreamSettings(config) });
  await bus.ensureStreams();
  const artifacts = new ArtifactService({
    db,
    blobs,
    bus,
    log,
    meter: telemetry.meter,
    maxArtifactBytes: config.MAX_ARTIFACT_BYTES,
    verifyCacheMs: config.VERIFY_CACHE_MS,
  });
  // an artifact belongs to its task's tenant, which the task's task.submitted event on the bus says
  const taskTenants = new TaskTenants(bus);
  const app = await buildApp({
    artifacts,
    logger: log,
    tokens: tokenVerifier(config.access),
    taskTenant: (taskId) => taskTenants.tenantOf(taskId),
    ...(config.METRICS_TOKEN ? { metricsToken: config.METRICS_TOKEN } : {}),
    health: {
      metrics: telemetry.metricsHandler,
      ready: async () => {
        const checks = { nats: nc.isClosed() ? "closed" : "ok", postgres: await pingDatabase(db) };
        return { ok: Object.values(checks).every((v) => v === "ok"), checks };
      },
    },
  });
  await app.ready();
  let retention: NodeJS.Timeout | undefined;
  if (config.RETENTION_MAX_AGE_DAYS > 0 || config.RETENTION_MAX_PER_TASK > 0) {
    retention = setInterval(() => {
      artifacts
        .applyRetention({
          dryRun: false,
          ...(config.RETENTION_MAX_AGE_DAYS > 0 ? { maxAgeDays: config.RETENTION_MAX_AGE_DAYS } : {}),
          ...(config.RETENTION_MAX_PER_TASK > 0 ? { maxPerTask: config.RETENTION_MAX_PER_TASK } : {}),
        })
        .then((r) => log.info({ artifacts: r.artifacts.length, blobs: r.blobs.length, bytesFreed: r.bytesFreed }, "retention applied"))
        .catch((err) => log.error({ err }, "retention failed"));
    }, config.RETENTION_INTERVAL_MS);
    retention.unref();
  }
  return {
    app,
    db,
    blobs,
    artifacts,
    log,
    async stop() {
      clearInterval(retention);
      await app.close();
      await bus.drain();
      await db.destroy();
      await telemetry.shutdown();
    },
  };
}

import { execFile } from "node:child_process";
import { chmod, chown, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { createEvent, errorMessage } from "@codefleet/contracts";
import { Bus, connectNats, natsStreamSettings } from "@codefleet/platform/bus";
import {
  createLogger,
  guardMetrics,
  installErrorHandling,
  installHealthRoutes,
  type Logger,
  pingDatabase,
  SecretMasker,
  startTelemetry,
} from "@codefleet/platform/runtime";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { RepoPoolConfig } from "./config.js";
import { ASKPASS_SCRIPT, createGitRunner, GLOBAL_GIT_CONFIG } from "./git/git.js";
import { createRepoAccess } from "./git/repo-access.js";
import { MirrorCache } from "./pool/mirrors.js";
import { chooseSlotDisk } from "./pool/slot-disk.js";
import { type SlotEvent, SlotPool } from "./pool/slots.js";
import { serveRepoPool } from "./rpc/server.js";
import { createDatabase, type Db, migrate } from "./store/database.js";

export type RepoPoolService = {
  app: FastifyInstance;
  pool: SlotPool;
  mirrors: MirrorCache;
  db: Db;
  bus: Bus;
  log: Logger;
  stop(): Promise<void>;
};

const PRODUCER = "repo-pool";
const execFileP = promisify(execFile);

/** Composes repo-pool: database, mirrors, slots, the NATS API, the reaper, and a health endpoint. Does not listen. */
export async function startRepoPool(config: RepoPoolConfig, opts: { logger?: Logger } = {}): Promise<RepoPoolService> {
  const masker = new SecretMasker(config.gitCredentials.map((r) => r.password ?? ""));
  const log = opts.logger ?? createLogger({ service: "repo-pool", level: config.LOG_LEVEL, masker });
  const telemetry = startTelemetry({ serviceName: "repo-pool" });
  const { db } = createDatabase({ url: config.DATABASE_URL, schema: config.DATABASE_SCHEMA });
  await migrate(db, config.DATABASE_SCHEMA);

  const root = config.REPO_POOL_DATA_DIR;
  const gitOwner = { uid: config.GIT_UID, gid: config.GIT_GID };
  const slotOwner = { uid: config.SLOT_UID, gid: config.SLOT_GID };
  await mkdir(root, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  // slots are worked on as the agents' uid and the git uid: both must reach them
  if (asRoot) await chmod(root, 0o755);
  const gitHome = join(root, "git-home");
  await mkdir(gitHome, { recursive: true, mode: 0o700 });
  const askPassPath = join(gitHome, "askpass.sh");
  await writeFile(askPassPath, ASKPASS_SCRIPT, { mode: 0o700 });
  const globalConfigPath = join(root, "gitconfig"); // read by both git uids
  await writeFile(globalConfigPath, GLOBAL_GIT_CONFIG, { mode: 0o644 });
  await mkdir(join(root, "mirrors"), { recursive: true, mode: 0o755 });
  if (asRoot) {
    // Everything git writes on the trusted side belongs to the git uid (data dirs of an older
    // version, written as root, are handed over once).
    for (const p of [gitHome, askPassPath, join(root, "mirrors")]) await chown(p, gitOwner.uid, gitOwner.gid);
    const mirrorsDir = join(root, "mirrors");
    const foreign = await execFileP("find", ["-P", mirrorsDir, "!", "-uid", String(gitOwner.uid), "-print", "-quit"]);
    if (foreign.stdout.trim()) await execFileP("chown", ["-R", "-h", `${gitOwner.uid}:${gitOwner.gid}`, "--", mirrorsDir]);
  }
  const git = createGitRunner({
    askPassPath,
    masker,
    globalConfigPath,
    home: gitHome,
    defaultTimeoutMs: config.GIT_TIMEOUT_MS,
    runAs: gitOwner,
  });
  const treeGit = createGitRunner({ askPassPath, masker, globalConfigPath, defaultTimeoutMs: config.GIT_TIMEOUT_MS, runAs: slotOwner });
  const access = createRepoAccess(config.security.repoUrls, config.gitCredentials);
  const mirrors = new MirrorCache({ root: join(root, "mirrors"), git, db, refreshMs: config.MIRROR_REFRESH_MS, access });
  await mirrors.init();

  const nc = await connectNats({
    ...config.nats,
    name: "repo-pool",
    log: (level, msg, fields) => log[level](fields ?? {}, msg),
  });
  const bus = await Bus.create(nc, { namespace: config.CODEFLEET_NAMESPACE, logger: log, ...natsStreamSettings(config) });
  await bus.ensureStreams();

  const publishSlotEvent = async (e: SlotEvent) => {
    try {
      if (e.type === "slot.allocated") {
        await bus.publish(
          createEvent("slot.allocated", {
            taskId: e.taskId,
            attempt: e.attempt,
            producer: PRODUCER,
            data: {
              slotId: e.slot.id,
              repoUrl: e.repoUrl,
              ref: e.slot.ref ?? "",
              ...(e.slot.commit_sha ? { commitSha: e.slot.commit_sha } : {}),
              leaseExpiresAt: e.slot.lease_expires_at ? new Date(e.slot.lease_expires_at).toISOString() : new Date().toISOString(),
              warm: e.warm,
            },
          }),
        );
      } else if (e.type === "slot.released") {
        await bus.publish(
          createEvent("slot.released", {
            taskId: e.taskId,
            attempt: e.attempt,
            producer: PRODUCER,
            data: { slotId: e.slotId, outcome: e.outcome, ...(e.reason ? { reason: e.reason } : {}) },
          }),
        );
      } else {
        await bus.publish(
          createEvent("slot.reclaimed", {
            taskId: e.taskId,
            attempt: e.attempt,
            producer: PRODUCER,
            data: { slotId: e.slotId, reason: e.reason },
          }),
        );
      }
    } catch (err) {
      // The slot state is already durable in Postgres; a lost notification must not fail the operation.
      log.warn({ error: errorMessage(err), event: e.type }, "could not publish slot event");
    }
  };

  const { disk, why } = await chooseSlotDisk(config.SLOT_DISK_LIMIT, config.SLOT_DISK_QUOTA_BYTES, root);
  if (disk.kind === "loop") log.info({ quotaBytes: config.SLOT_DISK_QUOTA_BYTES }, `workspace disk limit enforced: ${why}`);
  else log.warn({ quotaBytes: config.SLOT_DISK_QUOTA_BYTES }, `workspace disk limit: ${why}`);
  const pool = new SlotPool({
    disk,
    root,
    hostRoot: config.REPO_POOL_HOST_DATA_DIR ?? root,
    git,
    treeGit,
    db,
    mirrors,
    access,
    maxSlots: config.MAX_SLOTS,
    maxSlotsPerRepo: config.MAX_SLOTS_PER_REPO,
    warmSlotsPerRepo: config.WARM_SLOTS_PER_REPO,
    diskQuotaBytes: config.SLOT_DISK_QUOTA_BYTES,
    gitOwner,
    slotOwner,
    onEvent: publishSlotEvent,
  });
  await pool.init();
  await mirrors.reconcile();
  const reconciled = await pool.reconcile();
  log.info(reconciled, "reconciled slots with disk");

  const subs = serveRepoPool(bus, pool, log, config.CODEFLEET_HOST);

  let reaping = false;
  const reaper = setInterval(() => {
    if (reaping) return;
    reaping = true;
    (async () => {
      const reclaimed = await pool.reclaimExpired();
      if (reclaimed) log.info({ reclaimed }, "reclaimed expired leases");
      await pool.evictIdle(config.SLOT_IDLE_EVICT_MS);
      await mirrors.evictCold(config.MIRROR_IDLE_EVICT_MS);
    })()
      .catch((err) => log.error({ err }, "reaper failed"))
      .finally(() => {
        reaping = false;
      });
  }, config.REAPER_INTERVAL_MS);

  const gauge = telemetry.meter.createObservableGauge("codefleet_repo_pool_slots", { description: "slots by state" });
  gauge.addCallback(async (r) => {
    const s = await pool.status().catch(() => undefined);
    if (!s) return;
    r.observe(s.slots.warm, { state: "warm" });
    r.observe(s.slots.leased, { state: "leased" });
    r.observe(s.slots.creating, { state: "creating" });
  });

  const app = Fastify({ loggerInstance: log as FastifyBaseLogger });
  installErrorHandling(app);
  installHealthRoutes(app, {
    metrics: guardMetrics(telemetry.metricsHandler, config.METRICS_TOKEN),
    ready: async () => {
      const checks = { nats: nc.isClosed() ? "closed" : "ok", postgres: await pingDatabase(db) };
      return { ok: Object.values(checks).every((v) => v === "ok"), checks };
    },
  });
  app.get("/v1/status", async () => pool.status());
  await app.ready();

  return {
    app,
    pool,
    mirrors,
    db,
    bus,
    log,
    async stop() {
      clearInterval(reaper);
      for (const s of subs) await s.drain().catch(() => undefined);
      await app.close();
      await pool.unmountAll();
      await bus.drain();
      await db.destroy();
      await telemetry.shutdown();
    },
  };
}

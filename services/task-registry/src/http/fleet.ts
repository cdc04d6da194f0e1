import {
  type FleetView,
  type PoolStatus,
  REPO_POOL_SERVICE,
  repoPoolService,
  sumPoolStatus,
  TASK_STATUSES,
  type TaskStatus,
} from "@codefleet/contracts";
import { canAccessTenant, tenantFilter } from "@codefleet/contracts/access";
import type { Bus } from "@codefleet/platform/bus";
import { HttpProblem, principalOf } from "@codefleet/platform/runtime";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { sql } from "kysely";
import type { KnownRunner } from "../fleet/runner-directory.js";
import type { Db } from "../store/database.js";
import { getTaskView } from "../store/task-queries.js";
import type { StoredLogReader } from "./logs.js";

/**
 * Read-only routes the dashboard needs beyond the task routes, computed from the registry's own
 * projections and the bus: `GET /v1/fleet` (runners, running against capacity, queue depth, warm
 * pool, throughput over the last hour) and `GET /v1/tasks/:id/artifacts/:artifactId/text` (an
 * artifact's text through the registry, so a page on this origin can show a diff).
 */

export type FleetDeps = {
  db: Db;
  bus: Bus;
  /** A tenant's quota of running and queued tasks (0: no limit). */
  quota: (tenant: string) => { maxRunning: number; maxQueued: number };
  /** Reads an artifact's text from the artifact-store with the registry's own token; absent when not configured. */
  readArtifact?: StoredLogReader;
  now?: () => Date;
  /** How long repo-pool has to answer its status request. */
  poolStatusTimeoutMs?: number;
  /** The runners' own heartbeats (capacity, running, warm containers); absent: only what the projections know. */
  runnerDirectory?: { live(): KnownRunner[] };
};

const FINISHED = TASK_STATUSES.filter((s) => s !== "queued" && s !== "running") as TaskStatus[];
export const THROUGHPUT_BUCKET_SECONDS = 60;
export const THROUGHPUT_BUCKETS = 60;
/** Larger artifacts are not shown in the page; their download link is. */
export const ARTIFACT_TEXT_MAX_BYTES = 8 * 1024 * 1024;

/**
 * The runners' queue: a subject (lane) per tenant on a work-queue stream, so a message stays there
 * until a runner acks it (the task is taken for good). Per lane: messages still there, of which
 * delivered to a runner and not yet acked (its durable consumer's ack-pending). Only the tenant's
 * own lane for a tenant's token.
 */
async function workQueue(bus: Bus, tenant: string | undefined): Promise<FleetView["workQueue"]> {
  const t = bus.topology;
  const subject = tenant === undefined ? t.subjects.allQueues : t.subjects.queue(tenant);
  const counts = await bus.messagesPerSubject(t.streams.queue.name, subject).catch(() => undefined);
  if (!counts) return null;
  let messages = 0;
  let inProgress = 0;
  const lanes = Object.entries(counts);
  for (const [laneSubject, count] of lanes) {
    const lane = t.subjects.queueTenant(laneSubject);
    if (lane === undefined) continue;
    messages += count;
    const c = t.consumers.runnerQueue(lane);
    const ci = await bus.consumerCounts(c.stream, c.durable).catch(() => undefined);
    inProgress += Math.min(ci?.ackPending ?? 0, count);
  }
  return { pending: messages - inProgress, inProgress, lanes: lanes.length };
}

async function poolStatus(bus: Bus, timeoutMs: number, service = REPO_POOL_SERVICE): Promise<PoolStatus | null> {
  try {
    const reply = await bus.request<PoolStatus>(service, "status", {}, { timeoutMs });
    return reply.ok ? reply.result : null;
  } catch {
    return null; // no responders or no answer in time: shown as unknown
  }
}

export async function fleetView(deps: FleetDeps, tenant: string | undefined): Promise<FleetView> {
  const now = deps.now?.() ?? new Date();
  const since = new Date(now.getTime() - THROUGHPUT_BUCKETS * THROUGHPUT_BUCKET_SECONDS * 1000);
  const sinceIso = since.toISOString();
  const mine = tenant === undefined ? sql`true` : sql`t.tenant = ${tenant}`;
  const db = deps.db;

  const [counts, runners, finished, submitted, allocations, queue, pool] = await Promise.all([
    sql<{ status: string; n: number }>`
      select t.status, count(*)::int as n from tasks t
      where t.status in ('queued', 'running') and ${mine} group by t.status`.execute(db),
    // every attempt of a task that ran within the hour: which runner, since when, and whose task
    sql<{ runner_id: string; last_started: Date; running: number }>`
      select a->>'runnerId' as runner_id,
             max((a->>'startedAt')::timestamptz) as last_started,
             count(*) filter (where t.status = 'running' and (t.view->>'attempt')::int = (a->>'attempt')::int and ${mine})::int as running
      from tasks t, jsonb_array_elements(t.view->'attempts') a
      where (t.status = 'running' or t.finished_at >= ${sinceIso}::timestamptz) and a ? 'runnerId'
      group by 1
      having max((a->>'startedAt')::timestamptz) >= ${sinceIso}::timestamptz
          or count(*) filter (where t.status = 'running' and (t.view->>'attempt')::int = (a->>'attempt')::int) > 0
      order by 2 desc`.execute(db),
    sql<{ bucket: number; status: string; n: number }>`
      select floor(extract(epoch from (t.finished_at - ${sinceIso}::timestamptz)) / ${THROUGHPUT_BUCKET_SECONDS})::int as bucket,
             t.status, count(*)::int as n
      from tasks t
      where t.finished_at >= ${sinceIso}::timestamptz and t.status in (${sql.join(FINISHED)}) and ${mine}
      group by 1, 2`.execute(db),
    sql<{ bucket: number; n: number }>`
      select floor(extract(epoch from (t.submitted_at - ${sinceIso}::timestamptz)) / ${THROUGHPUT_BUCKET_SECONDS})::int as bucket,
             count(*)::int as n
      from tasks t
      where t.submitted_at >= ${sinceIso}::timestamptz and ${mine}
      group by 1`.execute(db),
    sql<{ total: number; warm: number }>`
      select count(*)::int as total, count(*) filter (where e.data->>'warm' = 'true')::int as warm
      from events e join tasks t on t.task_id = e.stream_id
      where e.type = 'slot.allocated' and e.recorded_at >= ${sinceIso}::timestamptz
        and (t.status = 'running' or t.finished_at >= ${sinceIso}::timestamptz) and ${mine}`.execute(db),
    workQueue(deps.bus, tenant),
    poolStatus(deps.bus, deps.poolStatusTimeoutMs ?? 1500),
  ]);
  // named runner hosts (from the live runners' heartbeats) each have their own repo-pool: asked each
  const live = deps.runnerDirectory?.live() ?? [];
  const hostNames = [...new Set(live.flatMap((r) => (r.host ? [r.host] : [])))].sort();
  const hostPools = await Promise.all(hostNames.map((h) => poolStatus(deps.bus, deps.poolStatusTimeoutMs ?? 1500, repoPoolService(h))));
  const hosts = hostNames.map((host, i) => ({
    host,
    pool: hostPools[i] ?? null,
    runners: live.filter((r) => r.host === host).map((r) => r.runnerId),
  }));

  const buckets: FleetView["throughput"]["buckets"] = Array.from({ length: THROUGHPUT_BUCKETS }, (_, i) => ({
    start: new Date(since.getTime() + i * THROUGHPUT_BUCKET_SECONDS * 1000).toISOString(),
    submitted: 0,
    finished: {},
  }));
  const inRange = (b: number) => buckets[Math.min(Math.max(b, 0), THROUGHPUT_BUCKETS - 1)]!;
  for (const r of finished.rows) {
    const f = inRange(Number(r.bucket)).finished;
    f[r.status as TaskStatus] = (f[r.status as TaskStatus] ?? 0) + Number(r.n);
  }
  for (const r of submitted.rows) inRange(Number(r.bucket)).submitted += Number(r.n);
  const count = (s: string) => Number(counts.rows.find((r) => r.status === s)?.n ?? 0);

  return {
    generatedAt: now.toISOString(),
    tenant: tenant ?? "*",
    tasks: { queued: count("queued"), running: count("running") },
    ...mergeRunners(
      runners.rows.map((r) => ({
        runnerId: r.runner_id,
        running: Number(r.running),
        lastStartedAt: new Date(r.last_started).toISOString(),
      })),
      deps.runnerDirectory?.live(),
    ),
    workQueue: queue,
    maxRunning: tenant === undefined ? null : deps.quota(tenant).maxRunning,
    warmPool: sumPoolStatus([pool, ...hostPools]),
    hosts,
    allocations: { total: Number(allocations.rows[0]?.total ?? 0), warm: Number(allocations.rows[0]?.warm ?? 0) },
    throughput: { bucketSeconds: THROUGHPUT_BUCKET_SECONDS, since: sinceIso, buckets },
  };
}

/** Runners from the projections (who ran what) and from their heartbeats (who is there, with what capacity). */
function mergeRunners(fromTasks: FleetView["runners"], live: KnownRunner[] | undefined): Pick<FleetView, "runners" | "capacity"> {
  const byId = new Map(fromTasks.map((r) => [r.runnerId, { ...r }]));
  for (const l of live ?? []) {
    const r = byId.get(l.runnerId) ?? { runnerId: l.runnerId, running: 0 };
    byId.set(l.runnerId, { ...r, concurrency: l.concurrency, active: l.active, warm: l.warm, lastSeenAt: l.lastSeenAt });
  }
  const capacity =
    live && live.length > 0
      ? {
          concurrency: live.reduce((n, r) => n + r.concurrency, 0),
          active: live.reduce((n, r) => n + r.active, 0),
          warmReady: live.reduce((n, r) => n + r.warm.ready, 0),
        }
      : null;
  return { runners: [...byId.values()], capacity };
}

export function installFleetRoutes(app: FastifyInstance, deps: FleetDeps): void {
  app.get(
    "/v1/fleet",
    {
      config: { scope: "tasks:read" },
      schema: {
        summary:
          "The fleet at a glance (scope tasks:read): runners, running against capacity, queue depth, warm pool, throughput of the last hour; task numbers are the token's tenant's",
      },
    },
    async (req) => fleetView(deps, tenantFilter(principalOf(req))),
  );

  app.get(
    "/v1/tasks/:id/artifacts/:artifactId/text",
    {
      config: { scope: "artifacts:read" },
      schema: {
        summary: `An artifact's content as text, through the registry (scope artifacts:read; up to ${ARTIFACT_TEXT_MAX_BYTES} bytes)`,
        params: Type.Object({ id: Type.String({ maxLength: 128 }), artifactId: Type.String({ maxLength: 200 }) }),
      },
    },
    async (req, reply) => {
      const { id, artifactId } = req.params as { id: string; artifactId: string };
      const principal = principalOf(req);
      const view = await getTaskView(deps.db, id);
      if (!view || !canAccessTenant(principal, view.tenant)) throw new HttpProblem(404, "task_not_found", `no task '${id}'`);
      const artifact = view.artifacts.find((a) => a.artifactId === artifactId);
      if (!artifact) throw new HttpProblem(404, "artifact_not_found", `task '${id}' has no artifact '${artifactId}'`);
      if (artifact.size > ARTIFACT_TEXT_MAX_BYTES)
        throw new HttpProblem(
          413,
          "artifact_too_large",
          `'${artifact.name}' is ${artifact.size} bytes; download it from the artifact-store`,
          {
            size: artifact.size,
          },
        );
      if (!deps.readArtifact)
        throw new HttpProblem(503, "artifact_store_unconfigured", "the registry has no artifact-store to read from (ARTIFACT_STORE_URL)");
      const text = await deps.readArtifact(artifactId);
      return reply.header("cache-control", "private, max-age=3600").type("text/plain; charset=utf-8").send(text);
    },
  );
}

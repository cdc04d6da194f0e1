/**
 * Fairness across tenants on the shared runner queue: tenant A queues 200 tasks, then tenant B
 * submits 10. Reports each tenant's wait from being queued to its run starting (`run.started`),
 * B's first start against A's, with the runner's per-tenant lanes ("fair") and with every task on
 * one lane, which is what a single shared queue gives ("fifo", the runner before tenant lanes).
 *
 *   npx tsx --conditions=source bench/fairness.ts [--a 200] [--b 10]    (RUNNER_CONCURRENCY, default 4)
 */
import { chmodSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadArtifactStoreConfig } from "@codefleet/artifact-store/config";
import { startArtifactStore } from "@codefleet/artifact-store/service";
import { type CodefleetEventOf, createEvent, newTaskId, parseEvent, type TaskSpec } from "@codefleet/contracts";
import { Bus, connectNats } from "@codefleet/platform/bus";
import { loadRepoPoolConfig } from "@codefleet/repo-pool/config";
import { startRepoPool } from "@codefleet/repo-pool/service";
import { createTestDatabase, createTestRepo, removeDataDir, startNats, startPostgres, testNamespace } from "@codefleet/test/support";
import { loadRunnerConfig } from "../services/runner/src/config.js";
import { startRunner } from "../services/runner/src/service.js";
import { fmt, header, knobs, summarize } from "./lib.js";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) || dflt : dflt;
};
const A = arg("a", 200);
const B = arg("b", 10);

async function main() {
  header(`fairness: tenant A queues ${A} tasks, then tenant B submits ${B}`);
  const [nats, pg] = await Promise.all([startNats(), startPostgres()]);
  const db = await createTestDatabase(pg.url);
  const dir = mkdtempSync(join(tmpdir(), "bench-fair-"));
  chmodSync(dir, 0o755);
  const repo = await createTestRepo({ "README.md": "# bench\n" });
  const env: Record<string, string> = {
    DATABASE_URL: db.url,
    NATS_URL: nats.url,
    CODEFLEET_NAMESPACE: testNamespace(),
    CODEFLEET_API_TOKENS: "t",
    CODEFLEET_API_TOKEN: "t",
    ARTIFACT_DATA_DIR: join(dir, "artifacts"),
    REPO_POOL_DATA_DIR: join(dir, "pool"),
    RUNNER_CONCURRENCY: "4",
    CODEFLEET_REPO_FILE_ROOTS: repo.root,
    LOG_LEVEL: "error",
    ...knobs(["RUNNER_CONCURRENCY", "WARM_CONTAINERS_MAX", "LOG_LEVEL"]),
  };
  const store = await startArtifactStore(loadArtifactStoreConfig(env));
  env.ARTIFACT_STORE_URL = await store.app.listen({ port: 0, host: "127.0.0.1" });
  const pool = await startRepoPool(loadRepoPoolConfig(env));
  const runner = await startRunner(loadRunnerConfig(env), { env });
  const nc = await connectNats({ servers: nats.url, name: "bench" });
  const bus = await Bus.create(nc, { namespace: env.CODEFLEET_NAMESPACE });
  const t = bus.topology;
  const spec: TaskSpec = {
    repo: { url: repo.fileUrl, ref: "main" },
    title: "bench",
    prompt: "p",
    agent: { kind: "script", steps: [{ run: "echo hello > HELLO.txt" }] },
  };

  /** Records and queues a task, as the registry does; `lane` overrides the queue subject (fifo mode). */
  const queue = async (tenant: string, lane?: string) => {
    const event = createEvent("task.submitted", { taskId: newTaskId(), producer: "bench", data: { spec, submittedVia: "bus", tenant } });
    await bus.publish(event);
    if (lane === undefined) await bus.enqueueTask(event);
    else await bus.js.publish(t.subjects.queue(lane), JSON.stringify(event), { msgID: `queue.${event.taskId}` });
    return { taskId: event.taskId, queuedAt: Date.now() };
  };
  const startedAt = async (taskId: string): Promise<number> => {
    const m = await bus.jsm.streams.getMessage(t.streams.events.name, { last_by_subj: t.subjects.event(taskId, "run.started") });
    return Date.parse((parseEvent(m?.json()) as CodefleetEventOf<"run.started">).occurredAt);
  };
  const finishedCount = async () => {
    const info = await bus.jsm.streams.info(t.streams.events.name, { subjects_filter: t.subjects.eventsOfType("run.finished") });
    return Object.keys(info.state.subjects ?? {}).length;
  };

  const runMode = async (mode: "fair" | "fifo") => {
    const before = await finishedCount();
    const lane = mode === "fifo" ? "shared" : undefined;
    const tenantA: { taskId: string; queuedAt: number }[] = [];
    const tenantB: { taskId: string; queuedAt: number }[] = [];
    for (let i = 0; i < A; i++) tenantA.push(await queue("tenant-a", lane));
    for (let i = 0; i < B; i++) tenantB.push(await queue("tenant-b", lane));
    const t0 = Date.now();
    while ((await finishedCount()) < before + A + B) {
      if (Date.now() - t0 > 30 * 60_000) throw new Error("tasks did not finish within 30 minutes");
      await new Promise((r) => setTimeout(r, 500));
    }
    const waits = async (xs: { taskId: string; queuedAt: number }[]) =>
      Promise.all(xs.map(async (x) => (await startedAt(x.taskId)) - x.queuedAt));
    const a = await waits(tenantA);
    const b = await waits(tenantB);
    const bFirst = Math.min(...b);
    const aFirst = Math.min(...a);
    const sa = summarize(a);
    const sb = summarize(b);
    process.stdout.write(
      `${mode.padEnd(5)} A: first ${fmt(aFirst)}, p50 ${fmt(sa.p50)}, last ${fmt(Math.max(...a))}   ` +
        `B: first ${fmt(bFirst)}, p50 ${fmt(sb.p50)}, last ${fmt(Math.max(...b))}   ` +
        `B's first start / A's p50 wait: ${(bFirst / sa.p50).toFixed(3)}×; whole run ${fmt(Date.now() - t0)}\n`,
    );
    return { bFirst, bLast: Math.max(...b), aP50: sa.p50 };
  };

  try {
    await queue("warm-up").then(async () => {
      const before = Date.now();
      while ((await finishedCount()) < 1 && Date.now() - before < 120_000) await new Promise((r) => setTimeout(r, 200));
    });
    const fair = await runMode("fair");
    const fifo = await runMode("fifo");
    process.stdout.write(
      `\nB's wait to its first start: fair ${fmt(fair.bFirst)} vs one shared queue ${fmt(fifo.bFirst)} (${(fifo.bFirst / Math.max(1, fair.bFirst)).toFixed(1)}× shorter); ` +
        `to its last: ${fmt(fair.bLast)} vs ${fmt(fifo.bLast)}\n`,
    );
  } finally {
    await runner.stop();
    await pool.stop();
    await store.stop();
    await nc.drain();
    await db.drop();
    await Promise.allSettled([nats.stop(), pg.stop()]);
    removeDataDir(dir);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

/**
 * Runner start latency: from the task.submitted publish ack to the first command running in the
 * task's container (p50/p95), per-task overhead against a raw `docker run` of the same image doing
 * the same work (ratio, same run), and throughput at concurrency 1, 5 and 10.
 *
 *   npx tsx --conditions=source bench/runner-start.ts [--tasks 20]
 */
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { loadArtifactStoreConfig } from "@codefleet/artifact-store/config";
import { startArtifactStore } from "@codefleet/artifact-store/service";
import { createEvent, newTaskId, parseEvent, type TaskSpec } from "@codefleet/contracts";
import { Bus, connectNats } from "@codefleet/platform/bus";
import { loadRepoPoolConfig } from "@codefleet/repo-pool/config";
import { startRepoPool } from "@codefleet/repo-pool/service";
import { createTestDatabase, createTestRepo, removeDataDir, startNats, startPostgres, testNamespace } from "@codefleet/test/support";
import { loadRunnerConfig } from "../services/runner/src/config.js";
import type { DockerDriver } from "../services/runner/src/execution/docker-driver.js";
import { startRunner } from "../services/runner/src/service.js";
import { fmt, header, knobs, summarize } from "./lib.js";

/** The floor: from asking the engine for an exec in a running container (as the runner does) to the command running. */
async function execFloor(driver: DockerDriver, n: number): Promise<number[]> {
  const c = await driver.docker.createContainer({
    Image: IMAGE,
    Cmd: ["sleep", "infinity"],
    User: "1000:1000",
    HostConfig: { Init: true },
  });
  await c.start();
  const out: number[] = [];
  try {
    for (let i = 0; i < n + 2; i++) {
      const t0 = Date.now();
      const exec = await c.exec({
        Cmd: ["timeout", "-s", "KILL", "60", "sh", "-c", "date +%s%3N"],
        AttachStdout: true,
        AttachStderr: true,
      });
      const stream = await exec.start({ hijack: true, stdin: false });
      const chunks: Buffer[] = [];
      stream.on("data", (b: Buffer) => chunks.push(b));
      await new Promise((r) => stream.on("end", r));
      const ts = /(\d{13})/.exec(Buffer.concat(chunks).toString("latin1"))?.[1];
      if (ts && i >= 2) out.push(Number(ts) - t0);
    }
  } finally {
    await c.remove({ force: true });
  }
  return out;
}

const execFileP = promisify(execFile);
const TASKS = Number(process.argv[process.argv.indexOf("--tasks") + 1] ?? 20) || 20;
const IMAGE = process.env.CODEFLEET_AGENT_IMAGE ?? "codefleet/agent:latest";
const WORK = "echo hello > HELLO.txt";

async function main() {
  header("runner: start latency, overhead and throughput");
  const [nats, pg] = await Promise.all([startNats(), startPostgres()]);
  const db = await createTestDatabase(pg.url);
  const dir = mkdtempSync(join(tmpdir(), "bench-runner-"));
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
    AGENT_IMAGE: IMAGE,
    RUNNER_CONCURRENCY: "10",
    CODEFLEET_REPO_FILE_ROOTS: repo.root,
    LOG_LEVEL: "error",
    ...knobs([
      "WARM_CONTAINERS_MAX",
      "WARM_CONTAINERS_PER_CLASS",
      "MIRROR_REFRESH_MS",
      "SLOT_DISK_LIMIT",
      "RUNNER_CONCURRENCY",
      "LOG_LEVEL",
    ]),
  };
  const store = await startArtifactStore(loadArtifactStoreConfig(env));
  env.ARTIFACT_STORE_URL = await store.app.listen({ port: 0, host: "127.0.0.1" });
  const pool = await startRepoPool(loadRepoPoolConfig(env));
  const runner = await startRunner(loadRunnerConfig(env), { env });
  const nc = await connectNats({ servers: nats.url, name: "bench" });
  const bus = await Bus.create(nc, { namespace: env.CODEFLEET_NAMESPACE });
  const spec: TaskSpec = {
    repo: { url: repo.fileUrl, ref: "main" },
    title: "bench",
    prompt: "p",
    agent: { kind: "script", steps: [{ run: `date +%s%3N; ${WORK}` }] },
    test: { command: "test -f HELLO.txt" },
  };

  const firstCommandAt = async (taskId: string): Promise<number> => {
    const oc = await bus.js.consumers.get(bus.topology.streams.logs.name, { filter_subjects: bus.topology.subjects.logs(taskId) });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const m = await oc.next({ expires: 5000 });
      if (!m) {
        if (Date.now() > deadline) throw new Error(`no command output of ${taskId} within 120 s`);
        continue;
      }
      const c = m.json<{ stream: string; text: string }>();
      const ts = c.stream === "stdout" ? /^(\d{13})$/m.exec(c.text)?.[1] : undefined;
      if (ts) return Number(ts);
    }
  };
  const finished = async (taskId: string) => {
    for (;;) {
      const m = await bus.jsm.streams
        .getMessage(bus.topology.streams.events.name, { last_by_subj: bus.topology.subjects.event(taskId, "run.finished") })
        .catch(() => null);
      if (m) return parseEvent(m.json());
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const runTask = async () => {
    const taskId = newTaskId();
    const event = createEvent("task.submitted", { taskId, producer: "bench", data: { spec, submittedVia: "bus" } });
    await bus.publish(event); // the registry's part (it is not running here): record, then queue
    await bus.enqueueTask(event);
    const acked = Date.now();
    const [first, done] = await Promise.all([firstCommandAt(taskId), finished(taskId)]);
    return { startMs: first - acked, totalMs: Date.parse(done.occurredAt) - acked };
  };

  await runTask(); // warm-up: creates the mirror and a warm slot
  // a task arriving at an idle runner (the previous one's clean-up and the pool's refill are done)
  const idle = [];
  for (let i = 0; i < TASKS; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    idle.push(await runTask());
  }
  const idleStart = summarize(idle.map((s) => s.startMs));
  // back to back: each task submitted as the one before finishes (its clean-up and the refill run meanwhile)
  const seq = [];
  for (let i = 0; i < TASKS; i++) seq.push(await runTask());
  const start = summarize(seq.map((s) => s.startMs));
  const total = summarize(seq.map((s) => s.totalMs));
  const raw: number[] = [];
  const rawDir = mkdtempSync(join(tmpdir(), "bench-raw-"));
  chmodSync(rawDir, 0o777);
  for (let i = 0; i < Math.min(TASKS, 10); i++) {
    const t0 = performance.now();
    await execFileP("docker", [
      "run",
      "--rm",
      "-u",
      "1000:1000",
      "-v",
      `${rawDir}:/workspace`,
      "-w",
      "/workspace",
      IMAGE,
      "sh",
      "-c",
      `${WORK} && test -f HELLO.txt`,
    ]);
    raw.push(performance.now() - t0);
  }
  const r = summarize(raw);
  const floor = summarize(await execFloor(runner.driver as DockerDriver, 20));
  process.stdout.write(
    `submit-ack → first command in the container, idle runner: p50 ${fmt(idleStart.p50)} p95 ${fmt(idleStart.p95)} (n=${idleStart.n}; anchors: Daytona 0.11 s, E2B 0.44 s) | ÷ floor: p50 ${(idleStart.p50 / floor.p50).toFixed(1)}x\n`,
  );
  process.stdout.write(
    `submit-ack → first command in the container, back to back: p50 ${fmt(start.p50)} p95 ${fmt(start.p95)} (n=${start.n})\n`,
  );
  process.stdout.write(
    `floor: a docker exec into a running container until its command runs, p50 ${fmt(floor.p50)} p95 ${fmt(floor.p95)} | first command ÷ floor: p50 ${(start.p50 / floor.p50).toFixed(1)}x, p95 ${(start.p95 / floor.p95).toFixed(1)}x\n`,
  );
  process.stdout.write(
    `whole task (fetch, implement, test, push, artifacts, clean-up): p50 ${fmt(total.p50)} p95 ${fmt(total.p95)} | raw docker run of the same work: p50 ${fmt(r.p50)} | overhead ratio ${(total.p50 / r.p50).toFixed(1)}x\n`,
  );
  for (const c of [1, 5, 10]) {
    const n = c * 4;
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: c }, async () => {
        while (next < n) {
          next++;
          await runTask();
        }
      }),
    );
    const s = (performance.now() - t0) / 1000;
    process.stdout.write(
      `concurrency ${String(c).padStart(2)}: ${n} tasks in ${s.toFixed(1)} s = ${((n / s) * 60).toFixed(0)} tasks/min\n`,
    );
  }
  await runner.stop();
  await pool.stop();
  await store.stop();
  await nc.drain();
  await db.drop();
  await Promise.allSettled([nats.stop(), pg.stop()]);
  repo.cleanup();
  removeDataDir(dir);
  rmSync(rawDir, { recursive: true, force: true });
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

/**
 * Environment cache: the same task on a repository with a real npm dependency set (typescript,
 * undici, yaml, kysely, typebox: about 30 MB installed, vendored as tarballs so that `npm ci`
 * runs offline in the task's network-less container), first (setup runs, its node_modules is
 * kept) versus cached (node_modules copied in). Prints the setup phase and the whole task, first
 * and cached (p50 of --tasks cached runs), and their ratio.
 *
 *   npx tsx --conditions=source bench/env-cache.ts [--tasks 5]
 */
import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { loadArtifactStoreConfig } from "@codefleet/artifact-store/config";
import { startArtifactStore } from "@codefleet/artifact-store/service";
import { type CodefleetEvent, createEvent, newTaskId, parseEvent, type TaskSpec } from "@codefleet/contracts";
import { Bus, connectNats } from "@codefleet/platform/bus";
import { loadRepoPoolConfig } from "@codefleet/repo-pool/config";
import { startRepoPool } from "@codefleet/repo-pool/service";
import {
  createTestDatabase,
  createTestRepo,
  git,
  REPO_ROOT,
  removeDataDir,
  startNats,
  startPostgres,
  testNamespace,
} from "@codefleet/test/support";
import { loadRunnerConfig } from "../services/runner/src/config.js";
import { startRunner } from "../services/runner/src/service.js";
import { fmt, header, knobs, summarize } from "./lib.js";

const execFileP = promisify(execFile);
const TASKS = Number(process.argv[process.argv.indexOf("--tasks") + 1] ?? 5) || 5;
const IMAGE = process.env.CODEFLEET_AGENT_IMAGE ?? "codefleet/agent:latest";
const PACKAGES = ["typescript", "undici", "yaml", "kysely", "@sinclair/typebox"];

/** A repository whose dependencies are real packages, packed from this checkout's node_modules. */
async function dependencyRepo() {
  const repo = await createTestRepo({ "README.md": "# env bench\n", ".gitignore": "node_modules/\n" }, "deps.git");
  const vendor = join(repo.work, "vendor");
  mkdirSync(vendor);
  const deps: Record<string, string> = {};
  for (const name of PACKAGES) {
    const { stdout } = await execFileP("npm", [
      "pack",
      "--silent",
      "--ignore-scripts",
      "--pack-destination",
      vendor,
      join(REPO_ROOT, "node_modules", name),
    ]);
    deps[name] = `file:vendor/${stdout.trim().split("\n").at(-1)}`;
  }
  writeFileSync(join(repo.work, "package.json"), JSON.stringify({ name: "env-bench", private: true, dependencies: deps }, null, 2));
  await execFileP("npm", ["install", "--package-lock-only", "--offline", "--no-audit", "--no-fund", "--ignore-scripts"], {
    cwd: repo.work,
  });
  await git(repo.work, "add", "-A");
  await git(repo.work, "commit", "--quiet", "-m", "dependencies");
  await git(repo.work, "push", "--quiet", "origin", "main");
  return repo;
}

async function main() {
  header("environment cache: a real npm dependency set, first task vs cached");
  const [nats, pg] = await Promise.all([startNats(), startPostgres()]);
  const db = await createTestDatabase(pg.url);
  const dir = mkdtempSync(join(tmpdir(), "bench-env-"));
  chmodSync(dir, 0o755);
  const repo = await dependencyRepo();
  const namespace = testNamespace();
  const env: Record<string, string> = {
    DATABASE_URL: db.url,
    NATS_URL: nats.url,
    CODEFLEET_NAMESPACE: namespace,
    CODEFLEET_API_TOKENS: "t",
    CODEFLEET_API_TOKEN: "t",
    ARTIFACT_DATA_DIR: join(dir, "artifacts"),
    REPO_POOL_DATA_DIR: join(dir, "pool"),
    AGENT_IMAGE: IMAGE,
    CODEFLEET_REPO_FILE_ROOTS: repo.root,
    LOG_LEVEL: "error",
    ...knobs(["WARM_CONTAINERS_MAX", "SLOT_DISK_LIMIT", "LOG_LEVEL"]),
  };
  const store = await startArtifactStore(loadArtifactStoreConfig(env));
  env.ARTIFACT_STORE_URL = await store.app.listen({ port: 0, host: "127.0.0.1" });
  const pool = await startRepoPool(loadRepoPoolConfig(env));
  const runner = await startRunner(loadRunnerConfig(env), { env });
  const nc = await connectNats({ servers: nats.url, name: "bench" });
  const bus = await Bus.create(nc, { namespace });
  const spec: TaskSpec = {
    repo: { url: repo.fileUrl, ref: "main" },
    title: "bench: uses its dependencies",
    prompt: "p",
    setup: { command: "npm ci --offline --no-audit --no-fund", cachePaths: ["node_modules"] },
    agent: {
      kind: "script",
      steps: [{ run: "node -e \"require('typescript'); require('undici'); require('yaml')\" && echo ok > USED.txt" }],
    },
    test: { command: "node -e \"console.log(require('typescript').version)\"" },
    push: { enabled: false },
    limits: { timeoutSeconds: 600, memoryMb: 1024, cpus: 1 },
  };

  const events = async (taskId: string): Promise<CodefleetEvent[]> => {
    for (;;) {
      const m = await bus.jsm.streams
        .getMessage(bus.topology.streams.events.name, { last_by_subj: bus.topology.subjects.event(taskId, "run.finished") })
        .catch(() => null);
      if (m) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const info = await bus.jsm.streams.info(bus.topology.streams.events.name, {
      subjects_filter: bus.topology.subjects.eventsOfTask(taskId),
    });
    const total = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    const oc = await bus.js.consumers.get(bus.topology.streams.events.name, {
      filter_subjects: bus.topology.subjects.eventsOfTask(taskId),
    });
    const out: CodefleetEvent[] = [];
    for await (const m of await oc.fetch({ max_messages: total, expires: 2000 })) {
      out.push(parseEvent(m.json()));
      if (out.length >= total) break;
    }
    return out;
  };
  const runTask = async () => {
    const taskId = newTaskId();
    const t0 = Date.now();
    const event = createEvent("task.submitted", { taskId, producer: "bench", data: { spec, submittedVia: "bus" } });
    await bus.publish(event); // the registry's part (it is not running here): record, then queue
    await bus.enqueueTask(event);
    const all = await events(taskId);
    const done = all.find((e) => e.type === "run.finished");
    const setup = all.find((e) => e.type === "phase.finished" && e.data.phase === "setup");
    if (done?.type !== "run.finished" || done.data.status !== "succeeded" || setup?.type !== "phase.finished")
      throw new Error(`task ${taskId} did not succeed: ${JSON.stringify(done?.data)}`);
    return {
      setupMs: setup.data.durationMs,
      totalMs: Date.parse(done.occurredAt) - t0,
      cache: String(setup.data.facts?.cache),
      bytes: Number(setup.data.facts?.bytes ?? 0),
    };
  };

  const first = await runTask();
  const cached = [];
  for (let i = 0; i < TASKS; i++) cached.push(await runTask());
  const setup = summarize(cached.map((c) => c.setupMs));
  const total = summarize(cached.map((c) => c.totalMs));
  process.stdout.write(
    `first task: setup ${fmt(first.setupMs)} (${first.cache}, ${(first.bytes / 1e6).toFixed(1)} MB kept), whole task ${fmt(first.totalMs)}\n`,
  );
  process.stdout.write(
    `cached (n=${cached.length}, ${[...new Set(cached.map((c) => c.cache))].join("/")}): setup p50 ${fmt(setup.p50)}, whole task p50 ${fmt(total.p50)} | setup ${(first.setupMs / setup.p50).toFixed(1)}x faster, whole task ${(first.totalMs / total.p50).toFixed(1)}x faster\n`,
  );
  await runner.stop();
  await pool.stop();
  await store.stop();
  await nc.drain();
  await db.drop();
  await Promise.allSettled([nats.stop(), pg.stop()]);
  const { stdout } = await execFileP("docker", ["volume", "ls", "-q", "--filter", `label=codefleet.deployment=${namespace}`]);
  for (const v of stdout.split("\n").filter(Boolean)) await execFileP("docker", ["volume", "rm", "-f", v]).catch(() => undefined);
  repo.cleanup();
  removeDataDir(dir);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

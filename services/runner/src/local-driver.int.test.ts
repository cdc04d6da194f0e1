import { chmodSync, mkdtempSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadArtifactStoreConfig } from "@codefleet/artifact-store/config";
import { type ArtifactStore, startArtifactStore } from "@codefleet/artifact-store/service";
import { type CodefleetEvent, createEvent, newTaskId, parseEvent, type TaskSpec } from "@codefleet/contracts";
import { Bus, connectNats } from "@codefleet/platform/bus";
import { loadRepoPoolConfig } from "@codefleet/repo-pool/config";
import { type RepoPoolService, startRepoPool } from "@codefleet/repo-pool/service";
import { createTestDatabase, createTestRepo, git, removeDataDir, type TestRepo, testNamespace, waitFor } from "@codefleet/test/support";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadRunnerConfig } from "./config.js";
import { findMarkedProcesses, runnerKey } from "./execution/local-process-driver.js";
import { type RunnerService, startRunner } from "./service.js";

/**
 * The whole runner (NATS, repo-pool, artifact-store, fencing, phases) with EXECUTION_DRIVER=local:
 * tasks run as processes on this host, and no Docker engine is reachable (its socket points
 * nowhere), so nothing here can have gone through Docker.
 */

const TOKEN = "runner-local-test-token";
const RUNNER_ID = `runner-local-${testNamespace()}`;

let repo: TestRepo;
let nc: NatsConnection;
let bus: Bus;
let artifactStore: ArtifactStore;
let pool: RepoPoolService;
let runner: RunnerService;
let env: Record<string, string>;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  repo = await createTestRepo({ "README.md": "# sample\n" });
  const database = await createTestDatabase(inject("databaseUrl"));
  cleanups.push(database.drop);
  const dataDir = mkdtempSync(join(tmpdir(), "cf-runner-local-"));
  chmodSync(dataDir, 0o755); // the agents' user (uid 1000 when the runner is root) reaches the slots
  cleanups.push(() => removeDataDir(dataDir));
  env = {
    DATABASE_URL: database.url,
    NATS_URL: inject("natsUrl"),
    CODEFLEET_NAMESPACE: testNamespace(),
    CODEFLEET_API_TOKENS: TOKEN,
    CODEFLEET_API_TOKEN: TOKEN,
    ARTIFACT_DATA_DIR: join(dataDir, "artifacts"),
    REPO_POOL_DATA_DIR: join(dataDir, "repo-pool"),
    REAPER_INTERVAL_MS: "500",
    RUNNER_ID,
    RUNNER_HEARTBEAT_MS: "1000",
    RUNNER_ACK_WAIT_MS: "4000",
    EXECUTION_DRIVER: "local",
    LOCAL_DRIVER_ALLOW_UNISOLATED: "true",
    DOCKER_SOCKET: join(dataDir, "no-docker-here.sock"),
    CODEFLEET_REPO_FILE_ROOTS: tmpdir(),
    LOG_LEVEL: "error",
  };
  artifactStore = await startArtifactStore(loadArtifactStoreConfig(env));
  env.ARTIFACT_STORE_URL = await artifactStore.app.listen({ port: 0, host: "127.0.0.1" });
  pool = await startRepoPool(loadRepoPoolConfig(env));
  // a secret of the runner's own process: a task's processes must never see it
  process.env.CODEFLEET_SECRET_LOCAL_E2E = "runner-only-secret";
  runner = await startRunner(loadRunnerConfig(env), { env });
  nc = await connectNats({ servers: inject("natsUrl"), name: "runner-local-test" });
  bus = await Bus.create(nc, { namespace: env.CODEFLEET_NAMESPACE });
}, 120_000);

afterAll(async () => {
  delete process.env.CODEFLEET_SECRET_LOCAL_E2E;
  await runner?.stop();
  await pool?.stop();
  await artifactStore?.stop();
  await nc?.drain();
  for (const c of cleanups.reverse()) await c();
  repo?.cleanup();
  // this runner's (empty) directory of run directories
  await rm(join(tmpdir(), "codefleet-local", runnerKey(RUNNER_ID)), { recursive: true, force: true });
});

function spec(overrides: Partial<TaskSpec> = {}): TaskSpec {
  return {
    repo: { url: repo.fileUrl, ref: "main" },
    title: "add a greeting",
    prompt: "create HELLO.txt",
    agent: { kind: "script", steps: [{ run: "echo 'hello from a local process' > HELLO.txt" }] },
    test: { command: "grep -q 'local process' HELLO.txt" },
    ...overrides,
  };
}

async function submit(s: TaskSpec): Promise<string> {
  const taskId = newTaskId();
  const event = createEvent("task.submitted", { taskId, producer: "test", data: { spec: s, submittedVia: "bus" } });
  await bus.publish(event);
  await bus.enqueueTask(event);
  return taskId;
}

async function finished(taskId: string, timeoutMs = 60_000) {
  let result: Extract<CodefleetEvent, { type: "run.finished" }> | undefined;
  await waitFor(
    `run.finished of ${taskId}`,
    async () => {
      const m = await bus.jsm.streams
        .getMessage(bus.topology.streams.events.name, { last_by_subj: bus.topology.subjects.event(taskId, "run.finished") })
        .catch(() => null);
      if (m) result = parseEvent(m.json()) as typeof result;
      return m !== null && m !== undefined;
    },
    timeoutMs,
    200,
  );
  return result as NonNullable<typeof result>;
}

async function readLogs(taskId: string): Promise<string> {
  const oc = await bus.js.consumers.get(bus.topology.streams.logs.name, { filter_subjects: bus.topology.subjects.logs(taskId) });
  let text = "";
  for (;;) {
    const m = await oc.next({ expires: 1000 });
    if (!m) break;
    text += (m.json() as { text: string }).text;
    if (m.info.pending === 0) break;
  }
  return text;
}

async function phasesOf(taskId: string): Promise<string[][]> {
  const oc = await bus.js.consumers.get(bus.topology.streams.events.name, { filter_subjects: bus.topology.subjects.eventsOfTask(taskId) });
  const out: string[][] = [];
  for (;;) {
    const m = await oc.next({ expires: 1000 });
    if (!m) break;
    const e = parseEvent(m.json());
    if (e.type === "phase.finished") out.push([e.data.phase, e.data.outcome]);
    if (m.info.pending === 0) break;
  }
  return out;
}

/** Processes any run of this runner left behind (none, once its tasks are over). */
async function leftovers(): Promise<number> {
  return (await findMarkedProcesses(`${runnerKey(RUNNER_ID)}:`)).length;
}

describe("runner with the local-process driver (no Docker)", () => {
  it("is ready without a Docker engine, and says which driver it runs", async () => {
    expect(runner.driver.name).toBe("local");
    expect(runner.warmPool).toBeUndefined();
    const ready = await runner.app.inject({ method: "GET", url: "/readyz" });
    expect(ready.statusCode, ready.body).toBe(200);
    expect(ready.json()).toMatchObject({ checks: { nats: "ok", local: "ok" } });
  });

  it("runs a script task end to end: fetch, implement, test and push as local processes", async () => {
    const taskId = await submit(
      spec({
        agent: {
          kind: "script",
          steps: [
            // the agent's own git works on the tree as in a container
            { run: 'test "$(git rev-parse --abbrev-ref HEAD)" = codefleet/work && git status --porcelain | wc -l | grep -qx 0' },
            { run: "echo 'hello from a local process' > HELLO.txt && cd /workspace && test -f HELLO.txt" },
            { patch: "--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n # sample\n+patched locally\n" },
          ],
        },
        // nothing of the runner's environment reaches the task
        test: {
          command: 'grep -q "local process" HELLO.txt && [ -z "$CODEFLEET_SECRET_LOCAL_E2E" ] && ! env | grep -q runner-only-secret',
        },
      }),
    );
    const done = await finished(taskId);
    expect(done.data, `${done.data.reason}\n${await readLogs(taskId)}`).toMatchObject({
      status: "succeeded",
      branch: `codefleet/${taskId}`,
    });
    const sha = await git(repo.bare, "rev-parse", `refs/heads/codefleet/${taskId}`);
    expect(done.data.commitSha).toBe(sha);
    expect(await git(repo.bare, "show", `${sha}:HELLO.txt`)).toBe("hello from a local process");
    expect(await git(repo.bare, "show", `${sha}:README.md`)).toBe("# sample\npatched locally");
    expect(await phasesOf(taskId)).toEqual([
      ["fetch", "succeeded"],
      ["implement", "succeeded"],
      ["test", "succeeded"],
      ["rebase", "skipped"],
      ["push", "succeeded"],
    ]);
    expect(await runner.driver.running(RUNNER_ID)).toBe(0);
    expect(await leftovers()).toBe(0);
    expect(await readdir(join(tmpdir(), "codefleet-local", runnerKey(RUNNER_ID)))).toEqual([]);
  });

  it("runs a command agent: the prompt file under /tmp/codefleet is the run's own", async () => {
    const taskId = await submit(
      spec({
        agent: {
          kind: "command",
          argv: [
            "sh",
            "-c",
            'head -n 1 "$1" > HELLO.txt && case "$1" in "$TMPDIR"/codefleet/prompt.md) ;; *) exit 1 ;; esac',
            "agent",
            "{prompt_file}",
          ],
        },
        test: { command: "grep -qx '# add a greeting' HELLO.txt" },
      }),
    );
    const done = await finished(taskId);
    expect(done.data, done.data.status === "succeeded" ? "" : await readLogs(taskId)).toMatchObject({ status: "succeeded" });
    expect(await git(repo.bare, "show", `refs/heads/codefleet/${taskId}:HELLO.txt`)).toBe("# add a greeting");
  });

  it("times a task out and leaves none of its processes behind", async () => {
    const taskId = await submit(
      spec({
        agent: { kind: "script", steps: [{ run: "sleep 120 & setsid sleep 121 > /dev/null 2>&1 < /dev/null & wait" }] },
        limits: { timeoutSeconds: 10, memoryMb: 512, cpus: 0.5 },
      }),
    );
    const done = await finished(taskId, 40_000);
    expect(done.data).toMatchObject({ status: "timed_out", reasonCode: "task_timeout" });
    await waitFor("no processes left", async () => (await leftovers()) === 0, 5000, 100);
    expect(await runner.driver.running(RUNNER_ID)).toBe(0);
  });

  it("stops a canceled task within 5 seconds", async () => {
    const taskId = await submit(spec({ agent: { kind: "script", steps: [{ run: "echo working; sleep 120" }] } }));
    await waitFor("the agent to run", async () => (await leftovers()) > 0, 30_000, 100);
    const t0 = Date.now();
    await bus.publish(createEvent("task.cancel_requested", { taskId, producer: "test", data: { reason: "no longer needed" } }));
    const done = await finished(taskId, 15_000);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(done.data.status).toBe("canceled");
    await waitFor("no processes left", async () => (await leftovers()) === 0, 5000, 100);
  });
});

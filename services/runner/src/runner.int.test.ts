import { execFile, execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ArtifactStoreClient } from "@codefleet/artifact-store/client";
import { loadArtifactStoreConfig } from "@codefleet/artifact-store/config";
import { type ArtifactStore, startArtifactStore } from "@codefleet/artifact-store/service";
import { type CodefleetEvent, createEvent, type EventData, newTaskId, parseEvent, type TaskSpec } from "@codefleet/contracts";
import { Bus, connectNats } from "@codefleet/platform/bus";
import { loadRepoPoolConfig } from "@codefleet/repo-pool/config";
import { type RepoPoolService, startRepoPool } from "@codefleet/repo-pool/service";
import {
  commitFile,
  createTestDatabase,
  createTestRepo,
  git,
  removeDataDir,
  spawnService,
  startScriptedAnthropic,
  startScriptedOpenAI,
  type TestRepo,
  testNamespace,
  waitFor,
} from "@codefleet/test/support";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadRunnerConfig } from "./config.js";
import { startGitHubServer } from "./pull-requests/forge-servers.test.js";
import { type RunnerService, startRunner } from "./service.js";

const execFileP = promisify(execFile);
/** Is runsc registered with this Docker engine? (CI registers it: .ci/run.) */
function runscInstalled(): boolean {
  try {
    return execFileSync("docker", ["info", "--format", "{{json .Runtimes}}"], { encoding: "utf8" }).includes('"runsc"');
  } catch {
    return false;
  }
}
const TOKEN = "runner-test-token";
const SECRET = "sk-live-TOPSECRET-0123456789abcdef";
const ANTHROPIC_KEY = "sk-ant-scripted-5f4e3d2c1b0a";
const OPENAI_KEY = "sk-openai-scripted-9a8b7c6d5e4f";
/** Passes only when the key is in no process environment and no file an agent could leave behind. */
// (the key goes in two halves: the test command itself is written to a file in the container)
const keyNowhere = (key: string) =>
  `! grep -rqsF -- "$(printf '%s%s' '${key.slice(0, 8)}' '${key.slice(8)}')" /proc/[0-9]*/environ /home /tmp /workspace`;
const METRICS_TOKEN = "runner-metrics-token-0123456789";
const GH_TOKEN = "ghp_scriptedForgeToken0123456789abcdef";
const CLAUDE_CODE_IMAGE = process.env.CODEFLEET_AGENT_IMAGE_CLAUDE_CODE ?? "codefleet/agent-claude-code:latest";
const AGENT_IMAGE = process.env.CODEFLEET_AGENT_IMAGE ?? "codefleet/agent:latest";

let repo: TestRepo;
let nc: NatsConnection;
let bus: Bus;
let artifactStore: ArtifactStore;
let artifacts: ArtifactStoreClient;
let pool: RepoPoolService;
let runner: RunnerService;
let env: Record<string, string>;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  repo = await createTestRepo({ "README.md": "# sample\n", "greet.sh": "#!/bin/sh\necho hello\n" });
  await git(repo.bare, "config", "core.logAllRefUpdates", "always");
  const database = await createTestDatabase(inject("databaseUrl"));
  cleanups.push(database.drop);
  const dataDir = mkdtempSync(join(tmpdir(), "cf-runner-"));
  chmodSync(dataDir, 0o755); // the workspace owner (uid 1000) must reach the slots
  if (!process.env.KEEP_DATA) cleanups.push(() => removeDataDir(dataDir));
  env = {
    DATABASE_URL: database.url,
    NATS_URL: inject("natsUrl"),
    CODEFLEET_NAMESPACE: testNamespace(),
    CODEFLEET_API_TOKENS: TOKEN,
    CODEFLEET_API_TOKEN: TOKEN,
    ARTIFACT_DATA_DIR: join(dataDir, "artifacts"),
    REPO_POOL_DATA_DIR: join(dataDir, "repo-pool"),
    REAPER_INTERVAL_MS: "500",
    AGENT_IMAGE,
    AGENT_IMAGE_CLAUDE_CODE: CLAUDE_CODE_IMAGE,
    RUNNER_ID: "runner-a",
    RUNNER_HEARTBEAT_MS: "1000",
    RUNNER_ACK_WAIT_MS: "4000",
    CODEFLEET_SECRET_API_TOKEN: SECRET,
    CODEFLEET_SECRET_ANTHROPIC_API_KEY: ANTHROPIC_KEY,
    CODEFLEET_SECRET_OPENAI_API_KEY: OPENAI_KEY,
    // the operator's policy: test repositories live under the temp dir; keys go to the scripted model servers only
    CODEFLEET_REPO_FILE_ROOTS: tmpdir(),
    CODEFLEET_SECRET_ENDPOINTS: JSON.stringify({
      OPENAI_API_KEY: ["127.0.0.1", "host.docker.internal"],
      ANTHROPIC_API_KEY: ["127.0.0.1"],
      GH_TOKEN: ["127.0.0.1"],
    }),
    CODEFLEET_SECRET_GH_TOKEN: GH_TOKEN,
    PULL_REQUEST_TIMEOUT_MS: "3000",
    // API_TOKEN is also tenant acme's; every other secret is tenant default's only
    CODEFLEET_SECRET_TENANTS: JSON.stringify({ API_TOKEN: ["default", "acme"] }),
    METRICS_TOKEN,
    LOG_LEVEL: "error",
  };
  artifactStore = await startArtifactStore(loadArtifactStoreConfig(env));
  env.ARTIFACT_STORE_URL = await artifactStore.app.listen({ port: 0, host: "127.0.0.1" });
  artifacts = new ArtifactStoreClient({ baseUrl: env.ARTIFACT_STORE_URL, token: TOKEN });
  pool = await startRepoPool(loadRepoPoolConfig(env));
  runner = await startRunner(loadRunnerConfig(env), { env });
  nc = await connectNats({ servers: inject("natsUrl"), name: "runner-test" });
  bus = await Bus.create(nc, { namespace: env.CODEFLEET_NAMESPACE });
}, 120_000);

afterAll(async () => {
  await runner?.stop();
  // environment cache volumes of this run
  const { stdout } = await execFileP("docker", [
    "volume",
    "ls",
    "-q",
    "--filter",
    `label=codefleet.deployment=${env.CODEFLEET_NAMESPACE}`,
  ]).catch(() => ({ stdout: "" }));
  for (const v of stdout.split("\n").filter(Boolean)) await execFileP("docker", ["volume", "rm", "-f", v]).catch(() => undefined);
  await pool?.stop();
  await artifacts?.close();
  await artifactStore?.stop();
  await nc?.drain();
  for (const c of cleanups.reverse()) await c();
  repo?.cleanup();
});

function spec(overrides: Partial<TaskSpec> = {}): TaskSpec {
  return {
    repo: { url: repo.fileUrl, ref: "main" },
    title: "add a greeting",
    prompt: "create HELLO.txt",
    // also rewrites a tracked file: slots are reused warm, and their files must stay writable by the agent
    agent: { kind: "script", steps: [{ run: "echo 'hello from codefleet' > HELLO.txt && echo '# sample, by codefleet' > README.md" }] },
    test: { command: "grep -q codefleet HELLO.txt" },
    ...overrides,
  };
}

async function submit(s: TaskSpec, tenant?: string): Promise<string> {
  const taskId = newTaskId();
  // the registry's part, which this test plays: record the submission, then queue it
  const event = createEvent("task.submitted", {
    taskId,
    producer: "test",
    data: { spec: s, submittedVia: "bus", ...(tenant ? { tenant } : {}) },
  });
  await bus.publish(event);
  await bus.enqueueTask(event);
  return taskId;
}

async function eventsOf(taskId: string): Promise<CodefleetEvent[]> {
  const oc = await bus.js.consumers.get(bus.topology.streams.events.name, { filter_subjects: bus.topology.subjects.eventsOfTask(taskId) });
  const out: CodefleetEvent[] = [];
  const info = await bus.jsm.streams.info(bus.topology.streams.events.name, {
    subjects_filter: bus.topology.subjects.eventsOfTask(taskId),
  });
  const total = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  if (total === 0) return out;
  const iter = await oc.fetch({ max_messages: total, expires: 2000 });
  for await (const m of iter) {
    out.push(parseEvent(m.json()));
    if (out.length >= total) break;
  }
  return out;
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

/** The task's containers: labelled with it, or warm ones it adopted (named after it). */
async function containersOf(taskId: string): Promise<string[]> {
  const ids = new Set<string>();
  for (const filter of [`label=codefleet.task-id=${taskId}`, `name=codefleet-${taskId.toLowerCase()}-`]) {
    const { stdout } = await execFileP("docker", ["ps", "-aq", "--filter", filter]);
    for (const id of stdout.split("\n").filter(Boolean)) ids.add(id);
  }
  return [...ids];
}

/** Slots leased to tasks (warm-pool reservations aside), once the runner gave back what it releases after run.finished. */
async function leasedSlots(): Promise<number> {
  const leasedToTasks = async () => {
    const { slots } = await pool.pool.status();
    return slots.leased - slots.reserved;
  };
  await waitFor("task slots released", async () => (await leasedToTasks()) === 0, 10_000, 100).catch(() => undefined);
  return leasedToTasks();
}

async function waitForArtifacts(taskId: string, names: string[]): Promise<Record<string, string>> {
  let byName: Record<string, string> = {};
  await waitFor(
    `artifacts ${names.join(", ")}`,
    async () => {
      byName = Object.fromEntries((await artifacts.list(taskId)).map((a) => [a.name, a.id]));
      return names.every((n) => byName[n]);
    },
    20_000,
    200,
  );
  return byName;
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

describe("runner: hardened containers through fetch → implement → test → push", () => {
  it("runs a script task end to end: the branch with the change is on the remote, diff and log are stored", async () => {
    const taskId = await submit(spec());
    const done = await finished(taskId);
    expect(done.data, `${done.data.reason}\n${done.data.status === "succeeded" ? "" : await readLogs(taskId)}`).toMatchObject({
      status: "succeeded",
      branch: `codefleet/${taskId}`,
    });
    const branchSha = await git(repo.bare, "rev-parse", `refs/heads/codefleet/${taskId}`);
    expect(done.data.commitSha).toBe(branchSha);
    expect(await git(repo.bare, "show", `${branchSha}:HELLO.txt`)).toBe("hello from codefleet");
    expect(await git(repo.bare, "log", "-1", "--format=%B", branchSha)).toContain(`Codefleet-Task: ${taskId}`);
    const events = await eventsOf(taskId);
    const phases = events
      .filter((e) => e.type === "phase.finished")
      .map((e) => (e.type === "phase.finished" ? [e.data.phase, e.data.outcome] : []));
    expect(phases).toEqual([
      ["fetch", "succeeded"],
      ["implement", "succeeded"],
      ["test", "succeeded"],
      ["rebase", "skipped"],
      ["push", "succeeded"],
    ]);
    expect(events.map((e) => e.type)).toContain("slot.allocated");
    const stored = await waitForArtifacts(taskId, ["changes.diff", "task.log"]);
    const diff = await artifacts.downloadText(stored["changes.diff"] as string);
    expect(diff).toContain("+hello from codefleet");
    const log = await artifacts.downloadText(stored["task.log"] as string);
    expect(log).toContain("phase implement started");
    expect(await containersOf(taskId)).toEqual([]);
    expect(await leasedSlots()).toBe(0);
  });

  it("runs an openai agent against a scripted OpenAI-compatible server", async () => {
    const llm = await startScriptedOpenAI((req) => {
      const last = req.messages[req.messages.length - 1];
      if (last?.role === "tool") return { content: "Created HELLO.txt with a greeting." };
      return { toolCalls: [{ name: "write_file", arguments: { path: "HELLO.txt", content: "hello from the model\n" } }] };
    });
    try {
      const taskId = await submit(
        spec({ agent: { kind: "openai", model: "scripted", baseUrl: llm.url }, test: { command: "grep -q model HELLO.txt" } }),
      );
      const done = await finished(taskId);
      expect(done.data.status).toBe("succeeded");
      expect(await git(repo.bare, "show", `refs/heads/codefleet/${taskId}:HELLO.txt`)).toBe("hello from the model");
      expect(llm.requests.length).toBe(2);
      expect(llm.requests[0]?.tools?.map((t) => t.function.name)).toEqual(["list_files", "read_file", "write_file", "run_command"]);
      const implement = (await eventsOf(taskId)).find((e) => e.type === "phase.finished" && e.data.phase === "implement");
      // counted by the runner's LLM gateway, which swapped its token for the key the runner holds
      expect(implement?.type === "phase.finished" && implement.data.facts).toMatchObject({
        inputTokens: 200,
        outputTokens: 40,
        turns: 2,
        modelCalls: 2,
      });
      expect(llm.apiKeys.every((k) => k === `Bearer ${OPENAI_KEY}`)).toBe(true);
      const calls = (await eventsOf(taskId)).filter((e) => e.type === "llm.called");
      expect(calls.map((e) => e.data)).toEqual([
        expect.objectContaining({ model: "scripted", api: "openai", status: 200, promptTokens: 100, completionTokens: 20, attempts: 1 }),
        expect.objectContaining({ model: "scripted", promptTokens: 100, completionTokens: 20 }),
      ]);
      const ids = await waitForArtifacts(taskId, ["transcript", "changes.diff", "llm-exchanges.jsonl"]);
      const exchanges = await artifacts.downloadText(ids["llm-exchanges.jsonl"] as string);
      expect(exchanges.trim().split("\n")).toHaveLength(2);
      expect(exchanges).not.toContain(OPENAI_KEY);
    } finally {
      await llm.stop();
    }
  });

  it("stops an agent whose model budget is spent: budget_exceeded, the partial change kept", async () => {
    const llm = await startScriptedOpenAI(() => ({
      toolCalls: [{ name: "write_file", arguments: { path: "PARTIAL.txt", content: "half done\n" } }],
    }));
    try {
      const taskId = await submit(
        spec({ agent: { kind: "openai", model: "scripted", baseUrl: llm.url, maxTurns: 10 }, budget: { maxTokens: 200 } }),
      );
      const done = await finished(taskId);
      expect(done.data, done.data.reason).toMatchObject({ status: "failed", reasonCode: "budget_exceeded" });
      // 120 tokens a call: the second call reaches 240 > 200, the third is never made
      expect(llm.requests.length).toBe(2);
      const ids = await waitForArtifacts(taskId, ["changes.diff", "llm-exchanges.jsonl"]);
      expect(await artifacts.downloadText(ids["changes.diff"] as string)).toContain("PARTIAL.txt");
    } finally {
      await llm.stop();
    }
  });

  it("runs an opencode task with the real OpenCode server in the container", async () => {
    // OpenCode runs inside the container and calls the model itself: the scripted server listens
    // where containers reach the host (host.docker.internal → the bridge gateway).
    const llm = await startScriptedOpenAI((req) => {
      if (!req.tools?.length) return { content: "Greeting task" }; // OpenCode asks for a session title first
      const last = req.messages[req.messages.length - 1];
      if (last?.role === "tool") return { content: "Wrote HELLO.txt." };
      return { toolCalls: [{ name: "write", arguments: { filePath: "/workspace/HELLO.txt", content: "hello from opencode\n" } }] };
    }, "0.0.0.0");
    try {
      const port = new URL(llm.url).port;
      const taskId = await submit(
        spec({
          // the provider as the runner's gateway calls it: OpenCode gets the gateway's URL and a token
          agent: { kind: "opencode", model: "scripted/scripted", baseUrl: `http://127.0.0.1:${port}/v1` },
          test: { command: `grep -q opencode HELLO.txt && ${keyNowhere(OPENAI_KEY)}` },
          limits: { timeoutSeconds: 90, memoryMb: 1024, cpus: 1 },
        }),
      );
      const done = await finished(taskId, 120_000);
      expect(
        done.data,
        `${done.data.reason}\n${done.data.status === "succeeded" ? "" : await readLogs(taskId)}\n${JSON.stringify(llm.requests.map((r) => r.messages.length))}`,
      ).toMatchObject({ status: "succeeded" });
      expect(await git(repo.bare, "show", `refs/heads/codefleet/${taskId}:HELLO.txt`)).toBe("hello from opencode");
      expect(llm.requests.some((r) => r.tools?.some((t) => t.function.name === "write"))).toBe(true);
      expect(llm.apiKeys.every((k) => k === `Bearer ${OPENAI_KEY}`)).toBe(true);
      await waitForArtifacts(taskId, ["transcript", "llm-exchanges.jsonl"]);
    } finally {
      await llm.stop();
    }
  }, 240_000);

  it("runs a claude-code task with the real Claude Code CLI in the container", async () => {
    // Claude Code runs in the container and calls the Messages API itself (host.docker.internal).
    const llm = await startScriptedAnthropic((req) => {
      const last = req.messages[req.messages.length - 1];
      const content = typeof last?.content === "string" ? [] : (last?.content ?? []);
      if (content.some((b) => b.type === "tool_result")) return { text: "Created HELLO.txt." };
      if (req.tools?.some((t) => t.name === "Write"))
        return { toolUse: { name: "Write", input: { file_path: "/workspace/HELLO.txt", content: "hello from claude code\n" } } };
      return { text: "Greeting task" };
    }, "0.0.0.0");
    try {
      const port = new URL(llm.url).port;
      const taskId = await submit(
        spec({
          agent: { kind: "claude-code", model: "claude-scripted", baseUrl: `http://127.0.0.1:${port}`, maxTurns: 5 },
          test: { command: `grep -q 'claude code' HELLO.txt && ${keyNowhere(ANTHROPIC_KEY)}` },
          limits: { timeoutSeconds: 120, memoryMb: 1024, cpus: 1 },
        }),
      );
      const done = await finished(taskId, 150_000);
      expect(done.data, `${done.data.reason}\n${done.data.status === "succeeded" ? "" : await readLogs(taskId)}`).toMatchObject({
        status: "succeeded",
      });
      expect(await git(repo.bare, "show", `refs/heads/codefleet/${taskId}:HELLO.txt`)).toBe("hello from claude code");
      // the key reached the model API (from the runner's gateway) and nothing else: the container had a token
      expect(llm.apiKeys.length).toBeGreaterThan(0);
      expect(llm.apiKeys.every((k) => k === ANTHROPIC_KEY)).toBe(true);
      expect(await readLogs(taskId)).not.toContain(ANTHROPIC_KEY);
      const implement = (await eventsOf(taskId)).find((e) => e.type === "phase.finished" && e.data.phase === "implement");
      expect(implement?.type === "phase.finished" && implement.data.facts).toMatchObject({ turns: expect.any(Number) });
      await waitForArtifacts(taskId, ["transcript"]);
    } finally {
      await llm.stop();
    }
  }, 240_000);

  it.skipIf(!runscInstalled())("runs a script task under gVisor (runsc) when the task asks for it", async () => {
    const taskId = await submit(spec({ runtime: "runsc" }));
    const done = await finished(taskId);
    expect(done.data, done.data.status === "succeeded" ? "" : `${done.data.reason}\n${await readLogs(taskId)}`).toMatchObject({
      status: "succeeded",
    });
    const started = (await eventsOf(taskId)).find((e) => e.type === "run.started");
    expect(started?.type === "run.started" && started.data).toMatchObject({ runtime: "runsc", network: "none" });
    expect(await git(repo.bare, "show", `refs/heads/codefleet/${taskId}:HELLO.txt`)).toBe("hello from codefleet");
  });

  it("refuses a task that asks for runsc with a network: runsc runs only containers without one here", async () => {
    const taskId = await submit(spec({ runtime: "runsc", network: "open" }));
    const done = await finished(taskId);
    expect(done.data).toMatchObject({ status: "failed", reasonCode: "runtime_unavailable" });
  });

  it("runs a command agent: argv as is, the prompt in a file and in the environment", async () => {
    const taskId = await submit(
      spec({
        prompt: "write the prompt's first line to HELLO.txt",
        agent: {
          kind: "command",
          argv: ["sh", "-c", 'head -n 1 "$1" > HELLO.txt && echo "$CODEFLEET_PROMPT" | grep -q first', "agent", "{prompt_file}"],
        },
        test: { command: "grep -qx '# add a greeting' HELLO.txt" },
      }),
    );
    const done = await finished(taskId);
    expect(done.data, done.data.status === "succeeded" ? "" : await readLogs(taskId)).toMatchObject({ status: "succeeded" });
    // the prompt file starts with the task's title
    expect(await git(repo.bare, "show", `refs/heads/codefleet/${taskId}:HELLO.txt`)).toBe("# add a greeting");
  });

  it("ends a task whose tests fail as failed, with the test report stored", async () => {
    const junit = `<testsuite name="t" tests="3" failures="1" errors="0" skipped="0"><testcase name="a"/><testcase name="b"/><testcase name="c"><failure/></testcase></testsuite>`;
    const taskId = await submit(
      spec({ test: { command: `printf '%s' '${junit}' > report.xml; exit 1`, report: { path: "report.xml", format: "junit" } } }),
    );
    const done = await finished(taskId);
    expect(done.data).toMatchObject({ status: "failed", reasonCode: "test_failed" });
    const test = (await eventsOf(taskId)).find((e) => e.type === "phase.finished" && e.data.phase === "test");
    expect(test?.type === "phase.finished" && test.data.facts).toMatchObject({ total: 3, failed: 1, passed: 2 });
    const stored = await waitForArtifacts(taskId, ["test-report.xml"]);
    expect(await artifacts.downloadText(stored["test-report.xml"] as string)).toContain("testsuite");
    expect(await git(repo.bare, "branch", "--list", `codefleet/${taskId}`)).toBe("");
    expect(await leasedSlots()).toBe(0);
  });

  it("stops a canceled task within 5 seconds and leaves no container and no leased slot", async () => {
    const taskId = await submit(spec({ agent: { kind: "script", steps: [{ run: "echo working; sleep 120" }] } }));
    await waitFor(
      "implement to start",
      async () => (await eventsOf(taskId)).some((e) => e.type === "phase.started" && e.data.phase === "implement"),
      30_000,
      100,
    );
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    await bus.publish(createEvent("task.cancel_requested", { taskId, producer: "test", data: { reason: "no longer needed" } }));
    const done = await finished(taskId, 15_000);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(done.data.status).toBe("canceled");
    expect(await containersOf(taskId)).toEqual([]);
    expect(await leasedSlots()).toBe(0);
  });

  it("reports timed_out when the task exceeds its time limit", async () => {
    const taskId = await submit(
      spec({ agent: { kind: "script", steps: [{ run: "sleep 120" }] }, limits: { timeoutSeconds: 10, memoryMb: 512, cpus: 0.5 } }),
    );
    const done = await finished(taskId, 40_000);
    expect(done.data).toMatchObject({ status: "timed_out", reasonCode: "task_timeout" });
    expect(await containersOf(taskId)).toEqual([]);
    expect(await leasedSlots()).toBe(0);
  });

  it("reports an OOM kill as such", async () => {
    const hog = `node -e "const a=[]; for(;;) a.push(Buffer.alloc(1<<20, 1))"`;
    const taskId = await submit(
      spec({ agent: { kind: "script", steps: [{ run: hog }] }, limits: { timeoutSeconds: 120, memoryMb: 64, cpus: 0.5 } }),
    );
    const done = await finished(taskId, 60_000);
    expect(done.data).toMatchObject({ status: "failed", reasonCode: "oom_killed" });
    expect(await containersOf(taskId)).toEqual([]);
  });

  it("fails with push_rejected when the branch exists upstream with other work", async () => {
    const taskId = await submit(spec({ push: { enabled: true, branch: "main" } }));
    const done = await finished(taskId);
    expect(done.data).toMatchObject({ status: "failed", reasonCode: "push_rejected" });
    expect(await leasedSlots()).toBe(0);
  });

  it("keeps a task's secret out of every log line, event and artifact", async () => {
    const taskId = await submit(
      spec({
        secrets: ["API_TOKEN"],
        agent: {
          kind: "script",
          steps: [
            { run: 'echo "token is $API_TOKEN"; echo "$API_TOKEN" > /tmp/leaked.txt; echo "$API_TOKEN" >&2; echo ok > HELLO.txt; exit 0' },
          ],
        },
        test: { command: 'echo "testing with $API_TOKEN"; test -n "$API_TOKEN"' },
      }),
    );
    const done = await finished(taskId);
    expect(done.data.status).toBe("succeeded");
    const stored = await waitForArtifacts(taskId, ["changes.diff", "task.log"]);
    const texts = [JSON.stringify(await eventsOf(taskId))];
    for (const id of Object.values(stored)) texts.push(await artifacts.downloadText(id));
    const logs = await readLogs(taskId);
    texts.push(logs);
    expect(logs).toContain("token is ***");
    for (const t of texts) expect(t).not.toContain(SECRET);
  });

  it("runs 10 tasks at once on one runner", async () => {
    const ids = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        submit(
          spec({
            agent: { kind: "script", steps: [{ run: `echo task ${i} > TASK.txt; sleep 1` }] },
            test: { command: "test -f TASK.txt" },
          }),
        ),
      ),
    );
    const results = await Promise.all(ids.map((id) => finished(id, 120_000)));
    expect(results.map((r) => r.data.status)).toEqual(Array(10).fill("succeeded"));
  });
});

describe("runner: secrets per tenant", () => {
  it("fails a task naming a secret its tenant may not use before any container, alike whether the secret exists or not", async () => {
    // API_TOKEN has a value (for tenants default and acme); NOT_CONFIGURED_ANYWHERE has neither a value nor an entry
    const existing = await submit(spec({ secrets: ["API_TOKEN"] }), "other");
    const missing = await submit(spec({ secrets: ["NOT_CONFIGURED_ANYWHERE"] }), "other");
    const reasons: string[] = [];
    for (const [taskId, name] of [
      [existing, "API_TOKEN"],
      [missing, "NOT_CONFIGURED_ANYWHERE"],
    ] as const) {
      const done = await finished(taskId);
      expect(done.data).toMatchObject({ status: "failed", reasonCode: "secret_not_allowed_for_tenant" });
      expect(done.data.reason).not.toContain(SECRET);
      reasons.push((done.data.reason ?? "").replace(name, "<name>"));
      expect(await containersOf(taskId)).toEqual([]);
      expect((await eventsOf(taskId)).map((e) => e.type)).not.toContain("slot.allocated");
    }
    expect(reasons[0]).toBe(reasons[1]);
    // the agent's model key is checked too: OPENAI_API_KEY has no entry, so it is tenant default's only
    const key = await submit(spec({ agent: { kind: "openai", model: "scripted" } }), "other");
    expect((await finished(key)).data).toMatchObject({ status: "failed", reasonCode: "secret_not_allowed_for_tenant" });
    expect(await leasedSlots()).toBe(0);
  });

  it("gives a tenant listed for a secret its value", async () => {
    const taskId = await submit(spec({ secrets: ["API_TOKEN"], test: { command: 'test -n "$API_TOKEN"' } }), "acme");
    expect((await finished(taskId)).data.status).toBe("succeeded");
  });
});

describe("runner: the operator's policy, again", () => {
  it("refuses on its own what the registry's admission refuses: a queued task with a credentialed URL, a URL outside the file roots, a key for a foreign endpoint", async () => {
    const token = "ghp_inTheUrlRunner0123456789abcdefABCDEF";
    const cases: [TaskSpec, string][] = [
      [spec({ repo: { url: `https://x-access-token:${token}@git.example.com/a.git`, ref: "main" } }), "repo_url_credentials_refused"],
      [spec({ repo: { url: "file:///etc", ref: "main" } }), "repo_url_file_refused"],
      [
        spec({ agent: { kind: "openai", model: "gpt", baseUrl: "https://collector.evil.example/v1", apiKeySecret: "API_TOKEN" } }),
        "secret_endpoint_not_allowed",
      ],
    ];
    // queued straight on the run queue, as a bus without accounts (or a compromised registry) could
    const ids = await Promise.all(cases.map(([s]) => submit(s)));
    for (const [i, [, code]] of cases.entries()) {
      const done = await finished(ids[i] as string);
      expect(done.data, code).toMatchObject({ status: "failed", reasonCode: code });
      expect(JSON.stringify(done)).not.toContain(token);
      expect(await containersOf(ids[i] as string)).toEqual([]);
    }
  });
});

describe("runner: health and metrics", () => {
  it("tells the fleet its capacity and warm containers on its status subject", async () => {
    const sub = nc.subscribe(bus.topology.subjects.runnerStatus("runner-a"), { max: 1, timeout: 10_000 });
    for await (const m of sub) {
      const status = m.json<Record<string, unknown>>();
      expect(status).toMatchObject({ runnerId: "runner-a", concurrency: expect.any(Number), active: expect.any(Number) });
      expect(status.warm).toMatchObject({ ready: expect.any(Number), filling: expect.any(Number) });
    }
  });

  it("puts /metrics behind METRICS_TOKEN and keeps /healthz open", async () => {
    const open = await runner.app.inject({ method: "GET", url: "/metrics" });
    expect(open.statusCode).toBe(401);
    expect(open.json()).toMatchObject({ code: "unauthorized" });
    const wrong = await runner.app.inject({ method: "GET", url: "/metrics", headers: { authorization: `Bearer ${TOKEN}` } });
    expect(wrong.statusCode).toBe(401);
    const ok = await runner.app.inject({ method: "GET", url: "/metrics", headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain("codefleet_runner_active_attempts");
    expect((await runner.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
  });
});

describe("runner: warm containers", () => {
  it("gives back a warm container taken for a task that stops before it is its own (a missing secret)", async () => {
    // a class the pool knows: a task of it makes the pool keep containers for the next
    expect((await finished(await submit(spec()))).data.status).toBe("succeeded");
    await waitFor("a warm container of the class", async () => (runner.warmPool?.size.ready ?? 0) >= 1, 30_000, 100);
    const taskId = await submit(spec({ secrets: ["NOT_CONFIGURED_ANYWHERE"] }));
    expect((await finished(taskId)).data).toMatchObject({ status: "failed", reasonCode: "secret_missing" });
    // every container of this runner is the pool's once it settles: none left behind by the task
    await waitFor(
      "no container outside the pool",
      async () => {
        // (a warm container with a network has its egress proxy beside it)
        const { stdout } = await execFileP("docker", [
          "ps",
          "--filter",
          "label=codefleet.runner-id=runner-a",
          "--format",
          'role={{.Label "codefleet.role"}}',
        ]);
        const size = runner.warmPool?.size ?? { ready: 0, filling: 0 };
        return size.filling === 0 && stdout.split("\n").filter((line) => line === "role=").length === size.ready;
      },
      30_000,
      200,
    );
    expect(await leasedSlots()).toBe(0);
  });
});

describe("runner: the environment cache", () => {
  it("runs a setup once per lockfile: later tasks get its result copied in, a changed lockfile runs it again", async () => {
    const envRepo = await createTestRepo({ "deps.lock": "v1\n", "README.md": "# env\n" }, "env.git");
    cleanups.push(() => envRepo.cleanup());
    const setupSpec = (check: string): TaskSpec => ({
      repo: { url: envRepo.fileUrl, ref: "main" },
      title: "uses dependencies",
      prompt: "p",
      setup: {
        command:
          "echo SETUP-RAN; mkdir -p deps/sub && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > deps/sub/stamp && ln -s sub/stamp deps/link",
        cachePaths: ["deps"],
        cacheKeyFiles: ["deps.lock"],
      },
      agent: { kind: "script", steps: [{ run: check }] },
      push: { enabled: false },
    });
    const phaseFacts = async (taskId: string) => {
      const e = (await eventsOf(taskId)).find((x) => x.type === "phase.finished" && x.data.phase === "setup");
      return e?.type === "phase.finished" ? e.data.facts : undefined;
    };
    // the first task runs the setup and keeps deps/; its agent then tries to poison what it got
    const first = await submit(setupSpec("cat deps/sub/stamp > STAMP && echo poisoned > deps/sub/stamp"));
    expect((await finished(first)).data, await readLogs(first)).toMatchObject({ status: "succeeded" });
    // the task's log says why a setup's result was not kept
    expect(await phaseFacts(first), await readLogs(first)).toMatchObject({ cache: "saved" });
    const stored = await waitForArtifacts(first, ["changes.diff"]);
    const stamp = /\+([0-9a-f]{32})/.exec(await artifacts.downloadText(stored["changes.diff"] as string))?.[1];
    expect(stamp).toBeTruthy();

    // the second gets the first's setup result (not the agent's later change), without running the setup
    const second = await submit(
      setupSpec(`test "$(cat deps/sub/stamp)" = "${stamp}" && test "$(cat deps/link)" = "${stamp}" && test -L deps/link`),
    );
    expect((await finished(second)).data, await readLogs(second)).toMatchObject({ status: "succeeded" });
    expect(await phaseFacts(second)).toMatchObject({ cache: "hit" });
    expect(await readLogs(second)).not.toContain("SETUP-RAN");

    // a new lockfile is a new environment
    await commitFile(envRepo, "deps.lock", "v2\n");
    const third = await submit(setupSpec(`test "$(cat deps/sub/stamp)" != "${stamp}"`));
    expect((await finished(third)).data, await readLogs(third)).toMatchObject({ status: "succeeded" });
    expect(await phaseFacts(third)).toMatchObject({ cache: "saved" });
  }, 120_000);
});

describe("runner: rebase before push", () => {
  /** A repository of its own: these tests move its main branch while a task runs. */
  async function movingRepo(): Promise<TestRepo> {
    const r = await createTestRepo({ "README.md": "line 1\nline 2\nline 3\n" }, `rebase-${Date.now()}.git`);
    cleanups.push(() => r.cleanup());
    return r;
  }
  const implementStarted = (taskId: string) =>
    waitFor(
      "implement to start",
      async () => (await eventsOf(taskId)).some((e) => e.type === "phase.started" && e.data.phase === "implement"),
      30_000,
      100,
    );
  const rebaseFacts = async (taskId: string) => {
    const e = (await eventsOf(taskId)).find((x) => x.type === "phase.finished" && x.data.phase === "rebase");
    return e?.type === "phase.finished" ? e.data : undefined;
  };

  it("rebases a task whose base moved while it ran onto the new base, tests it again and pushes on top", async () => {
    const r = await movingRepo();
    const taskId = await submit({
      repo: { url: r.fileUrl, ref: "main" },
      title: "append a line",
      prompt: "p",
      agent: { kind: "script", steps: [{ run: "sleep 3; echo 'line 4 by the agent' >> README.md && echo agent > AGENT.txt" }] },
      test: { command: "echo TEST-RAN; grep -q 'line 4 by the agent' README.md" },
    });
    await implementStarted(taskId);
    const moved = await commitFile(r, "UPSTREAM.txt", "upstream\n", "upstream moves on");
    const done = await finished(taskId);
    expect(done.data, done.data.status === "succeeded" ? "" : `${done.data.reason}\n${await readLogs(taskId)}`).toMatchObject({
      status: "succeeded",
    });
    const sha = await git(r.bare, "rev-parse", `refs/heads/codefleet/${taskId}`);
    expect(await git(r.bare, "rev-parse", `${sha}^`)).toBe(moved);
    expect(await git(r.bare, "show", `${sha}:UPSTREAM.txt`)).toBe("upstream");
    expect(await git(r.bare, "show", `${sha}:AGENT.txt`)).toBe("agent");
    expect(await git(r.bare, "log", "-1", "--format=%B", sha)).toContain(`Codefleet-Task: ${taskId}`);
    expect(await rebaseFacts(taskId)).toMatchObject({ outcome: "succeeded", facts: { moved: true, retested: true, newBaseSha: moved } });
    expect((await readLogs(taskId)).match(/^TEST-RAN$/gm)?.length).toBe(2);
  });

  it("ends a task whose change conflicts with the moved base with rebase_conflict and the files, and pushes nothing", async () => {
    const r = await movingRepo();
    const taskId = await submit({
      repo: { url: r.fileUrl, ref: "main" },
      title: "rewrite line 2",
      prompt: "p",
      agent: { kind: "script", steps: [{ run: "sleep 3; sed -i 's/line 2/line 2 by the agent/' README.md" }] },
      test: { command: "grep -q 'by the agent' README.md" },
    });
    await implementStarted(taskId);
    await commitFile(r, "README.md", "line 1\nline 2 upstream\nline 3\n", "upstream rewrites line 2");
    const done = await finished(taskId);
    expect(done.data).toMatchObject({ status: "failed", reasonCode: "rebase_conflict" });
    expect(done.data.reason).toContain("README.md");
    expect(await rebaseFacts(taskId)).toMatchObject({ facts: { conflictingFiles: expect.stringContaining("README.md") } });
    expect(await git(r.bare, "branch", "--list", `codefleet/${taskId}`)).toBe("");
  });
});

describe("runner: follow-up turns", () => {
  /** The registry's part, played here: record a follow-up of a finished task, then queue it. */
  async function followUp(taskId: string, data: Omit<EventData<"task.follow_up_requested">, "prompt"> & { prompt?: string }) {
    const event = createEvent("task.follow_up_requested", { taskId, producer: "test", data: { prompt: "and now", ...data } });
    await bus.publish(event);
    await bus.enqueueTask(event);
    return event;
  }
  const finishedAttempt = async (taskId: string, attempt: number) => {
    let done: Awaited<ReturnType<typeof finished>> | undefined;
    await waitFor(
      `run.finished of attempt ${attempt}`,
      async () => {
        done = await finished(taskId);
        return done.attempt >= attempt;
      },
      60_000,
      200,
    );
    return done as NonNullable<typeof done>;
  };

  it("a follow-up on a finished task starts from its pushed commit and pushes a second commit on the same branch, once", async () => {
    const taskId = await submit(spec());
    const first = await finished(taskId);
    expect(first.data.status, first.data.reason).toBe("succeeded");
    const sha1 = await git(repo.bare, "rev-parse", `refs/heads/codefleet/${taskId}`);
    const turn2 = await followUp(taskId, {
      turn: 2,
      firstAttempt: 2,
      fromCommit: sha1,
      prompt: "also say goodbye",
      // the agent sees the first turn's work in its tree, and which turn it is
      agent: {
        kind: "script",
        steps: [{ run: 'grep -q "hello from codefleet" HELLO.txt && echo "bye from turn $CODEFLEET_TURN" > BYE.txt' }],
      },
    });
    const second = await finishedAttempt(taskId, 2);
    expect(second.data.status, second.data.status === "succeeded" ? "" : `${second.data.reason}\n${await readLogs(taskId)}`).toBe(
      "succeeded",
    );
    const sha2 = await git(repo.bare, "rev-parse", `refs/heads/codefleet/${taskId}`);
    expect(sha2).not.toBe(sha1);
    expect(second.data.commitSha).toBe(sha2);
    expect(await git(repo.bare, "rev-parse", `${sha2}^`)).toBe(sha1);
    expect(await git(repo.bare, "show", `${sha2}:BYE.txt`)).toBe("bye from turn 2");
    expect(await git(repo.bare, "show", `${sha2}:HELLO.txt`)).toBe("hello from codefleet");
    const message = await git(repo.bare, "log", "-1", "--format=%B", sha2);
    expect(message).toContain(`Codefleet-Task: ${taskId}`);
    expect(message).toContain("Codefleet-Turn: 2");
    // the turn's events name the follow-up as their cause
    const started2 = (await eventsOf(taskId)).find((e) => e.type === "run.started" && e.attempt === 2);
    expect(started2?.metadata.causationId).toBe(turn2.id);

    // queued again (a registry redelivering its enqueue): de-duplicated, nothing runs
    expect((await bus.enqueueTask(turn2)).duplicate).toBe(true);
    // delivered again after the turn ended (the runner that ran it died before its ack): skipped, not pushed twice
    await bus.js.publish(bus.topology.subjects.queue("default"), new TextEncoder().encode(JSON.stringify(turn2)), {
      msgID: `redelivered-${turn2.id}`,
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await git(repo.bare, "rev-parse", `refs/heads/codefleet/${taskId}`)).toBe(sha2);
    expect((await eventsOf(taskId)).filter((e) => e.type === "run.started").map((e) => e.attempt)).toEqual([1, 2]);
    expect(await containersOf(taskId)).toEqual([]);
  });

  it("a follow-up whose branch moved meanwhile (a reviewer's commit) is taken onto it; an earlier turn's cancel does not stop it", async () => {
    const taskId = await submit(spec());
    expect((await finished(taskId)).data.status).toBe("succeeded");
    const sha1 = await git(repo.bare, "rev-parse", `refs/heads/codefleet/${taskId}`);
    // a cancel asked for during turn 1 (too late to matter) is history for turn 2
    await bus.publish(createEvent("task.cancel_requested", { taskId, producer: "test", data: { turn: 1 } }));
    await followUp(taskId, {
      turn: 2,
      firstAttempt: 2,
      fromCommit: sha1,
      agent: { kind: "script", steps: [{ run: "sleep 3; echo turn2 > TURN2.txt" }] },
    });
    await waitFor(
      "turn 2's implement to start",
      async () => (await eventsOf(taskId)).some((e) => e.type === "phase.started" && e.data.phase === "implement" && e.attempt === 2),
      30_000,
      100,
    );
    // a reviewer pushes to the task's branch while the turn runs
    const work = mkdtempSync(join(tmpdir(), "reviewer-"));
    cleanups.push(() => rmSync(work, { recursive: true, force: true }));
    await git(work, "clone", "--quiet", "--branch", `codefleet/${taskId}`, repo.fileUrl, ".");
    await git(work, "commit", "--quiet", "--allow-empty", "-m", "review note");
    await git(work, "push", "--quiet", "origin", `HEAD:refs/heads/codefleet/${taskId}`);
    const reviewed = await git(work, "rev-parse", "HEAD");
    const done = await finishedAttempt(taskId, 2);
    expect(done.data.status, done.data.status === "succeeded" ? "" : `${done.data.reason}\n${await readLogs(taskId)}`).toBe("succeeded");
    const sha2 = await git(repo.bare, "rev-parse", `refs/heads/codefleet/${taskId}`);
    expect(await git(repo.bare, "rev-parse", `${sha2}^`)).toBe(reviewed);
    expect(await git(repo.bare, "show", `${sha2}:TURN2.txt`)).toBe("turn2");
  });
});

describe("runner: best-of-N", () => {
  it("best of 3 where only candidate 2's tests pass: candidate 2 is selected and pushed, the others' work kept as artifacts", async () => {
    const taskId = await submit(
      spec({
        candidates: 3,
        // each candidate writes who it is; only candidate 2's test passes
        agent: { kind: "script", steps: [{ run: 'echo "candidate $CODEFLEET_CANDIDATE" > WHO.txt && echo codefleet > HELLO.txt' }] },
        test: { command: 'grep -qx "candidate 2" WHO.txt' },
      }),
    );
    const done = await finished(taskId, 90_000);
    expect(done.data.status, done.data.status === "succeeded" ? "" : `${done.data.reason}\n${await readLogs(taskId)}`).toBe("succeeded");
    const sha = await git(repo.bare, "rev-parse", `refs/heads/codefleet/${taskId}`);
    expect(done.data.commitSha).toBe(sha);
    expect(await git(repo.bare, "show", `${sha}:WHO.txt`)).toBe("candidate 2");
    const events = await eventsOf(taskId);
    const selected = events.find((e) => e.type === "candidate.selected");
    expect(selected?.type === "candidate.selected" && selected.data).toMatchObject({
      winner: 2,
      candidates: [
        { candidate: 1, status: "failed", reasonCode: "test_failed" },
        { candidate: 2, status: "passed" },
        { candidate: 3, status: "failed", reasonCode: "test_failed" },
      ],
    });
    // each candidate its own trace; each ran implement and test; only the winner rebased and pushed
    const scores = selected?.type === "candidate.selected" ? selected.data.candidates : [];
    const traces = scores.flatMap((c) => (c.traceId ? [c.traceId] : [])); // none when the runner has no tracing SDK
    expect(new Set(traces).size).toBe(traces.length);
    const candidatePhases = events
      .filter((e) => e.type === "phase.finished" && e.data.candidate !== undefined)
      .map((e) => (e.type === "phase.finished" ? `${e.data.candidate}:${e.data.phase}:${e.data.outcome}` : ""))
      .sort();
    expect(candidatePhases).toEqual(
      [
        "1:fetch:succeeded",
        "1:implement:succeeded",
        "1:test:failed",
        "2:fetch:succeeded",
        "2:implement:succeeded",
        "2:test:succeeded",
        "3:fetch:succeeded",
        "3:implement:succeeded",
        "3:test:failed",
      ].sort(),
    );
    const taskPhases = events
      .filter((e) => e.type === "phase.finished" && e.data.candidate === undefined)
      .map((e) => (e.type === "phase.finished" ? e.data.phase : ""));
    expect(taskPhases).toEqual(["rebase", "push"]);
    const stored = await waitForArtifacts(taskId, [
      "changes.diff",
      "task.log",
      "candidate-1.log",
      "candidate-2.log",
      "candidate-3.log",
      "candidate-1.changes.diff",
      "candidate-3.changes.diff",
    ]);
    expect(await artifacts.downloadText(stored["candidate-3.changes.diff"] as string)).toContain("+candidate 3");
    expect(await artifacts.downloadText(stored["changes.diff"] as string)).toContain("+candidate 2");
    expect(await artifacts.downloadText(stored["candidate-1.log"] as string)).toContain("phase test started");
    expect(await artifacts.downloadText(stored["task.log"] as string)).toContain("candidate 2: the only candidate whose tests passed");
    expect(await containersOf(taskId)).toEqual([]);
    await waitFor("every slot back", async () => (await leasedSlots()) === 0, 20_000, 200);
  });

  it("best of 2 where none passes: the task fails with the best failure, and nothing is pushed", async () => {
    const taskId = await submit(spec({ candidates: 2, test: { command: "false" } }));
    const done = await finished(taskId, 90_000);
    expect(done.data).toMatchObject({ status: "failed", reasonCode: "test_failed" });
    expect(done.data.reason).toMatch(/no candidate passed its tests \(2 ran/);
    expect(await git(repo.bare, "branch", "--list", `codefleet/${taskId}`)).toBe("");
    await waitFor("every slot back", async () => (await leasedSlots()) === 0, 20_000, 200);
  });
});

describe("runner crash safety", () => {
  it("completes a task on redelivery after kill -9 of its runner, with exactly one push and the orphan container removed", async () => {
    // Only the child runner may take this task: stop the in-process one first.
    await runner.stop();
    const procEnv = { ...env, RUNNER_ID: "runner-victim", PORT: "0" };
    let proc = spawnService("services/runner/src/main.ts", procEnv);
    try {
      const taskId = await submit(
        spec({ agent: { kind: "script", steps: [{ run: "echo attempt > HELLO.txt; sleep 4; echo codefleet >> HELLO.txt" }] } }),
      );
      await waitFor(
        "implement under way",
        async () => (await eventsOf(taskId)).some((e) => e.type === "phase.started" && e.data.phase === "implement"),
        60_000,
        100,
      );
      await proc.kill("SIGKILL");
      expect((await containersOf(taskId)).length).toBe(1); // the orphan
      proc = spawnService("services/runner/src/main.ts", { ...procEnv, RUNNER_ID: "runner-rescuer" });
      const done = await finished(taskId, 90_000);
      expect(done.attempt).toBe(2);
      expect(done.data.status).toBe("succeeded");
      const reflog = await git(repo.bare, "reflog", "show", "--format=%H", `refs/heads/codefleet/${taskId}`);
      expect(reflog.split("\n").filter(Boolean)).toHaveLength(1);
      expect(await containersOf(taskId)).toEqual([]);
      const starts = (await eventsOf(taskId)).filter((e) => e.type === "run.started").map((e) => e.attempt);
      expect(starts).toEqual([1, 2]);
    } finally {
      await proc.kill("SIGTERM");
    }
  });

  it("opens one pull request when the push is redelivered after the runner died with the create's answer on the way", async () => {
    await runner.stop(); // only the child runners may take this task (stopping twice is harmless)
    const gh = await startGitHubServer({ token: GH_TOKEN });
    // the server makes the pull request, and its answer never comes back before the runner dies
    gh.inject({ method: "POST", path: "/pulls" }, { status: 201, delayMs: 60_000, applied: true });
    const procEnv = { ...env, RUNNER_ID: "runner-pr-victim", PORT: "0" };
    let proc = spawnService("services/runner/src/main.ts", procEnv);
    try {
      const taskId = await submit(
        spec({ pullRequest: { provider: "github", apiUrl: gh.apiUrl, repository: "acme/app", tokenSecret: "GH_TOKEN" } }),
      );
      await waitFor("the pull request to be made", async () => gh.pulls.length === 1, 60_000, 100);
      await proc.kill("SIGKILL");
      proc = spawnService("services/runner/src/main.ts", { ...procEnv, RUNNER_ID: "runner-pr-rescuer" });
      const done = await finished(taskId, 90_000);
      expect(done.data, `${done.data.reason}`).toMatchObject({ status: "succeeded" });
      expect(done.attempt).toBe(2);
      expect(gh.pulls).toHaveLength(1);
      expect(gh.problems).toEqual([]);
      const ops = gh.requests.map((q) => q.operation);
      expect(ops.filter((o) => o === "pulls/create")).toHaveLength(1);
      expect(ops).toContain("pulls/update");
      const opened = (await eventsOf(taskId)).filter((e) => e.type === "pull_request.opened");
      expect(opened.map((e) => (e.type === "pull_request.opened" ? [e.attempt, e.data.number] : []))).toEqual([[2, 1]]);
      const reflog = await git(repo.bare, "reflog", "show", "--format=%H", `refs/heads/codefleet/${taskId}`);
      expect(reflog.split("\n").filter(Boolean)).toHaveLength(1);
      const everything = JSON.stringify(await eventsOf(taskId)) + (await readLogs(taskId));
      expect(everything).not.toContain(GH_TOKEN);
    } finally {
      await proc.kill("SIGTERM");
      await gh.close();
    }
  });

  /** Runs a task on a runner that is killed -9 during implement; then `after` runs and a rescuer with `rescuerEnv` takes over. */
  async function killDuringImplement(name: string, rescuerEnv: Record<string, string>, after?: (taskId: string) => Promise<void>) {
    await runner.stop(); // only the child runners may take this task (stopping twice is harmless)
    const procEnv = { ...env, RUNNER_ID: `runner-${name}-victim`, PORT: "0", ...rescuerEnv };
    let proc = spawnService("services/runner/src/main.ts", procEnv);
    try {
      const taskId = await submit(spec({ agent: { kind: "script", steps: [{ run: "echo attempt > HELLO.txt; sleep 30" }] } }));
      await waitFor(
        "implement under way",
        async () => (await eventsOf(taskId)).some((e) => e.type === "phase.started" && e.data.phase === "implement"),
        60_000,
        100,
      );
      await proc.kill("SIGKILL");
      await after?.(taskId);
      proc = spawnService("services/runner/src/main.ts", { ...procEnv, RUNNER_ID: `runner-${name}-rescuer` });
      const done = await finished(taskId, 90_000);
      await waitFor("the orphan container to be removed", async () => (await containersOf(taskId)).length === 0, 30_000, 200);
      expect(await git(repo.bare, "branch", "--list", `codefleet/${taskId}`)).toBe("");
      return { taskId, done, events: await eventsOf(taskId) };
    } finally {
      await proc.kill("SIGTERM");
    }
  }

  it("closes a task whose every attempt died with attempts_exhausted, on the attempt that last started, instead of leaving it running", async () => {
    const { done, events } = await killDuringImplement("exhausted", { RUNNER_MAX_ATTEMPTS: "1" });
    expect(done.attempt).toBe(1);
    expect(done.data).toMatchObject({ status: "failed", reasonCode: "attempts_exhausted" });
    expect(events.filter((e) => e.type === "run.started").map((e) => e.attempt)).toEqual([1]);
    expect(events.filter((e) => e.type === "run.finished")).toHaveLength(1);
  });

  it("ends a task canceled while its runner was dead as canceled: the redelivery closes it", async () => {
    const { done } = await killDuringImplement("canceled", {}, async (taskId) => {
      await bus.publish(createEvent("task.cancel_requested", { taskId, producer: "test", data: { reason: "no longer needed" } }));
    });
    expect(done.attempt).toBe(1);
    expect(done.data).toMatchObject({ status: "canceled", reasonCode: "canceled" });
  });
});

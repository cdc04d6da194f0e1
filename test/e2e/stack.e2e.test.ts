import { execFile } from "node:child_process";
import { promisify } from "node:util";
import {
  E2E_ANTHROPIC_KEY,
  type Stack,
  stackApi,
  stackGit,
  startScriptedAnthropic,
  startScriptedOpenAI,
  startStack,
  waitFor,
  waitForTasks,
} from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeCli } from "./cli-tests.js";

const execFileP = promisify(execFile);
let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
});

afterAll(async () => {
  await stack?.down();
});

type Task = {
  id: string;
  status: string;
  commitSha?: string;
  branch: string;
  reasonCode?: string;
  phases: { phase: string; outcome?: string }[];
  artifacts: { name: string; artifactId: string }[];
  traceId?: string;
  attempts?: { attempt: number; status?: string; reason?: string }[];
};

const api = <T>(path: string, init: RequestInit = {}) => stackApi<T>(stack, path, init);

const sampleTask = (overrides: Record<string, unknown> = {}) => ({
  repo: { url: "git://git-server:9418/sample.git", ref: "main" },
  title: "make the greeting mention codefleet",
  prompt: "Change greet.sh so that it greets from codefleet.",
  agent: { kind: "script", steps: [{ run: "printf '#!/bin/sh\\necho \"hello from codefleet\"\\n' > greet.sh" }] },
  test: { command: "sh test.sh" },
  ...overrides,
});

async function submitAndWait(body: unknown, headers: Record<string, string> = {}, timeoutMs = 120_000): Promise<Task> {
  const res = await api<Task>("/v1/tasks", { method: "POST", body: JSON.stringify(body), headers });
  expect(res.status).toBe(202);
  let task: Task | undefined;
  await waitFor(
    `task ${res.body.id} to finish`,
    async () => {
      const r = await api<Task>(`/v1/tasks/${res.body.id}`);
      task = r.status === 200 ? r.body : undefined;
      return task !== undefined && ["succeeded", "failed", "timed_out", "canceled"].includes(task.status) && task.artifacts.length > 0;
    },
    timeoutMs,
    500,
  );
  return task as Task;
}

async function containerOf(service: string): Promise<string> {
  return (await stack.stack("ps", "-q", service)).trim();
}

async function streamCount(): Promise<number> {
  const { stdout } = await execFileP("docker", [
    "exec",
    await containerOf("nats"),
    "wget",
    "-qO-",
    "http://127.0.0.1:8222/jsz?streams=true",
  ]);
  const jsz = JSON.parse(stdout) as { account_details?: { stream_detail?: { name: string; state: { messages: number } }[] }[] };
  const streams = (jsz.account_details ?? []).flatMap((a) => a.stream_detail ?? []);
  return streams.find((s) => s.name === "CODEFLEET_EVENTS")?.state.messages ?? -1;
}

async function tableCount(): Promise<number> {
  const { stdout } = await execFileP("docker", [
    "exec",
    "-e",
    "PGPASSWORD=codefleet-dev",
    await containerOf("postgres"),
    "psql",
    "-U",
    "codefleet",
    "-d",
    "codefleet",
    "-tAc",
    "select count(*) from registry.events",
  ]);
  return Number(stdout.trim());
}

const gitServer = (...args: string[]) => stackGit(stack, ...args);

/** What a timed-out wait needs to be diagnosed: each unfinished task's status and phases, and the services' last logs. */
async function stuckTasksReport(ids: string[]): Promise<string> {
  const lines = [`${ids.length} unfinished:`];
  for (const id of ids) {
    const r = await api<Task>(`/v1/tasks/${id}`).catch((e: Error) => ({ status: 0, body: e.message }));
    lines.push(`${id} ${JSON.stringify(r.body)}`);
    const events = await api<unknown>(`/v1/tasks/${id}/events`).catch(() => undefined);
    if (events) lines.push(`  events: ${JSON.stringify(events.body).slice(0, 4000)}`);
  }
  for (const service of ["runner", "repo-pool", "task-registry"]) {
    lines.push(`--- ${service} ---`, await stack.stack("logs", "--tail=60", service).catch((e: Error) => e.message));
  }
  return lines.join("\n");
}

describe("the compose stack", () => {
  it("brings NATS, Postgres and the four services to healthy", async () => {
    const ids = (await stack.stack("ps", "-q")).split("\n").filter(Boolean);
    const { stdout } = await execFileP("docker", [
      "inspect",
      "-f",
      "{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
      ...ids,
    ]);
    for (const name of ["nats", "postgres", "task-registry", "artifact-store", "repo-pool", "runner"]) {
      expect(stdout).toMatch(new RegExp(`${name}[-_]1 running healthy`));
    }
    expect((await fetch(`${stack.registryUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${stack.artifactStoreUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${stack.registryUrl}/readyz`)).status).toBe(200);
  });

  it("runs the demo task: fetch → implement → test → push, with the branch, diff and log kept", async () => {
    const task = await submitAndWait(sampleTask());
    expect(task.status).toBe("succeeded");
    expect(task.phases.map((p) => [p.phase, p.outcome])).toEqual([
      ["fetch", "succeeded"],
      ["implement", "succeeded"],
      ["test", "succeeded"],
      ["rebase", "skipped"],
      ["push", "succeeded"],
    ]);
    expect(await gitServer("rev-parse", `refs/heads/${task.branch}`)).toBe(task.commitSha);
    expect(await gitServer("show", `${task.commitSha}:greet.sh`)).toContain("codefleet");
    const names = task.artifacts.map((a) => a.name);
    expect(names).toEqual(expect.arrayContaining(["changes.diff", "task.log"]));
    const diffId = task.artifacts.find((a) => a.name === "changes.diff")?.artifactId;
    const diff = await fetch(`${stack.artifactStoreUrl}/v1/artifacts/${diffId}/content`, {
      headers: { authorization: `Bearer ${stack.token}` },
    });
    expect(await diff.text()).toContain("hello from codefleet");
    const logs = await fetch(`${stack.registryUrl}/v1/tasks/${task.id}/logs`, { headers: { authorization: `Bearer ${stack.token}` } });
    expect(await logs.text()).toContain("phase push");
  });

  it("ends a task whose test fails as failed, with its test report stored", async () => {
    const task = await submitAndWait(
      sampleTask({
        agent: { kind: "script", steps: [{ run: "echo 'nothing useful' > NOTES.md" }] },
        test: { command: "sh test.sh > report.tap", report: { path: "report.tap", format: "tap" } },
      }),
    );
    expect(task.status).toBe("failed");
    expect(task.reasonCode).toBe("test_failed");
    expect(task.artifacts.map((a) => a.name)).toContain("test-report.tap");
  });

  it("makes the same submission with one Idempotency-Key one task", async () => {
    const key = `e2e-${Date.now()}`;
    const body = JSON.stringify(sampleTask({ title: "idempotent" }));
    const [a, b] = await Promise.all([
      api<Task>("/v1/tasks", { method: "POST", body, headers: { "idempotency-key": key } }),
      api<Task>("/v1/tasks", { method: "POST", body, headers: { "idempotency-key": key } }),
    ]);
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(a.body.id).toBe(b.body.id);
  });

  it("completes a task after kill -9 of the runner container mid-implement, with exactly one push", async () => {
    const res = await api<Task>("/v1/tasks", {
      method: "POST",
      body: JSON.stringify(
        sampleTask({
          title: "survives a runner crash",
          agent: { kind: "script", steps: [{ run: "sleep 6; printf '#!/bin/sh\\necho codefleet\\n' > greet.sh" }] },
        }),
      ),
    });
    const id = res.body.id;
    await waitFor(
      "implement to start",
      async () => (await api<Task>(`/v1/tasks/${id}`)).body.phases?.some((p) => p.phase === "implement") ?? false,
      60_000,
      200,
    );
    await execFileP("docker", ["kill", "-s", "KILL", await containerOf("runner")]);
    await stack.stack("start", "runner");
    let task: Task | undefined;
    await waitFor(
      "task to finish",
      async () => {
        task = (await api<Task>(`/v1/tasks/${id}`)).body;
        return task.status === "succeeded" || task.status === "failed";
      },
      120_000,
      500,
    );
    expect(task?.status).toBe("succeeded");
    const reflog = await gitServer("reflog", "show", "--format=%H", `refs/heads/${task?.branch}`);
    expect(reflog.split("\n").filter(Boolean)).toHaveLength(1);
    const { stdout } = await execFileP("docker", ["ps", "-aq", "--filter", `label=codefleet.task-id=${id}`]);
    expect(stdout.trim()).toBe("");
  }, 240_000);

  it("finishes a run across a NATS restart, losing nothing", async () => {
    const res = await api<Task>("/v1/tasks", {
      method: "POST",
      body: JSON.stringify(
        sampleTask({
          title: "survives a NATS restart",
          agent: { kind: "script", steps: [{ run: "sleep 4; printf '#!/bin/sh\\necho codefleet\\n' > greet.sh" }] },
        }),
      ),
    });
    await waitFor(
      "implement to start",
      async () => (await api<Task>(`/v1/tasks/${res.body.id}`)).body.phases?.some((p) => p.phase === "implement") ?? false,
      60_000,
      200,
    );
    await execFileP("docker", ["restart", await containerOf("nats")]);
    let task: Task | undefined;
    await waitFor(
      "task to finish",
      async () => {
        const r = await api<Task>(`/v1/tasks/${res.body.id}`).catch(() => undefined);
        task = r?.body;
        return task?.status === "succeeded" || task?.status === "failed";
      },
      120_000,
      500,
    );
    expect(task?.status).toBe("succeeded");
  }, 240_000);

  it("catches up after a Postgres restart: every event stored once", async () => {
    await execFileP("docker", ["restart", await containerOf("postgres")]);
    const task = await submitAndWait(sampleTask({ title: "after a Postgres restart" }), {}, 120_000);
    expect(task.status).toBe("succeeded");
    await waitFor("store to match the stream", async () => (await streamCount()) === (await tableCount()), 60_000, 1000);
    expect(await tableCount()).toBe(await streamCount());
  }, 240_000);

  it("takes 30 tasks through a runner kill, a NATS restart and a Postgres restart: 30/30 succeed, each branch pushed once", async () => {
    const ids = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const res = await api<Task>("/v1/tasks", {
          method: "POST",
          body: JSON.stringify(
            sampleTask({
              title: `chaos ${i}`,
              agent: {
                kind: "script",
                steps: [{ run: "sleep 3" }, { run: "printf '#!/bin/sh\\necho \"hello from codefleet\"\\n' > greet.sh" }],
              },
            }),
          ),
        });
        expect(res.status).toBe(202);
        return res.body.id;
      }),
    );
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    await pause(4000);
    await execFileP("docker", ["kill", "-s", "KILL", await containerOf("runner")]);
    await stack.stack("start", "runner");
    await pause(4000);
    await execFileP("docker", ["restart", await containerOf("nats")]);
    await pause(4000);
    await execFileP("docker", ["restart", await containerOf("postgres")]);
    const tasks = await waitForTasks<Task>(stack, ids, 600_000, stuckTasksReport);
    // how many deliveries the chaos cost: the attempts each task took (docs/performance.md records them)
    const attempts = new Map<number, number>();
    for (const t of tasks) attempts.set(t.attempts?.length ?? 0, (attempts.get(t.attempts?.length ?? 0) ?? 0) + 1);
    console.log(`chaos: tasks by attempts taken: ${JSON.stringify(Object.fromEntries([...attempts].sort()))}`);
    expect(
      tasks.filter((t) => t.status !== "succeeded").map((t) => `${t.id} ${t.status} ${t.reasonCode}`),
      "tasks that did not succeed",
    ).toEqual([]);
    for (const t of tasks) {
      const reflog = await gitServer("reflog", "show", "--format=%H", `refs/heads/${t.branch}`);
      expect(reflog.split("\n").filter(Boolean), t.id).toHaveLength(1);
    }
  }, 900_000);

  it("takes 20 tasks submitted at once to succeeded", async () => {
    const tasks = await Promise.all(Array.from({ length: 20 }, (_, i) => submitAndWait(sampleTask({ title: `batch ${i}` }), {}, 300_000)));
    expect(tasks.map((t) => t.status)).toEqual(Array(20).fill("succeeded"));
  }, 400_000);
});

describe("every agent that runs a server or calls a model from its container, in the compose stack", () => {
  // The runner runs in a container here: it must join the attempt's network to reach OpenCode's
  // server, and agents reach the scripted model servers on the host through host.docker.internal.
  it("runs an opencode task (OpenCode's server in the task container, driven over REST by the runner)", async () => {
    const llm = await startScriptedOpenAI((req) => {
      if (!req.tools?.length) return { content: "Greeting task" };
      const last = req.messages[req.messages.length - 1];
      if (last?.role === "tool") return { content: "Done." };
      return {
        toolCalls: [{ name: "write", arguments: { filePath: "/workspace/greet.sh", content: '#!/bin/sh\necho "hello from codefleet"\n' } }],
      };
    }, "0.0.0.0");
    try {
      const port = new URL(llm.url).port;
      const task = await submitAndWait(
        sampleTask({
          title: "opencode in compose",
          agent: { kind: "opencode", model: "scripted/scripted", baseUrl: `http://host.docker.internal:${port}/v1` },
          limits: { timeoutSeconds: 120, memoryMb: 1024, cpus: 1 },
        }),
        {},
        180_000,
      );
      expect(task, JSON.stringify(task.phases)).toMatchObject({ status: "succeeded" });
      expect(await gitServer("show", `${task.commitSha}:greet.sh`)).toContain("hello from codefleet");
    } finally {
      await llm.stop();
    }
  }, 240_000);

  it("runs a claude-code task (the Claude Code CLI in the task container against a scripted Messages API)", async () => {
    const llm = await startScriptedAnthropic((req) => {
      const last = req.messages[req.messages.length - 1];
      const content = typeof last?.content === "string" ? [] : (last?.content ?? []);
      if (content.some((b) => b.type === "tool_result")) return { text: "Done." };
      if (req.tools?.some((t) => t.name === "Write"))
        return {
          toolUse: { name: "Write", input: { file_path: "/workspace/greet.sh", content: '#!/bin/sh\necho "hello from codefleet"\n' } },
        };
      return { text: "Greeting task" };
    }, "0.0.0.0");
    try {
      const port = new URL(llm.url).port;
      const task = await submitAndWait(
        sampleTask({
          title: "claude code in compose",
          agent: { kind: "claude-code", model: "claude-scripted", baseUrl: `http://host.docker.internal:${port}`, maxTurns: 5 },
          limits: { timeoutSeconds: 120, memoryMb: 1024, cpus: 1 },
        }),
        {},
        180_000,
      );
      expect(task, JSON.stringify(task.phases)).toMatchObject({ status: "succeeded" });
      expect(llm.apiKeys.some((k) => k.includes(E2E_ANTHROPIC_KEY))).toBe(true);
    } finally {
      await llm.stop();
    }
  }, 240_000);
});

describe("the agents that run in the runner or as a plain command, in the compose stack", () => {
  it("runs an openai task (the model called from the runner container, its tools run in the task container)", async () => {
    const llm = await startScriptedOpenAI((req) => {
      const last = req.messages[req.messages.length - 1];
      if (last?.role === "tool") return { content: "Changed greet.sh." };
      return {
        toolCalls: [{ name: "write_file", arguments: { path: "greet.sh", content: '#!/bin/sh\necho "hello from codefleet"\n' } }],
      };
    }, "0.0.0.0");
    try {
      const port = new URL(llm.url).port;
      const task = await submitAndWait(
        sampleTask({
          title: "openai in compose",
          agent: { kind: "openai", model: "scripted", baseUrl: `http://host.docker.internal:${port}/v1` },
        }),
      );
      expect(task, JSON.stringify(task.phases)).toMatchObject({ status: "succeeded" });
      expect(llm.requests.length).toBe(2);
      expect(await gitServer("show", `${task.commitSha}:greet.sh`)).toContain("hello from codefleet");
    } finally {
      await llm.stop();
    }
  });

  it("runs a command task (argv as is, the prompt in a file)", async () => {
    const task = await submitAndWait(
      sampleTask({
        title: "command in compose",
        agent: {
          kind: "command",
          argv: ["sh", "-c", 'test -s "$1" && printf \'#!/bin/sh\\necho "hello from codefleet"\\n\' > greet.sh', "agent", "{prompt_file}"],
        },
      }),
    );
    expect(task, JSON.stringify(task.phases)).toMatchObject({ status: "succeeded" });
    expect(await gitServer("show", `${task.commitSha}:greet.sh`)).toContain("hello from codefleet");
  });
});

describeCli(() => stack);

describe("tearing the stack down", () => {
  it("leaves nothing behind after down -v, task containers of running tasks included", async () => {
    const project = stack.project;
    // a task whose container is running when the stack goes down
    const res = await api<Task>("/v1/tasks", {
      method: "POST",
      body: JSON.stringify(sampleTask({ title: "still running at down", agent: { kind: "script", steps: [{ run: "sleep 300" }] } })),
    });
    expect(res.status).toBe(202);
    const byDeployment = ["--filter", `label=codefleet.deployment=${project}`];
    await waitFor(
      "the task's container",
      async () => (await execFileP("docker", ["ps", "-q", ...byDeployment])).stdout.trim() !== "",
      60_000,
      250,
    );
    await stack.down();
    const [containers, networks, volumes, tasks, taskNetworks] = await Promise.all([
      execFileP("docker", ["ps", "-aq", "--filter", `label=com.docker.compose.project=${project}`]),
      execFileP("docker", ["network", "ls", "-q", "--filter", `label=com.docker.compose.project=${project}`]),
      execFileP("docker", ["volume", "ls", "-q", "--filter", `label=com.docker.compose.project=${project}`]),
      execFileP("docker", ["ps", "-aq", ...byDeployment]),
      execFileP("docker", ["network", "ls", "-q", ...byDeployment]),
    ]);
    expect([containers, networks, volumes, tasks, taskNetworks].map((r) => r.stdout.trim())).toEqual(["", "", "", "", ""]);
  });
});

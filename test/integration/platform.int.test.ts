import { chmodSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TaskView } from "@codefleet/contracts";
import { Bus, connectNats } from "@codefleet/platform/bus";
import {
  commitFile,
  createTestDatabase,
  createTestRepo,
  freePort,
  git,
  type OtlpReceiver,
  type ReceivedSpan,
  removeDataDir,
  type ServiceProcess,
  spawnService,
  startOtlpReceiver,
  type TestRepo,
  testNamespace,
  waitFor,
  waitForHttp,
} from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

/**
 * The four services as real processes (their main.ts), tracing to an OTLP/HTTP receiver inside
 * this test: one task attempt is one trace across all of them, as Jaeger receives it; and what the
 * platform does for a task once its live log has expired.
 */

const TOKEN = "tracing-test-token";
const SECRET = "sk-live-TRACE-SECRET-9f8e7d6c5b4a";
const AGENT_IMAGE = process.env.CODEFLEET_AGENT_IMAGE ?? "codefleet/agent:latest";

let receiver: OtlpReceiver;
let repo: TestRepo;
let registryUrl: string;
let baseEnv: Record<string, string>;
let runnerEnv: Record<string, string>;
const procs = new Map<string, ServiceProcess>();
const cleanups: (() => Promise<void> | void)[] = [];

async function start(name: string, mainTs: string, env: Record<string, string>): Promise<ServiceProcess> {
  const port = await freePort();
  const proc = spawnService(mainTs, { ...baseEnv, ...env, PORT: String(port), OTEL_SERVICE_NAME: name });
  procs.set(name, proc);
  await waitForHttp(`http://127.0.0.1:${port}/healthz`, 90_000, proc);
  if (name === "task-registry") registryUrl = `http://127.0.0.1:${port}`;
  if (name === "artifact-store") baseEnv.ARTIFACT_STORE_URL = `http://127.0.0.1:${port}`;
  return proc;
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  cleanups.push(() => receiver.close());
  repo = await createTestRepo({ "README.md": "# sample\n", "greet.sh": "#!/bin/sh\necho hello\n" });
  cleanups.push(() => repo.cleanup());
  const db = await createTestDatabase(inject("databaseUrl"));
  cleanups.push(db.drop);
  const dataDir = mkdtempSync(join(tmpdir(), "cf-tracing-"));
  chmodSync(dataDir, 0o755);
  cleanups.push(() => removeDataDir(dataDir));
  baseEnv = {
    DATABASE_URL: db.url,
    NATS_URL: inject("natsUrl"),
    CODEFLEET_NAMESPACE: testNamespace(),
    CODEFLEET_API_TOKENS: TOKEN,
    CODEFLEET_API_TOKEN: TOKEN,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: "200",
    OTEL_METRIC_EXPORT_INTERVAL: "1000",
    LOG_LEVEL: "debug",
    CODEFLEET_REPO_FILE_ROOTS: repo.root,
  };
  await start("artifact-store", "services/artifact-store/src/main.ts", { ARTIFACT_DATA_DIR: join(dataDir, "artifacts") });
  await start("repo-pool", "services/repo-pool/src/main.ts", { REPO_POOL_DATA_DIR: join(dataDir, "repo-pool") });
  runnerEnv = {
    AGENT_IMAGE,
    RUNNER_HEARTBEAT_MS: "1000",
    RUNNER_ACK_WAIT_MS: "4000",
    CODEFLEET_SECRET_API_TOKEN: SECRET,
  };
  await start("runner", "services/runner/src/main.ts", { ...runnerEnv, RUNNER_ID: "runner-a" });
  await start("task-registry", "services/task-registry/src/main.ts", { ARTIFACT_STORE_PUBLIC_URL: baseEnv.ARTIFACT_STORE_URL ?? "" });
}, 240_000);

afterAll(async () => {
  for (const p of procs.values()) await p.kill("SIGTERM").catch(() => undefined);
  for (const c of cleanups.reverse()) await c();
});

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`${registryUrl}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function submit(steps: string[]): Promise<string> {
  const view = await api<TaskView>("/v1/tasks", {
    method: "POST",
    body: JSON.stringify({
      repo: { url: repo.fileUrl, ref: "main" },
      title: "greet from codefleet",
      prompt: "make greet.sh greet from codefleet",
      agent: { kind: "script", steps: steps.map((run) => ({ run })) },
      test: { command: "sh greet.sh | grep -q codefleet" },
      secrets: ["API_TOKEN"],
    }),
  });
  return view.id;
}

async function finished(id: string): Promise<TaskView> {
  let view: TaskView | undefined;
  await waitFor(
    `task ${id} to finish`,
    async () => {
      view = await api<TaskView>(`/v1/tasks/${id}`);
      return ["succeeded", "failed", "timed_out", "canceled"].includes(view.status) && view.artifacts.length > 0;
    },
    120_000,
    300,
  );
  return view as TaskView;
}

const inTrace = (traceId: string) => receiver.spans.filter((s) => s.traceId === traceId);
const byName = (spans: ReceivedSpan[], name: string) => spans.filter((s) => s.name === name);

function ancestors(span: ReceivedSpan, spans: ReceivedSpan[]): ReceivedSpan[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const out: ReceivedSpan[] = [];
  for (let p = span.parentSpanId ? byId.get(span.parentSpanId) : undefined; p; p = p.parentSpanId ? byId.get(p.parentSpanId) : undefined)
    out.push(p);
  return out;
}

const logOf = (name: string) => procs.get(name)?.output() ?? "";

describe("one trace per task attempt across the four services", () => {
  let view: TaskView;
  let spans: ReceivedSpan[];

  it("runs a task whose spans form one connected trace", async () => {
    const id = await submit(['echo "using token $API_TOKEN"', "printf '#!/bin/sh\\necho hello from codefleet\\n' > greet.sh"]);
    view = await finished(id);
    expect(view.status).toBe("succeeded");
    expect(view.traceId).toMatch(/^[0-9a-f]{32}$/);
    const traceId = view.traceId as string;
    // spans arrive in batches; wait for the last ones (the registry ingesting run.finished, the uploads)
    await waitFor(
      "the whole trace to arrive",
      async () => {
        const t = inTrace(traceId);
        // a parent ends (and is exported) after its children: the slot's release may still be on its way
        const known = new Set(t.map((s) => s.spanId));
        return (
          t.every((s) => !s.parentSpanId || known.has(s.parentSpanId)) &&
          byName(t, "ingest run.finished").length > 0 &&
          byName(t, "run task.submitted").length > 0 &&
          byName(t, "upload artifact changes.diff").length > 0 &&
          t.some((s) => s.service === "artifact-store" && s.name.startsWith("PUT "))
        );
      },
      30_000,
      200,
    );
    spans = inTrace(traceId);
    expect(new Set(spans.map((s) => s.service))).toEqual(new Set(["task-registry", "runner", "repo-pool", "artifact-store"]));

    // connected: exactly one root (the submission), every other span's parent is in the trace
    const ids = new Set(spans.map((s) => s.spanId));
    const roots = spans.filter((s) => !s.parentSpanId);
    expect(roots.map((r) => `${r.service} ${r.name}`)).toEqual(["task-registry POST /v1/tasks"]);
    const orphans = spans.filter((s) => s.parentSpanId && !ids.has(s.parentSpanId));
    expect(orphans.map((s) => `${s.service} ${s.name}`)).toEqual([]);
  });

  it("has the path submission → ingestion → queue → pickup → allocation → container → phases → uploads → run finished", async () => {
    const one = (name: string, service?: string) => {
      const found = spans.filter((s) => s.name === name && (!service || s.service === service));
      expect(
        found.map((s) => s.name),
        `span '${name}'`,
      ).toHaveLength(1);
      return found[0] as ReceivedSpan;
    };
    const root = spans.find((s) => !s.parentSpanId) as ReceivedSpan;
    const publishSubmitted = one("publish task.submitted", "task-registry");
    const ingest = one("ingest task.submitted", "task-registry");
    const pickup = one("run task.submitted", "runner");
    const attempt = one("task attempt 1", "runner");
    expect(ancestors(publishSubmitted, spans)).toContain(root);
    expect(ingest.parentSpanId).toBe(publishSubmitted.spanId);
    // stored, then put on the tenant's run queue, from which a runner takes it
    const enqueue = one("enqueue task", "task-registry");
    expect(enqueue.parentSpanId).toBe(ingest.spanId);
    expect(pickup.parentSpanId).toBe(enqueue.spanId);
    expect(attempt.parentSpanId).toBe(pickup.spanId);

    const allocate = one("repo-pool allocate", "repo-pool");
    expect(ancestors(allocate, spans)).toContain(attempt);
    const create = one("docker container create", "runner");
    expect(ancestors(create, spans)).toContain(attempt);
    expect(create.attributes["container.id"] ?? create.attributes["codefleet.task_id"]).toBeDefined();

    const phases = ["fetch", "implement", "test", "push"].map((p) => one(`phase ${p}`, "runner"));
    for (const p of phases) expect(p.parentSpanId).toBe(attempt.spanId);
    for (let i = 1; i < phases.length; i++) expect((phases[i] as ReceivedSpan).startNs >= (phases[i - 1] as ReceivedSpan).endNs).toBe(true);
    expect(phases.map((p) => p.attributes["codefleet.outcome"])).toEqual(["succeeded", "succeeded", "succeeded", "succeeded"]);
    expect(phases[2]?.attributes["process.exit.code"]).toBe(0);
    expect(allocate.endNs <= (phases[0] as ReceivedSpan).startNs).toBe(true);

    const upload = one("upload artifact changes.diff", "runner");
    expect(upload.attributes["codefleet.artifact.bytes"]).toBeGreaterThan(0);
    const stored = spans.find((s) => s.service === "artifact-store" && s.name.startsWith("PUT ") && ancestors(s, spans).includes(upload));
    expect(stored, "the artifact-store's server span under the runner's upload").toBeDefined();
    // the artifact-store's database work is in the trace too (pg instrumentation)
    expect(spans.some((s) => s.service === "artifact-store" && s.attributes["db.system"] === "postgresql")).toBe(true);

    const finishedPublish = one("publish run.finished", "runner");
    expect(ancestors(finishedPublish, spans)).toContain(attempt);
    const ingestFinished = one("ingest run.finished", "task-registry");
    expect(ingestFinished.parentSpanId).toBe(finishedPublish.spanId);
    expect(spans.some((s) => s.service === "task-registry" && s.attributes["db.system"] === "postgresql")).toBe(true);
    expect(attempt.attributes).toMatchObject({ "codefleet.task_id": view.id, "codefleet.attempt": 1, "codefleet.agent_kind": "script" });
  });

  it("puts the task's secret in no span attribute and no log line, and trace ids in the logs", async () => {
    expect(receiver.rawBodies.some((b) => b.includes(SECRET))).toBe(false);
    for (const name of procs.keys()) expect(logOf(name), `${name} log`).not.toContain(SECRET);
    // the task's log recorded the masked line
    const log = await fetch(`${registryUrl}/v1/tasks/${view.id}/logs`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((r) =>
      r.text(),
    );
    expect(log).toContain("using token ***");
    const runnerLines = logOf("runner")
      .split("\n")
      .filter((l) => l.startsWith("{") && l.includes(view.id))
      .map((l) => JSON.parse(l) as { trace_id?: string; span_id?: string; taskId?: string });
    expect(runnerLines.length).toBeGreaterThan(0);
    expect(runnerLines.some((l) => l.trace_id === view.traceId && l.span_id && l.taskId === view.id)).toBe(true);
  });

  it("exports metrics over OTLP as well", async () => {
    await waitFor(
      "metrics from the runner and the registry",
      async () =>
        receiver.metrics.some((m) => m.service === "runner" && m.name === "codefleet_runner_phase_duration_ms") &&
        receiver.metrics.some((m) => m.service === "task-registry" && m.name === "codefleet_registry_events_ingested_total"),
      15_000,
      250,
    );
  });

  it("makes a second attempt (after kill -9 of the runner) its own trace, linked to the first", async () => {
    const id = await submit(["sleep 6", "printf '#!/bin/sh\\necho hello from codefleet\\n' > greet.sh"]);
    await waitFor("the implement phase", async () => (await api<TaskView>(`/v1/tasks/${id}`)).currentPhase === "implement", 60_000, 100);
    await procs.get("runner")?.kill("SIGKILL");
    await start("runner", "services/runner/src/main.ts", { ...runnerEnv, RUNNER_ID: "runner-b" });
    const v = await finished(id);
    expect(v.status).toBe("succeeded");
    expect(v.attempt).toBe(2);
    const [first, second] = v.attempts;
    expect(first?.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(second?.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(second?.traceId).not.toBe(first?.traceId);
    expect(v.traceId).toBe(second?.traceId);
    let attempt2: ReceivedSpan | undefined;
    await waitFor(
      "attempt 2's trace",
      async () => {
        attempt2 = byName(inTrace(second?.traceId as string), "task attempt 2")[0];
        return attempt2 !== undefined && byName(inTrace(second?.traceId as string), "phase push").length > 0;
      },
      30_000,
      200,
    );
    expect(attempt2?.parentSpanId).toBeUndefined();
    const linkedTraces = attempt2?.links.map((l) => `${l.attributes["codefleet.link"]} ${l.traceId}`);
    expect(linkedTraces).toContain(`previous attempt ${first?.traceId}`);
    // the phases of attempt 2 are in attempt 2's trace
    expect(byName(inTrace(second?.traceId as string), "phase implement")[0]?.parentSpanId).toBe(attempt2?.spanId);
  });
});

describe("a task's log once the live log stream has expired", () => {
  it("is served from the stored task.log artifact, as text and as SSE", async () => {
    const id = await submit(['echo "a line for the record"', "printf '#!/bin/sh\\necho hello from codefleet\\n' > greet.sh"]);
    const view = await finished(id);
    expect(view.status).toBe("succeeded");
    const live = await fetch(`${registryUrl}/v1/tasks/${id}/logs`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(live.headers.get("x-codefleet-log-source")).toBeNull();
    const liveText = await live.text();
    expect(liveText).toContain("a line for the record");

    // what max_age does to old chunks: the task's subject on the log stream is emptied
    const nc = await connectNats({ servers: baseEnv.NATS_URL as string, name: "expire-logs" });
    try {
      const bus = await Bus.create(nc, { namespace: baseEnv.CODEFLEET_NAMESPACE as string });
      await bus.jsm.streams.purge(bus.topology.streams.logs.name, { filter: bus.topology.subjects.logs(id) });
    } finally {
      await nc.drain();
    }

    const stored = await fetch(`${registryUrl}/v1/tasks/${id}/logs`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(stored.headers.get("x-codefleet-log-source")).toBe("artifact");
    const storedText = await stored.text();
    expect(storedText).toContain("a line for the record");
    expect(storedText).toContain("phase push succeeded");

    const sse = await fetch(`${registryUrl}/v1/tasks/${id}/logs`, {
      headers: { authorization: `Bearer ${TOKEN}`, accept: "text/event-stream" },
    }).then((r) => r.text());
    const events = sse.split("\n\n").filter((f) => f.startsWith("event: "));
    expect(events.at(-1)).toBe('event: end\ndata: {"status":"succeeded"}');
    const text = events
      .filter((f) => f.startsWith("event: log"))
      .map((f) => (JSON.parse(f.split("data: ")[1] as string) as { text: string }).text)
      .join("");
    expect(text).toBe(storedText);
  });
});

describe("follow-ups and best-of-N across the four services", () => {
  it("gives each best-of-N candidate a trace of its own, linked to its attempt's, and pushes the one whose tests pass", async () => {
    const view0 = await api<TaskView>("/v1/tasks", {
      method: "POST",
      body: JSON.stringify({
        repo: { url: repo.fileUrl, ref: "main" },
        title: "best of two",
        prompt: "p",
        candidates: 2,
        agent: { kind: "script", steps: [{ run: 'printf "#!/bin/sh\\necho hello from candidate $CODEFLEET_CANDIDATE\\n" > greet.sh' }] },
        test: { command: "sh greet.sh | grep -q 'candidate 2'" },
      }),
    });
    const v = await finished(view0.id);
    expect(v.status, v.failureReason).toBe("succeeded");
    expect(v.candidates?.map((c) => [c.candidate, c.status, c.winner])).toEqual([
      [1, "failed", false],
      [2, "passed", true],
    ]);
    const attemptTrace = v.attempts[0]?.traceId as string;
    const candidateTraces = v.candidates?.map((c) => c.traceId as string) ?? [];
    expect(new Set([attemptTrace, ...candidateTraces]).size).toBe(3);
    await waitFor(
      "the candidates' spans",
      async () => candidateTraces.every((t) => byName(inTrace(t), "phase test").length > 0),
      30_000,
      200,
    );
    for (const [i, t] of candidateTraces.entries()) {
      const root = byName(inTrace(t), `candidate ${i + 1}`)[0];
      expect(root?.parentSpanId).toBeUndefined();
      expect(root?.links.map((l) => `${l.attributes["codefleet.link"]} ${l.traceId}`)).toContain(`attempt ${attemptTrace}`);
      // its phases are in its trace, under it
      expect(byName(inTrace(t), "phase implement")[0]?.parentSpanId).toBe(root?.spanId);
    }
    // the winner's rebase and push are the attempt's own
    expect(byName(inTrace(attemptTrace), "phase push")).toHaveLength(1);
  });

  it("hands a rebase conflict to the agent as a follow-up turn on the new base when the spec says so", async () => {
    const view0 = await api<TaskView>("/v1/tasks", {
      method: "POST",
      body: JSON.stringify({
        repo: { url: repo.fileUrl, ref: "main" },
        title: "rewrite the readme",
        prompt: "p",
        push: { onConflict: "follow-up" },
        // turn 1 is slow, so the base moves under it; turn 2 (a follow-up) is fast and starts on the new base
        agent: {
          kind: "script",
          steps: [{ run: 'if [ "$CODEFLEET_TURN" = 1 ]; then sleep 4; fi; echo "# rewritten by turn $CODEFLEET_TURN" > README.md' }],
        },
      }),
    });
    const id = view0.id;
    await waitFor("implement", async () => (await api<TaskView>(`/v1/tasks/${id}`)).currentPhase === "implement", 60_000, 100);
    await commitFile(repo, "README.md", "# rewritten upstream\n", "upstream rewrites the readme");
    const moved = await git(repo.bare, "rev-parse", "refs/heads/main");
    let v: TaskView | undefined;
    await waitFor(
      "turn 2 to end",
      async () => {
        v = await api<TaskView>(`/v1/tasks/${id}`);
        return v.turn === 2 && ["succeeded", "failed"].includes(v.status);
      },
      120_000,
      300,
    );
    const view = v as TaskView;
    expect(view.turns.map((t) => [t.turn, t.status])).toEqual([
      [1, "failed"],
      [2, "succeeded"],
    ]);
    expect(view.turns[1]?.requestedBy).toBe("codefleet:rebase-conflict");
    expect(view.turns[0]?.reasonCode).toBe("rebase_conflict");
    expect(view.turns[1]?.prompt).toContain("README.md");
    const pushed = await git(repo.bare, "rev-parse", `refs/heads/codefleet/${id}`);
    expect(await git(repo.bare, "rev-parse", `${pushed}^`)).toBe(moved);
    expect(await git(repo.bare, "show", `${pushed}:README.md`)).toBe("# rewritten by turn 2");
  });
});

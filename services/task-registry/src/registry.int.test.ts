import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEvent, newTaskId, type TaskSpec } from "@codefleet/contracts";
import { runMigrations } from "@codefleet/platform/runtime";
import { createTestDatabase, freePort, spawnService, testNamespace, waitFor, waitForHttp } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadRegistryConfig } from "./config.js";
import { canonicalHash } from "./domain/submission.js";
import { evolve, type TaskView } from "./domain/task-state.js";
import { type RegistryService, startRegistry } from "./service.js";
import { createDatabase } from "./store/database.js";
import { countEvents } from "./store/event-store.js";
import * as initialMigration from "./store/migrations/2026-11-23T00-00-initial.js";
import { rebuildProjections, replayLog } from "./store/rebuild.js";

/** The view the version before tenancy projected (no tenant). */
const evolveOld = (e: Parameters<typeof evolve>[1]) => evolve(undefined, e).state;

const TOKEN = "test-token-0123456789";
const auth = { authorization: `Bearer ${TOKEN}` };

const spec: TaskSpec = {
  repo: { url: "https://git.example.com/acme/app.git", ref: "main" },
  title: "add a greeting",
  prompt: "create HELLO.txt",
  agent: { kind: "script", steps: [{ run: "echo hello > HELLO.txt" }] },
  test: { command: "test -f HELLO.txt" },
  labels: { team: "platform" },
};

let svc: RegistryService;
let dropDb: () => Promise<void>;
let env: Record<string, string>;
/** The one directory local repositories may lie under in these tests. */
let fileRoot: string;

beforeAll(async () => {
  const database = await createTestDatabase(inject("databaseUrl"));
  dropDb = database.drop;
  fileRoot = mkdtempSync(join(tmpdir(), "cf-registry-repos-"));
  env = {
    DATABASE_URL: database.url,
    NATS_URL: inject("natsUrl"),
    CODEFLEET_NAMESPACE: testNamespace(),
    CODEFLEET_API_TOKENS: `other-token,${TOKEN}`,
    NATS_STORAGE: "memory",
    LOG_LEVEL: "error",
    BODY_LIMIT_BYTES: String(6 * 1024 * 1024),
    CODEFLEET_REPO_FILE_ROOTS: fileRoot,
    CODEFLEET_REPO_HTTP_HOSTS: "git.internal:8080",
    CODEFLEET_REPO_ALLOWED_HOSTS: "git.example.com/acme,git.internal:8080,github.com/acme",
    CODEFLEET_SECRET_ENDPOINTS: JSON.stringify({ OPENAI_API_KEY: ["llm.internal:8443"], ANTHROPIC_API_KEY: ["api.anthropic.com"] }),
  };
  svc = await startRegistry(loadRegistryConfig(env));
});

afterAll(async () => {
  await svc?.stop();
  await dropDb?.();
  if (fileRoot) rmSync(fileRoot, { recursive: true, force: true });
});

async function eventually<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  let value: T | undefined;
  await waitFor(
    what,
    async () => {
      value = await f();
      return value !== undefined;
    },
    timeoutMs,
    50,
  );
  return value as T;
}

async function getTask(id: string): Promise<TaskView | undefined> {
  const res = await svc.app.inject({ method: "GET", url: `/v1/tasks/${id}`, headers: auth });
  return res.statusCode === 200 ? (res.json() as TaskView) : undefined;
}

async function submit(body: unknown = spec, headers: Record<string, string> = {}) {
  return svc.app.inject({ method: "POST", url: "/v1/tasks", headers: { ...auth, ...headers }, payload: body as object });
}

describe("task-registry on real Postgres and NATS", () => {
  it("accepts a task over HTTP and projects it from the event it published", async () => {
    const res = await submit();
    expect(res.statusCode).toBe(202);
    const body = res.json() as TaskView;
    expect(body.id).toMatch(/^tsk_/);
    expect(body.status).toBe("queued");
    expect(res.headers.location).toBe(`/v1/tasks/${body.id}`);
    const view = await eventually("projection", () => getTask(body.id));
    expect(view.status).toBe("queued");
    expect(view.branch).toBe(`codefleet/${body.id}`);
    expect(view.submittedVia).toBe("http");
    const events = (await svc.app.inject({ method: "GET", url: `/v1/tasks/${body.id}/events`, headers: auth })).json();
    expect(events.items.map((e: { type: string }) => e.type)).toEqual(["task.submitted"]);
    expect(events.items[0].streamVersion).toBe(1);
  });

  it("ends in the same state when a dispatcher publishes task.submitted straight to the bus", async () => {
    const taskId = newTaskId();
    await svc.bus.publish(createEvent("task.submitted", { taskId, producer: "dispatcher", data: { spec, submittedVia: "bus" } }));
    const view = await eventually("projection", () => getTask(taskId));
    expect(view.status).toBe("queued");
    expect(view.title).toBe(spec.title);
    expect(view.labels).toEqual({ team: "platform" });
  });

  it("stores an event delivered twice once", async () => {
    const taskId = newTaskId();
    const e = createEvent("task.submitted", { taskId, producer: "dispatcher", data: { spec, submittedVia: "bus" } });
    const subject = svc.bus.topology.subjects.event(taskId, "task.submitted");
    const raw = new TextEncoder().encode(JSON.stringify(e));
    // Two stream messages (no Nats-Msg-Id), one event id: the consumer side must de-duplicate.
    await svc.bus.js.publish(subject, raw);
    await svc.bus.js.publish(subject, raw);
    await eventually("projection", () => getTask(taskId));
    await new Promise((r) => setTimeout(r, 500));
    const rows = await svc.db.selectFrom("events").select("event_id").where("stream_id", "=", taskId).execute();
    expect(rows).toHaveLength(1);
  });

  it("stores an illegal transition flagged as an anomaly without corrupting the projection", async () => {
    const taskId = newTaskId();
    const publish = (e: Parameters<typeof svc.bus.publish>[0]) => svc.bus.publish(e);
    await publish(createEvent("task.submitted", { taskId, producer: "t", data: { spec, submittedVia: "bus" } }));
    await publish(createEvent("run.started", { taskId, attempt: 1, producer: "t", data: { runnerId: "r1", agentKind: "script" } }));
    await publish(createEvent("run.finished", { taskId, attempt: 1, producer: "t", data: { status: "succeeded", durationMs: 10 } }));
    await publish(createEvent("phase.started", { taskId, attempt: 1, producer: "t", data: { phase: "test" } }));
    const events = await eventually("4 events", async () => {
      const r = (await svc.app.inject({ method: "GET", url: `/v1/tasks/${taskId}/events`, headers: auth })).json();
      return r.items?.length === 4 ? r.items : undefined;
    });
    expect(events[3].anomaly).toMatch(/while the task is succeeded/);
    const view = (await getTask(taskId)) as TaskView;
    expect(view.status).toBe("succeeded");
    expect(view.phases).toEqual([]);
    expect(view.anomalies).toBe(1);
  });

  it("makes a retried submission with the same Idempotency-Key one task", async () => {
    const key = `key-${Math.random()}`;
    const first = await submit(spec, { "idempotency-key": key });
    const second = await submit(spec, { "idempotency-key": key });
    expect(first.statusCode).toBe(202);
    expect(second.statusCode).toBe(202);
    expect(second.json().id).toBe(first.json().id);
    expect(second.headers["idempotent-replayed"]).toBe("true");
    const mismatch = await submit({ ...spec, title: "something else" }, { "idempotency-key": key });
    expect(mismatch.statusCode).toBe(422);
    expect(mismatch.json().code).toBe("idempotency_key_mismatch");
    await eventually("projection", () => getTask(first.json().id));
    const n = await svc.db.selectFrom("events").select("event_id").where("stream_id", "=", first.json().id).execute();
    expect(n).toHaveLength(1);
  });

  it("lists with filters and a cursor", async () => {
    const label = `run-${Math.random().toString(36).slice(2)}`;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await submit({ ...spec, labels: { batch: label } })).json().id);
    await eventually("5 projected", async () => {
      const r = (await svc.app.inject({ method: "GET", url: `/v1/tasks?label=batch=${label}&limit=50`, headers: auth })).json();
      return r.items.length === 5 ? r : undefined;
    });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const r = (
        await svc.app.inject({
          method: "GET",
          url: `/v1/tasks?label=batch=${label}&limit=2${cursor ? `&cursor=${cursor}` : ""}`,
          headers: auth,
        })
      ).json();
      seen.push(...r.items.map((t: TaskView) => t.id));
      cursor = r.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    const byStatus = (
      await svc.app.inject({ method: "GET", url: `/v1/tasks?status=succeeded&label=batch=${label}`, headers: auth })
    ).json();
    expect(byStatus.items).toEqual([]);
    const byRepo = (
      await svc.app.inject({
        method: "GET",
        url: `/v1/tasks?repo=${encodeURIComponent(spec.repo.url)}&label=batch=${label}`,
        headers: auth,
      })
    ).json();
    expect(byRepo.items).toHaveLength(5);
  });

  it("cancels a queued task, then answers 409 for a second cancel", async () => {
    const id = (await submit()).json().id;
    await eventually("projection", () => getTask(id));
    const cancel = await svc.app.inject({
      method: "POST",
      url: `/v1/tasks/${id}/cancel`,
      headers: auth,
      payload: { reason: "changed my mind" },
    });
    expect(cancel.statusCode).toBe(202);
    const view = await eventually("canceled", async () => {
      const v = await getTask(id);
      return v?.status === "canceled" ? v : undefined;
    });
    expect(view.failureReason).toBe("changed my mind");
    const again = await svc.app.inject({ method: "POST", url: `/v1/tasks/${id}/cancel`, headers: auth });
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe("task_finished");
    expect(again.headers["content-type"]).toMatch(/application\/problem\+json/);
  });

  it("takes a follow-up only on a finished task: turn 2 queued on the run queue, the same turn never twice", async () => {
    const id = (await submit()).json().id as string;
    await eventually("projection", () => getTask(id));
    const followUp = (body: unknown) =>
      svc.app.inject({ method: "POST", url: `/v1/tasks/${id}/follow-ups`, headers: auth, payload: body as object });
    // the runner's part, played here
    const sha = "c".repeat(40);
    await svc.bus.publish(
      createEvent("run.started", { taskId: id, attempt: 1, producer: "t", data: { runnerId: "r", agentKind: "script" } }),
    );
    await eventually("running", async () => ((await getTask(id))?.status === "running" ? true : undefined));
    const early = await followUp({ prompt: "and a goodbye" });
    expect(early.statusCode).toBe(409);
    expect(early.json().code).toBe("task_not_finished");
    await svc.bus.publish(
      createEvent("run.finished", { taskId: id, attempt: 1, producer: "t", data: { status: "succeeded", durationMs: 5, commitSha: sha } }),
    );
    await eventually("succeeded", async () => ((await getTask(id))?.status === "succeeded" ? true : undefined));

    // schema errors are 422 with the problem's code, as for submissions
    expect((await followUp({})).statusCode).toBe(422);
    expect((await followUp({ prompt: "x", surprise: 1 })).statusCode).toBe(422);
    expect(
      (await svc.app.inject({ method: "POST", url: `/v1/tasks/${newTaskId()}/follow-ups`, headers: auth, payload: { prompt: "x" } }))
        .statusCode,
    ).toBe(404);
    // two requests racing for turn 2: one is taken, the other told so
    const [a, b] = await Promise.all([followUp({ prompt: "and a goodbye" }), followUp({ prompt: "something else" })]);
    expect([a.statusCode, b.statusCode].sort()).toEqual([202, 409]);
    const accepted = (a.statusCode === 202 ? a : b).json() as TaskView;
    expect(accepted).toMatchObject({ status: "queued", turn: 2 });
    const view = await eventually("turn 2 projected", async () => {
      const v = await getTask(id);
      return v?.turn === 2 ? v : undefined;
    });
    expect(view.status).toBe("queued");
    expect(view.turns.map((t) => [t.turn, t.status, t.fromCommit, t.firstAttempt])).toEqual([
      [1, "succeeded", undefined, 1],
      [2, undefined, sha, 2],
    ]);
    expect(view.turns[1]?.prompt).toBe(accepted.turns[1]?.prompt);
    // on the tenant's run queue: the submission and the follow-up
    const { queue } = svc.bus.topology.streams;
    await eventually("follow-up queued", async () => {
      const counts = await svc.bus.messagesPerSubject(queue.name, svc.bus.topology.subjects.queue("default"));
      return Object.values(counts).reduce((x, y) => x + y, 0) >= 2 ? true : undefined;
    });
    // while turn 2 waits, another follow-up waits for it
    expect((await followUp({ prompt: "third" })).json().code).toBe("task_not_finished");
    // a cancel now is turn 2's
    expect((await svc.app.inject({ method: "POST", url: `/v1/tasks/${id}/cancel`, headers: auth })).statusCode).toBe(202);
    const canceled = await eventually("turn 2 canceled", async () => {
      const v = await getTask(id);
      return v?.status === "canceled" ? v : undefined;
    });
    expect(canceled.turns.map((t) => t.status)).toEqual(["succeeded", "canceled"]);

    // a task that does not push has nothing a later turn could start from
    const local = (await submit({ ...spec, push: { enabled: false } })).json().id as string;
    await eventually("projection", () => getTask(local));
    await svc.bus.publish(
      createEvent("run.started", { taskId: local, attempt: 1, producer: "t", data: { runnerId: "r", agentKind: "script" } }),
    );
    await svc.bus.publish(
      createEvent("run.finished", { taskId: local, attempt: 1, producer: "t", data: { status: "succeeded", durationMs: 5 } }),
    );
    await eventually("local task done", async () => ((await getTask(local))?.status === "succeeded" ? true : undefined));
    const refused = await svc.app.inject({ method: "POST", url: `/v1/tasks/${local}/follow-ups`, headers: auth, payload: { prompt: "x" } });
    expect(refused.statusCode).toBe(409);
    expect(refused.json().code).toBe("follow_up_needs_push");
  });

  it("answers every error route with problem+json and a stable code", async () => {
    const noAuth = await svc.app.inject({ method: "GET", url: "/v1/tasks" });
    expect(noAuth.statusCode).toBe(401);
    expect(noAuth.json().code).toBe("unauthorized");
    const badToken = await svc.app.inject({ method: "GET", url: "/v1/tasks", headers: { authorization: "Bearer nope" } });
    expect(badToken.statusCode).toBe(401);
    const missing = await svc.app.inject({ method: "GET", url: `/v1/tasks/${newTaskId()}`, headers: auth });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe("task_not_found");
    const tooBig = await submit({ ...spec, prompt: "x".repeat(7 * 1024 * 1024) });
    expect(tooBig.statusCode).toBe(413);
    const invalid = await submit({ ...spec, agent: { kind: "script", steps: [] } });
    expect(invalid.statusCode).toBe(422);
    expect(invalid.json().issues[0].path).toContain("/agent");
    const unknownField = await submit({ ...spec, surprise: true });
    expect(unknownField.statusCode).toBe(422);
    const badRef = await submit({ ...spec, repo: { url: spec.repo.url, ref: "--upload-pack=evil" } });
    expect(badRef.statusCode).toBe(422);
    const health = await svc.app.inject({ method: "GET", url: "/healthz" });
    expect(health.statusCode).toBe(200);
    const ready = await svc.app.inject({ method: "GET", url: "/readyz" });
    expect(ready.json()).toMatchObject({ status: "ready", checks: { nats: "ok", postgres: "ok" } });
    const metrics = await svc.app.inject({ method: "GET", url: "/metrics" });
    expect(metrics.body).toContain("codefleet_registry_events_ingested_total");
    const docs = await svc.app.inject({ method: "GET", url: "/docs/json" });
    expect(docs.statusCode).toBe(200);
    expect(Object.keys(docs.json().paths)).toContain("/v1/tasks/{id}/cancel");
  });

  it("refuses repository URLs and agent endpoints the policy does not allow: 422 problem+json, a stable code, nothing published", async () => {
    const label = `refused-${Math.random().toString(36).slice(2)}`;
    const refused: [Partial<TaskSpec>, string][] = [
      [{ repo: { url: "file:///etc" } }, "repo_url_file_refused"],
      [{ repo: { url: `file://${fileRoot}/../../etc` } }, "repo_url_file_refused"],
      [{ repo: { url: `${fileRoot}-evil/app.git` } }, "repo_url_file_refused"],
      [{ repo: { url: "file://localhost/srv/git/app.git" } }, "repo_url_file_refused"],
      [{ repo: { url: "/var/lib/codefleet/repo-pool/mirrors/other.git" } }, "repo_url_file_refused"],
      [{ repo: { url: "./relative.git" } }, "repo_url_file_refused"],
      [{ repo: { url: "ext::sh -c touch% /tmp/pwned" } }, "repo_url_scheme_refused"],
      [{ repo: { url: "fd::3" } }, "repo_url_scheme_refused"],
      [{ repo: { url: "http://127.0.0.1:9/acme/app.git" } }, "repo_url_scheme_refused"],
      [{ repo: { url: "http://git.internal:9090/app.git" } }, "repo_url_scheme_refused"],
      [{ repo: { url: "https://user:s3cr3t-pw@evil.example/acme/app.git" } }, "repo_url_host_refused"],
      [{ repo: { url: "git@github.com:other/app.git" } }, "repo_url_host_refused"],
      [{ repo: { url: "https://github.com.evil.example/acme/app.git" } }, "repo_url_host_refused"],
      [{ repo: { url: "https://github.com/acme/../other/app.git" } }, "repo_url_host_refused"],
      [{ repo: { url: "-uhttps://github.com/acme/app.git" } }, "repo_url_invalid"],
      [{ repo: { url: "https://github.com\\@evil.example/acme/app.git" } }, "repo_url_invalid"],
      [{ agent: { kind: "openai", model: "gpt", baseUrl: "https://collector.evil.example/v1" } }, "secret_endpoint_not_allowed"],
      [{ agent: { kind: "openai", model: "gpt", baseUrl: "https://llm.internal/v1" } }, "secret_endpoint_not_allowed"],
      [
        { agent: { kind: "opencode", model: "p/m", apiKeySecret: "GIT_PASSWORD", baseUrl: "https://llm.internal:8443/v1" } },
        "secret_endpoint_not_allowed",
      ],
      [{ agent: { kind: "claude-code", baseUrl: "https://llm.internal:8443" } }, "secret_endpoint_not_allowed"],
      [{ agent: { kind: "openai", model: "gpt", baseUrl: "file:///etc/passwd" } }, "invalid_base_url"],
    ];
    for (const [override, code] of refused) {
      const res = await submit({ ...spec, ...override, labels: { batch: label } });
      const what = JSON.stringify(override);
      expect(res.statusCode, `${what} → ${res.body}`).toBe(422);
      expect(res.headers["content-type"], what).toMatch(/application\/problem\+json/);
      expect(res.json(), what).toMatchObject({ status: 422, code, type: `https://codefleet.dev/problems/${code}` });
      expect(res.body, what).not.toContain("s3cr3t-pw");
    }
    // none of them became a task: a later accepted one is projected, the refused ones never are
    const ok = await submit({ ...spec, labels: { batch: `${label}-ok` } });
    expect(ok.statusCode).toBe(202);
    await eventually("projection", () => getTask(ok.json().id));
    const listed = (await svc.app.inject({ method: "GET", url: `/v1/tasks?label=batch=${label}`, headers: auth })).json();
    expect(listed.items).toEqual([]);
  });

  it("accepts what the policy allows", async () => {
    const accepted: Partial<TaskSpec>[] = [
      { repo: { url: `file://${fileRoot}/app.git` } },
      { repo: { url: `${fileRoot}/team/app.git`, ref: "main" } },
      { repo: { url: `file://${fileRoot}/a/../b.git` } },
      { repo: { url: "http://git.internal:8080/app.git" } },
      { repo: { url: "git@github.com:acme/app.git" } },
      { repo: { url: "https://GitHub.com/acme/app" } },
      { agent: { kind: "openai", model: "gpt", baseUrl: "https://llm.internal:8443/v1" } },
      { agent: { kind: "opencode", model: "p/m", baseUrl: "https://LLM.internal:8443/v1" } },
      { agent: { kind: "claude-code", baseUrl: "https://api.anthropic.com" } },
      { agent: { kind: "openai", model: "gpt", apiKeySecret: "TEAM_KEY" } }, // no baseUrl: the operator's endpoint
      { agent: { kind: "command", argv: ["true"] } },
    ];
    for (const override of accepted) {
      const res = await submit({ ...spec, ...override });
      expect(res.statusCode, `${JSON.stringify(override)} → ${res.body}`).toBe(202);
    }
  });

  it("validates the schema before the policy, and a refused submission does not use up its Idempotency-Key", async () => {
    const both = await submit({ ...spec, repo: { url: "ext::sh -c id" }, agent: { kind: "script", steps: [] } });
    expect(both.statusCode).toBe(422);
    expect(both.json().code).toBe("invalid_request");
    const unknownField = await submit({ ...spec, repo: { url: "file:///etc", evil: true } });
    expect(unknownField.json().code).toBe("invalid_request");

    const key = `policy-${Math.random()}`;
    const refused = await submit({ ...spec, repo: { url: "file:///etc" } }, { "idempotency-key": key });
    expect(refused.json().code).toBe("repo_url_file_refused");
    const fixed = await submit(spec, { "idempotency-key": key });
    expect(fixed.statusCode).toBe(202);
    expect(fixed.headers["idempotent-replayed"]).toBe("false");
  });

  it("refuses local repositories, plain http and custom agent endpoints when the operator configured nothing", () => {
    const { securityPolicy } = loadRegistryConfig({ DATABASE_URL: "postgres://x", CODEFLEET_API_TOKENS: TOKEN });
    expect(securityPolicy).toEqual({
      repoUrls: { fileRoots: [], httpHosts: [], allowedHosts: [] },
      secretEndpoints: {},
      secretTenants: {},
    });
    expect(() =>
      loadRegistryConfig({ DATABASE_URL: "postgres://x", CODEFLEET_API_TOKENS: TOKEN, CODEFLEET_SECRET_ENDPOINTS: "{oops" }),
    ).toThrow(/CODEFLEET_SECRET_ENDPOINTS/);
    expect(() =>
      loadRegistryConfig({ DATABASE_URL: "postgres://x", CODEFLEET_API_TOKENS: TOKEN, CODEFLEET_REPO_FILE_ROOTS: "relative" }),
    ).toThrow(/CODEFLEET_REPO_FILE_ROOTS/);
  });

  it("answers malformed, mistyped, oversized and deeply nested bodies with 4xx, never 5xx, and stays up", async () => {
    const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
    const deepObj = (n: number) => '{"a":'.repeat(n) + "1" + "}".repeat(n);
    const bodies: string[] = [
      "",
      "{",
      "null",
      "[]",
      "42",
      '"str"',
      '{"__proto__": {"polluted": true}}',
      '{"constructor": {"prototype": {"x": 1}}}',
      JSON.stringify({ ...spec, title: 12 }),
      JSON.stringify({ ...spec, repo: "not an object" }),
      JSON.stringify({ ...spec, agent: { kind: "telepathy" } }),
      JSON.stringify({ ...spec, limits: { memoryMb: 99999 } }),
      JSON.stringify({ ...spec, limits: { cpus: "two" } }),
      JSON.stringify({ ...spec, title: "t".repeat(100_000) }),
      JSON.stringify({ ...spec, labels: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, "v"])) }),
      JSON.stringify({ ...spec, extra: deep(5000) }),
      `{"repo": ${deep(20_000)}}`,
      `{"title": ${deepObj(20_000)}}`,
      deep(100_000),
      "\u0000\u0001garbage",
      JSON.stringify({ ...spec, repo: { url: "x", ref: "a..b" } }),
      JSON.stringify({ ...spec, secrets: ["lower-case-not-allowed"] }),
    ];
    // Random mutations of a valid spec: drop, retype or add fields.
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const values = [null, 0, -1, 1e308, "", "x".repeat(300), [], {}, true, [1, 2], { nested: { deeper: [] } }];
    for (let i = 0; i < 150; i++) {
      const mutated: Record<string, unknown> = JSON.parse(JSON.stringify(spec));
      const keys = [
        "repo",
        "title",
        "prompt",
        "agent",
        "test",
        "push",
        "limits",
        "labels",
        "env",
        "secrets",
        "acceptanceCriteria",
        `x${i}`,
      ];
      const key = keys[Math.floor(rand() * keys.length)] as string;
      if (rand() < 0.3) delete mutated[key];
      else mutated[key] = values[Math.floor(rand() * values.length)];
      bodies.push(JSON.stringify(mutated));
    }
    for (const body of bodies) {
      const res = await svc.app.inject({
        method: "POST",
        url: "/v1/tasks",
        headers: { ...auth, "content-type": "application/json" },
        payload: body,
      });
      if (res.statusCode === 202) continue; // a mutation that happens to stay valid
      expect(res.statusCode, `body ${body.slice(0, 80)} → ${res.statusCode} ${res.body.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, `body ${body.slice(0, 80)} → ${res.body.slice(0, 200)}`).toBeLessThan(500);
    }
    expect((await svc.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
    expect((await submit()).statusCode).toBe(202);
  });

  it("serves a task's log as text and as resumable SSE that ends when the task has ended", async () => {
    const taskId = newTaskId();
    await svc.bus.publish(createEvent("task.submitted", { taskId, producer: "t", data: { spec, submittedVia: "bus" } }));
    await svc.bus.publish(createEvent("run.started", { taskId, attempt: 1, producer: "t", data: { runnerId: "r1", agentKind: "script" } }));
    for (let seq = 1; seq <= 5; seq++) {
      await svc.bus.publishLog({
        taskId,
        attempt: 1,
        seq,
        stream: "stdout",
        phase: "implement",
        text: `line ${seq}\n`,
        at: new Date().toISOString(),
      });
    }
    await svc.bus.publish(createEvent("run.finished", { taskId, attempt: 1, producer: "t", data: { status: "succeeded", durationMs: 1 } }));
    await eventually("finished", async () => ((await getTask(taskId))?.status === "succeeded" ? true : undefined));
    const text = await svc.app.inject({ method: "GET", url: `/v1/tasks/${taskId}/logs`, headers: auth });
    expect(text.body).toBe("line 1\nline 2\nline 3\nline 4\nline 5\n");
    const sse = await svc.app.inject({ method: "GET", url: `/v1/tasks/${taskId}/logs`, headers: { ...auth, accept: "text/event-stream" } });
    expect(sse.headers["content-type"]).toMatch(/text\/event-stream/);
    const ids = [...sse.body.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids).toHaveLength(5);
    expect(sse.body).toMatch(/event: end\ndata: {"status":"succeeded"}/);
    const resumed = await svc.app.inject({
      method: "GET",
      url: `/v1/tasks/${taskId}/logs`,
      headers: { ...auth, accept: "text/event-stream", "last-event-id": String(ids[2]) },
    });
    const texts = [...resumed.body.matchAll(/^data: (\{.*"text".*\})$/gm)].map((m) => JSON.parse(m[1] as string).text);
    expect(texts).toEqual(["line 4\n", "line 5\n"]);
  });

  it("rebuilds projections equal to the live ones", async () => {
    await new Promise((r) => setTimeout(r, 500));
    const liveRows = await svc.db.selectFrom("tasks").select(["task_id", "view"]).orderBy("task_id").execute();
    const replayed = await replayLog(svc.db);
    expect(replayed.size).toBe(liveRows.length);
    for (const row of liveRows) expect(replayed.get(row.task_id)).toEqual(row.view);
    const { tasks } = await rebuildProjections(svc.db);
    expect(tasks).toBe(liveRows.length);
    const rebuilt = await svc.db.selectFrom("tasks").select(["task_id", "view"]).orderBy("task_id").execute();
    expect(rebuilt).toEqual(liveRows);
  });
});

describe("task-registry crash safety", () => {
  it("loses and doubles nothing when killed -9 mid-stream and restarted", async () => {
    const database = await createTestDatabase(inject("databaseUrl"));
    const port = await freePort();
    const ns = testNamespace();
    const procEnv = {
      ...env,
      DATABASE_URL: database.url,
      CODEFLEET_NAMESPACE: ns,
      NATS_STORAGE: "file",
      PORT: String(port),
      HOST: "127.0.0.1",
      INGEST_BATCH_SIZE: "50",
    };
    // The publisher is this test; the registry is a real process we kill.
    const { Bus, connectNats } = await import("@codefleet/platform/bus");
    const nc = await connectNats({ servers: inject("natsUrl"), name: "crash-test" });
    const bus = await Bus.create(nc, { namespace: ns });
    const total = 3000;
    let proc = spawnService("services/task-registry/src/main.ts", procEnv);
    try {
      await waitForHttp(`http://127.0.0.1:${port}/healthz`, 60_000, proc);
      const publishing = (async () => {
        for (let i = 0; i < total; i += 100) {
          await Promise.all(
            Array.from({ length: 100 }, (_, j) =>
              bus.publish(createEvent("task.submitted", { taskId: `crash-${i + j}`, producer: "t", data: { spec, submittedVia: "bus" } })),
            ),
          );
        }
      })();
      const { db } = await import("./store/database.js").then((m) => m.createDatabase({ url: database.url, schema: "registry" }));
      try {
        await waitFor("ingestion under way", async () => (await countEvents(db).catch(() => 0)) > 300, 30_000, 20);
        await proc.kill("SIGKILL");
        await publishing;
        proc = spawnService("services/task-registry/src/main.ts", procEnv);
        await waitFor("every event ingested", async () => (await countEvents(db)) >= total, 60_000, 200);
        await new Promise((r) => setTimeout(r, 1000));
        const info = await bus.jsm.streams.info(bus.topology.streams.events.name);
        expect(info.state.messages).toBe(total);
        expect(await countEvents(db)).toBe(total);
        const distinct = await db
          .selectFrom("events")
          .select((eb) => eb.fn.count<number>("event_id").distinct().as("n"))
          .executeTakeFirstOrThrow();
        expect(Number(distinct.n)).toBe(total);
        const tasks = await db
          .selectFrom("tasks")
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .executeTakeFirstOrThrow();
        expect(Number(tasks.n)).toBe(total);
      } finally {
        await db.destroy();
      }
    } finally {
      await proc.kill("SIGTERM");
      await nc.drain();
      await database.drop();
    }
  }, 180_000);
});

describe("task-registry upgrade to tenancy", () => {
  it("reads a database and events from before tenancy as tenant default, idempotency keys included", async () => {
    const database = await createTestDatabase(inject("databaseUrl"));
    const { db } = createDatabase({ url: database.url, schema: "registry" });
    const taskId = newTaskId();
    const old = createEvent("task.submitted", { taskId, producer: "task-registry", data: { spec, submittedVia: "http" } });
    try {
      // the schema and rows as the version before tenancy wrote them
      await runMigrations(db, "registry", { "2026-11-23T00-00-initial": initialMigration });
      await db
        .insertInto("events")
        .values({
          stream_id: taskId,
          stream_version: 1,
          event_id: old.id,
          type: old.type,
          schema_version: 1,
          attempt: 0,
          data: JSON.stringify(old.data),
          metadata: JSON.stringify(old.metadata),
          occurred_at: old.occurredAt,
          nats_stream: null,
          nats_seq: null,
          anomaly: null,
        })
        .execute();
      const { tenant: _none, ...oldView } = { ...(evolveOld(old) as TaskView) };
      await db
        .insertInto("tasks")
        .values({
          task_id: taskId,
          status: "queued",
          repo_url: spec.repo.url,
          labels: JSON.stringify(spec.labels),
          submitted_at: old.occurredAt,
          finished_at: null,
          version: 1,
          view: JSON.stringify(oldView),
        } as never)
        .execute();
      await db
        .insertInto("idempotency_keys")
        .values({ key: "old-key", task_id: taskId, event_id: old.id, request_hash: canonicalHash(spec) } as never)
        .execute();

      const upgraded = await startRegistry(
        loadRegistryConfig({ ...env, DATABASE_URL: database.url, CODEFLEET_NAMESPACE: testNamespace() }),
      );
      try {
        const res = await upgraded.app.inject({ method: "GET", url: `/v1/tasks/${taskId}`, headers: auth });
        expect(res.statusCode).toBe(200);
        expect(res.json().tenant).toBe("default");
        const replay = await upgraded.app.inject({
          method: "POST",
          url: "/v1/tasks",
          headers: { ...auth, "idempotency-key": "old-key" },
          payload: spec as object,
        });
        expect(replay.headers["idempotent-replayed"]).toBe("true");
        expect(replay.json().id).toBe(taskId);
        const views = await replayLog(upgraded.db);
        expect(views.get(taskId)?.tenant).toBe("default");
      } finally {
        await upgraded.stop();
      }
    } finally {
      await db.destroy();
      await database.drop();
    }
  });
});

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEvent, newTaskId, type TaskSpec, type TaskView } from "@codefleet/contracts";
import { parseTokensFile, sha256Hex } from "@codefleet/contracts/access";
import { createTestDatabase, freePort, REPO_ROOT, spawnService, testNamespace, waitFor } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadArtifactStoreConfig } from "../../services/artifact-store/src/config.js";
import { type ArtifactStore, startArtifactStore } from "../../services/artifact-store/src/service.js";
import { loadRegistryConfig } from "../../services/task-registry/src/config.js";
import { type RegistryService, startRegistry } from "../../services/task-registry/src/service.js";

/**
 * Tenancy through HTTP and NATS: the registry and the artifact-store in-process on real NATS and
 * Postgres, configured from a tokens file of sha256 digests in production mode. Tokens see only
 * their tenant's tasks, logs, events and artifacts (another tenant's is 404), scopes are enforced
 * (403 missing_scope), quotas answer 429, an invalid bus submission is explained (task.rejected).
 */

const T = {
  ops: "ops-admin-token-0123456789", // admin, tenant default
  reader: "reader-token-0123456789", // tasks:read + artifacts:read, default
  other: "other-tenant-token-0123456789", // submit/read/cancel + artifacts:read, tenant other
  submitter: "submit-only-token-0123456789", // tasks:submit, default
  runner: "runner-service-token-0123456789", // artifacts:write, every tenant
  registry: "registry-service-token-0123456", // artifacts:read, every tenant
  auditor: "auditor-token-0123456789", // tasks:read + artifacts:read, every tenant
  small: "small-tenant-token-0123456789", // submit/read/cancel, tenant small (maxRunning 1, maxQueued 2)
  burst: "burst-tenant-token-0123456789", // submit, tenant burst (maxQueued 3)
} as const;
const METRICS_TOKEN = "metrics-token-0123456789";

const entries: [keyof typeof T, string, string[]][] = [
  ["ops", "default", ["admin"]],
  ["reader", "default", ["tasks:read", "artifacts:read"]],
  ["other", "other", ["tasks:submit", "tasks:read", "tasks:cancel", "artifacts:read"]],
  ["submitter", "default", ["tasks:submit"]],
  ["runner", "*", ["artifacts:write"]],
  ["registry", "*", ["artifacts:read"]],
  ["auditor", "*", ["tasks:read", "artifacts:read"]],
  ["small", "small", ["tasks:submit", "tasks:read", "tasks:cancel"]],
  ["burst", "burst", ["tasks:submit"]],
];
const tokensFile = [
  "tokens:",
  ...entries.map(
    ([name, tenant, scopes]) => `  - { name: ${name}-bot, sha256: ${sha256Hex(T[name])}, tenant: "${tenant}", scopes: [${scopes}] }`,
  ),
  "tenants:",
  "  small: { maxRunning: 1, maxQueued: 2 }",
  "  burst: { maxQueued: 3 }",
  "",
].join("\n");

const spec: TaskSpec = {
  repo: { url: "https://git.example.com/acme/app.git", ref: "main" },
  title: "add a greeting",
  prompt: "create HELLO.txt",
  agent: { kind: "script", steps: [{ run: "echo hello > HELLO.txt" }] },
  labels: { team: "platform" },
};

let registry: RegistryService;
let store: ArtifactStore;
let storeUrl: string;
let dir: string;
let env: Record<string, string>;
let dropDb: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase(inject("databaseUrl"));
  dropDb = database.drop;
  dir = mkdtempSync(join(tmpdir(), "cf-tenancy-"));
  writeFileSync(join(dir, "tokens.yaml"), tokensFile);
  env = {
    DATABASE_URL: database.url,
    NATS_URL: inject("natsUrl"),
    CODEFLEET_NAMESPACE: testNamespace(),
    NATS_STORAGE: "memory",
    LOG_LEVEL: "error",
    CODEFLEET_ENV: "production",
    CODEFLEET_TOKENS_FILE: join(dir, "tokens.yaml"),
    METRICS_TOKEN,
  };
  store = await startArtifactStore(loadArtifactStoreConfig({ ...env, ARTIFACT_DATA_DIR: join(dir, "artifacts") }));
  storeUrl = await store.app.listen({ port: 0, host: "127.0.0.1" });
  registry = await startRegistry(
    loadRegistryConfig({
      ...env,
      ARTIFACT_STORE_URL: storeUrl,
      ARTIFACT_STORE_PUBLIC_URL: storeUrl,
      CODEFLEET_API_TOKEN: T.registry,
      QUOTA_RETRY_AFTER_SECONDS: "7",
      CODEFLEET_SECRET_TENANTS: JSON.stringify({ SHARED_TOKEN: ["other", "default"] }),
    }),
  );
});

afterAll(async () => {
  await registry?.stop();
  await store?.stop();
  await dropDb?.();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function api(method: "GET" | "POST", url: string, token: string, opts: { payload?: unknown; headers?: Record<string, string> } = {}) {
  return registry.app.inject({
    method,
    url,
    headers: { ...bearer(token), ...(opts.headers ?? {}) },
    ...(opts.payload === undefined ? {} : { payload: opts.payload as object }),
  });
}

async function storeCall(method: "GET" | "PUT" | "POST", path: string, token: string, body?: string, contentType = "text/plain") {
  return fetch(`${storeUrl}${path}`, {
    method,
    headers: { ...bearer(token), ...(body === undefined ? {} : { "content-type": contentType }) },
    ...(body === undefined ? {} : { body }),
  });
}

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

/** The view as a token of every tenant sees it, once projected (optionally: once it satisfies `ok`). */
async function projected(id: string, ok: (v: TaskView) => boolean = () => true): Promise<TaskView> {
  return eventually(`task ${id}`, async () => {
    const res = await api("GET", `/v1/tasks/${id}`, T.auditor);
    const v = res.statusCode === 200 ? (res.json() as TaskView) : undefined;
    return v && ok(v) ? v : undefined;
  });
}

async function submit(token: string, body: unknown = spec, headers: Record<string, string> = {}) {
  return api("POST", "/v1/tasks", token, { payload: body, headers });
}

const label = () => `b${Math.random().toString(36).slice(2, 10)}`;

describe("tenancy: a token sees only its tenant's tasks", () => {
  it("answers 404 for another tenant's task, its events, logs and artifacts, and filters lists", async () => {
    const batch = label();
    const mine = await submit(T.other, { ...spec, labels: { batch } });
    expect(mine.statusCode).toBe(202);
    expect(mine.json()).toMatchObject({ tenant: "other", submittedBy: "other-bot", status: "queued" });
    const theirs = await submit(T.ops, { ...spec, labels: { batch } });
    const [otherId, opsId] = [mine.json().id as string, theirs.json().id as string];
    await projected(otherId);
    await projected(opsId);

    expect((await api("GET", `/v1/tasks/${otherId}`, T.other)).json()).toMatchObject({ tenant: "other", submittedBy: "other-bot" });
    for (const token of [T.reader, T.ops]) {
      for (const path of ["", "/events", "/logs", "/artifacts"]) {
        const res = await api("GET", `/v1/tasks/${otherId}${path}`, token);
        expect(res.statusCode, `${path} of another tenant's task`).toBe(404);
        expect(res.json().code).toBe("task_not_found");
        expect(res.headers["content-type"]).toMatch(/application\/problem\+json/);
      }
      const sse = await api("GET", `/v1/tasks/${otherId}/logs`, token, { headers: { accept: "text/event-stream" } });
      expect(sse.statusCode).toBe(404);
    }
    // exactly like a task that does not exist
    const none = await api("GET", `/v1/tasks/${newTaskId()}`, T.reader);
    expect(none.json()).toMatchObject({ status: 404, code: "task_not_found" });

    const ids = async (token: string) =>
      ((await api("GET", `/v1/tasks?label=batch=${batch}`, token)).json().items as TaskView[]).map((t) => t.id).sort();
    expect(await ids(T.other)).toEqual([otherId]);
    expect(await ids(T.reader)).toEqual([opsId]);
    expect(await ids(T.auditor)).toEqual([otherId, opsId].sort());

    // another tenant's task cannot be canceled either (not even by the default tenant's admin)
    expect((await api("POST", `/v1/tasks/${otherId}/cancel`, T.ops, { payload: {} })).statusCode).toBe(404);
  });

  it("records who submitted and who canceled, and in which tenant, in the events and the view", async () => {
    const id = (await submit(T.other)).json().id as string;
    await projected(id);
    // POST with content-type: application/json and an empty body: a cancel without a reason
    const cancel = await api("POST", `/v1/tasks/${id}/cancel`, T.other, { payload: "", headers: { "content-type": "application/json" } });
    expect(cancel.statusCode).toBe(202);
    const view = await projected(id, (v) => v.status === "canceled");
    expect(view).toMatchObject({ tenant: "other", submittedBy: "other-bot", cancelRequestedBy: "other-bot" });
    const events = (await api("GET", `/v1/tasks/${id}/events`, T.other)).json().items as { type: string; data: Record<string, unknown> }[];
    expect(events.map((e) => e.type)).toEqual(["task.submitted", "task.cancel_requested"]);
    expect(events[0]?.data).toMatchObject({ submittedVia: "http", submittedBy: "other-bot", tenant: "other" });
    expect(events[1]?.data).toEqual({ requestedBy: "other-bot", tenant: "other", turn: 1 });
    // a token's value is never stored
    const rows = await registry.db.selectFrom("events").select(["data", "metadata"]).where("stream_id", "=", id).execute();
    expect(JSON.stringify(rows)).not.toContain(T.other);
  });

  it("makes a bus submission without a tenant (and every event from before tenancy) tenant default", async () => {
    const taskId = newTaskId();
    await registry.bus.publish(createEvent("task.submitted", { taskId, producer: "dispatcher", data: { spec, submittedVia: "bus" } }));
    const view = await projected(taskId);
    expect(view.tenant).toBe("default");
    expect(view.submittedBy).toBeUndefined();
    expect((await api("GET", `/v1/tasks/${taskId}`, T.reader)).statusCode).toBe(200);
    expect((await api("GET", `/v1/tasks/${taskId}`, T.other)).statusCode).toBe(404);
  });

  it("lists summaries without the spec; a task's own view has it", async () => {
    const batch = label();
    const id = (await submit(T.ops, { ...spec, labels: { batch } })).json().id as string;
    await projected(id);
    const [item] = (await api("GET", `/v1/tasks?label=batch=${batch}`, T.reader)).json().items as TaskView[];
    expect(item?.id).toBe(id);
    expect(item).not.toHaveProperty("spec");
    expect(item).toMatchObject({ title: spec.title, tenant: "default", submittedBy: "ops-bot" });
    expect((await api("GET", `/v1/tasks/${id}`, T.reader)).json().spec).toMatchObject({ prompt: spec.prompt });
  });
});

describe("tenancy: scopes", () => {
  it("answers 401 without a valid token and 403 missing_scope without the scope", async () => {
    expect((await registry.app.inject({ method: "GET", url: "/v1/tasks" })).statusCode).toBe(401);
    expect((await api("GET", "/v1/tasks", "not-a-token-at-all-0123")).statusCode).toBe(401);
    // a token's digest is not the token
    expect((await api("GET", "/v1/tasks", sha256Hex(T.reader))).statusCode).toBe(401);

    const cases: [string, Awaited<ReturnType<typeof api>>, string][] = [
      ["reader submits", await submit(T.reader), "tasks:submit"],
      ["reader cancels", await api("POST", `/v1/tasks/${newTaskId()}/cancel`, T.reader), "tasks:cancel"],
      ["submitter lists", await api("GET", "/v1/tasks", T.submitter), "tasks:read"],
      ["submitter lists artifacts", await api("GET", `/v1/tasks/${newTaskId()}/artifacts`, T.submitter), "tasks:read"],
      ["runner lists", await api("GET", "/v1/tasks", T.runner), "tasks:read"],
    ];
    for (const [what, res, scope] of cases) {
      expect(res.statusCode, what).toBe(403);
      expect(res.headers["content-type"], what).toMatch(/application\/problem\+json/);
      expect(res.json(), what).toMatchObject({ status: 403, code: "missing_scope", scope });
    }
    expect((await submit(T.submitter)).statusCode).toBe(202);
  });

  it("keeps artifact uploads to the runner's service token and retention to admin", async () => {
    const id = (await submit(T.other)).json().id as string;
    // pre-uploading the diff (so that the runner's real upload would conflict) needs artifacts:write
    for (const token of [T.other, T.reader, T.registry]) {
      const res = await storeCall("PUT", `/v1/tasks/${id}/attempts/1/artifacts?name=changes.diff&kind=diff`, token, "evil");
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({ code: "missing_scope", scope: "artifacts:write" });
    }
    const retention = await storeCall("POST", "/v1/retention", T.other, "{}", "application/json");
    expect(retention.status).toBe(403);
    expect(await retention.json()).toMatchObject({ code: "missing_scope", scope: "admin" });
    // an admin may; an empty JSON body is a dry run
    const dry = await storeCall("POST", "/v1/retention", T.ops, "", "application/json");
    expect(dry.status).toBe(200);
    expect(await dry.json()).toMatchObject({ dryRun: true, artifacts: [] });
    expect((await storeCall("GET", `/v1/tasks/${id}/artifacts`, "nope-nope-nope-nope")).status).toBe(401);
  });
});

describe("tenancy: artifacts belong to their task's tenant", () => {
  it("records the tenant from the task's task.submitted and checks it on every read", async () => {
    const id = (await submit(T.other)).json().id as string;
    const up = await storeCall("PUT", `/v1/tasks/${id}/attempts/1/artifacts?name=changes.diff&kind=diff`, T.runner, "+hello\n");
    expect(up.status).toBe(201);
    const artifact = (await up.json()) as { id: string };
    const row = await store.db.selectFrom("artifacts").select("tenant").where("id", "=", artifact.id).executeTakeFirstOrThrow();
    expect(row.tenant).toBe("other");

    expect(((await (await storeCall("GET", `/v1/tasks/${id}/artifacts`, T.other)).json()) as { items: unknown[] }).items).toHaveLength(1);
    const content = await storeCall("GET", `/v1/artifacts/${artifact.id}/content`, T.other);
    expect(await content.text()).toBe("+hello\n");
    for (const path of [`/v1/tasks/${id}/artifacts`, `/v1/artifacts/${artifact.id}`, `/v1/artifacts/${artifact.id}/content`]) {
      const res = await storeCall("GET", path, T.reader);
      expect(res.status, path).toBe(404);
      expect((await res.json()).code, path).toMatch(/^(task|artifact)_not_found$/);
    }
    // a token of the default tenant cannot write for another tenant's task, not even an admin's
    const cross = await storeCall("PUT", `/v1/tasks/${id}/attempts/1/artifacts?name=extra.txt&kind=other`, T.ops, "x");
    expect(cross.status).toBe(404);
    expect(await store.artifacts.listByTask(id)).toHaveLength(1);

    // the registry's list of the task's artifacts, once artifact.stored is ingested
    const listed = await eventually("artifact listed", async () => {
      const r = await api("GET", `/v1/tasks/${id}/artifacts`, T.other);
      return r.json().items?.length === 1 ? r.json().items : undefined;
    });
    expect(listed[0]).toMatchObject({ name: "changes.diff", downloadUrl: `${storeUrl}/v1/artifacts/${artifact.id}/content` });
    expect((await api("GET", `/v1/tasks/${id}/artifacts`, T.reader)).statusCode).toBe(404);

    // the default tenant's own task (a bus submission): its reader may download, the other tenant may not
    const own = newTaskId();
    await registry.bus.publish(createEvent("task.submitted", { taskId: own, producer: "dispatcher", data: { spec, submittedVia: "bus" } }));
    const mineUp = await storeCall("PUT", `/v1/tasks/${own}/attempts/1/artifacts?name=task.log&kind=log`, T.runner, "log\n");
    const mine = (await mineUp.json()) as { id: string };
    expect((await storeCall("GET", `/v1/artifacts/${mine.id}/content`, T.reader)).status).toBe(200);
    expect((await storeCall("GET", `/v1/artifacts/${mine.id}/content`, T.other)).status).toBe(404);
    expect((await storeCall("GET", `/v1/tasks/${own}/artifacts`, T.other)).status).toBe(404);
    // a task of its own without artifacts is an empty list, not a 404
    const empty = (await submit(T.other)).json().id as string;
    expect(await (await storeCall("GET", `/v1/tasks/${empty}/artifacts`, T.other)).json()).toEqual({ items: [] });
  });

  it("serves another tenant's stored log through the registry's own service token", async () => {
    const id = (await submit(T.other)).json().id as string;
    await projected(id);
    const publish = (e: Parameters<typeof registry.bus.publish>[0]) => registry.bus.publish(e);
    await publish(createEvent("run.started", { taskId: id, attempt: 1, producer: "t", data: { runnerId: "r1", agentKind: "script" } }));
    const up = await storeCall("PUT", `/v1/tasks/${id}/attempts/1/artifacts?name=task.log&kind=log`, T.runner, "stored log line\n");
    expect(up.status).toBe(201);
    await publish(createEvent("run.finished", { taskId: id, attempt: 1, producer: "t", data: { status: "succeeded", durationMs: 1 } }));
    await projected(id, (v) => v.status === "succeeded" && v.artifacts.length === 1);
    const res = await api("GET", `/v1/tasks/${id}/logs`, T.other);
    expect(res.statusCode).toBe(200);
    expect(res.headers["x-codefleet-log-source"]).toBe("artifact");
    expect(res.body).toBe("stored log line\n");
  });
});

describe("tenancy: quotas", () => {
  it("answers 429 quota_exceeded with Retry-After over maxQueued, then over maxRunning + maxQueued in flight", async () => {
    const a = await submit(T.small);
    const b = await submit(T.small);
    expect([a.statusCode, b.statusCode]).toEqual([202, 202]);
    const key = `quota-${Math.random()}`;
    const over = await submit(T.small, spec, { "idempotency-key": key });
    expect(over.statusCode).toBe(429);
    expect(over.headers["retry-after"]).toBe("7");
    expect(over.headers["content-type"]).toMatch(/application\/problem\+json/);
    expect(over.json()).toMatchObject({ status: 429, code: "quota_exceeded", tenant: "small", limit: "maxQueued", max: 2 });
    // other tenants are not affected
    expect((await submit(T.other)).statusCode).toBe(202);

    // a queued task ends: room again, and the refused Idempotency-Key was not used up
    await projected(b.json().id);
    expect((await api("POST", `/v1/tasks/${b.json().id}/cancel`, T.small)).statusCode).toBe(202);
    await projected(b.json().id, (v) => v.status === "canceled");
    const retried = await submit(T.small, spec, { "idempotency-key": key });
    expect(retried.statusCode).toBe(202);
    expect(retried.headers["idempotent-replayed"]).toBe("false");

    // both queued tasks start (the runners do not ask the registry): 2 running, 0 queued
    for (const id of [a.json().id, retried.json().id] as string[]) {
      await projected(id);
      await registry.bus.publish(
        createEvent("run.started", { taskId: id, attempt: 1, producer: "t", data: { runnerId: "r", agentKind: "script" } }),
      );
      await projected(id, (v) => v.status === "running");
    }
    // in flight: at most maxRunning (1) + maxQueued (2)
    expect((await submit(T.small)).statusCode).toBe(202);
    const full = await submit(T.small);
    expect(full.statusCode).toBe(429);
    expect(full.json()).toMatchObject({ code: "quota_exceeded", limit: "maxRunning", max: 1 });
  });

  it("admits exactly the quota of concurrent submissions, before any of them is projected", async () => {
    const results = await Promise.all(Array.from({ length: 10 }, () => submit(T.burst)));
    const codes = results.map((r) => r.statusCode).sort();
    expect(codes).toEqual([202, 202, 202, 429, 429, 429, 429, 429, 429, 429]);
  });
});

describe("tenancy: an invalid bus submission is explained", () => {
  it("records task.rejected on the task's subject: GET answers status rejected with the errors", async () => {
    const taskId = newTaskId();
    const bad = {
      ...createEvent("task.submitted", { taskId, producer: "dispatcher", data: { spec, submittedVia: "bus" } }),
    } as { data: Record<string, unknown> };
    bad.data = { ...bad.data, spec: { ...spec, agent: { kind: "telepathy" } } };
    const subject = registry.bus.topology.subjects.event(taskId, "task.submitted");
    const bytes = new TextEncoder().encode(JSON.stringify(bad));
    await registry.bus.js.publish(subject, bytes);
    await registry.bus.js.publish(subject, bytes); // the same message twice: one rejection

    const view = await eventually("rejected", async () => {
      const r = await api("GET", `/v1/tasks/${taskId}`, T.reader);
      return r.statusCode === 200 ? (r.json() as TaskView) : undefined;
    });
    expect(view).toMatchObject({ status: "rejected", tenant: "default", title: spec.title, reasonCode: "invalid_event_data" });
    expect(view.rejection?.errors.length).toBeGreaterThan(0);
    expect(view.rejection?.errors.some((e) => e.path.startsWith("/data/spec/agent"))).toBe(true);
    // on the task's own subject, as a dispatcher watching its task sees it
    const msg = await registry.bus.jsm.streams.getMessage(registry.bus.topology.streams.events.name, {
      last_by_subj: registry.bus.topology.subjects.event(taskId, "task.rejected"),
    });
    expect(msg?.json<{ type: string }>().type).toBe("task.rejected");
    await new Promise((r) => setTimeout(r, 300));
    const events = (await api("GET", `/v1/tasks/${taskId}/events`, T.reader)).json().items as { type: string }[];
    expect(events.map((e) => e.type)).toEqual(["task.rejected"]);
    // checked like any task: another tenant does not see it; it cannot be canceled
    expect((await api("GET", `/v1/tasks/${taskId}`, T.other)).statusCode).toBe(404);
    expect((await api("POST", `/v1/tasks/${taskId}/cancel`, T.ops)).statusCode).toBe(409);

    // an envelope that is not an event at all, on a task's subject
    const junkId = newTaskId();
    await registry.bus.js.publish(registry.bus.topology.subjects.event(junkId, "task.submitted"), new TextEncoder().encode('{"hello":1}'));
    const junk = await projected(junkId);
    expect(junk).toMatchObject({ status: "rejected", reasonCode: "invalid_envelope", title: "(rejected submission)" });
  });

  it("still dead-letters an invalid event that is not a submission", async () => {
    const taskId = newTaskId();
    const subject = registry.bus.topology.subjects.event(taskId, "run.started");
    await registry.bus.js.publish(subject, new TextEncoder().encode(JSON.stringify({ type: "run.started", taskId })));
    await eventually("dead-lettered", async () =>
      (await registry.bus.deadLetters("registry-ingest", 1000)).some((d) => d.subject === subject) ? true : undefined,
    );
    expect((await api("GET", `/v1/tasks/${taskId}`, T.auditor)).statusCode).toBe(404);
  });
});

describe("tenancy: exposure and sizes", () => {
  it("refuses repository URLs with credentials at submission, and never shows those of a bus submission", async () => {
    const secret = "s3cr3t-pw-0123";
    for (const url of [
      `https://user:${secret}@git.example.com/acme/app.git`,
      `https://ghp_${secret}abcdefghijklmnop@git.example.com/a.git`,
    ]) {
      const res = await submit(T.ops, { ...spec, repo: { url } });
      expect(res.statusCode).toBe(422);
      expect(res.json()).toMatchObject({ code: "repo_url_credentials_refused", field: "/repo/url" });
      expect(res.body).not.toContain(secret);
    }
    const taskId = newTaskId();
    const url = `https://x-access-token:${secret}@git.example.com/acme/app.git`;
    await registry.bus.publish(
      createEvent("task.submitted", { taskId, producer: "dispatcher", data: { spec: { ...spec, repo: { url } }, submittedVia: "bus" } }),
    );
    const view = await projected(taskId);
    expect(view.repo.url).toBe("https://git.example.com/acme/app.git");
    const shown = [
      (await api("GET", `/v1/tasks/${taskId}`, T.reader)).body,
      (await api("GET", `/v1/tasks/${taskId}/events`, T.reader)).body,
      (await api("GET", "/v1/tasks?limit=200", T.reader)).body,
    ];
    for (const body of shown) expect(body).not.toContain(secret);
  });

  it("limits request bodies to 1 MB by default", async () => {
    const patch = (n: number) => ({ ...spec, agent: { kind: "script", steps: [{ patch: "x".repeat(n) }] } });
    const res = await submit(T.ops, patch(1100 * 1024));
    expect(res.statusCode).toBe(413);
    expect(res.json().code).toBe("body_too_large");
    expect((await submit(T.ops, patch(900 * 1024))).statusCode).toBe(202);
  });

  it("refuses at submission (422) a secret or model key the tenant may not use", async () => {
    const refused = await submit(T.other, { ...spec, secrets: ["DEFAULT_ONLY"] });
    expect(refused.statusCode).toBe(422);
    expect(refused.json()).toMatchObject({ code: "secret_not_allowed_for_tenant", field: "/secrets" });
    expect(refused.json().detail).toContain("DEFAULT_ONLY");
    // the model key of an agent is a secret the task uses: OPENAI_API_KEY has no entry, so it is default's only
    const key = await submit(T.other, { ...spec, agent: { kind: "opencode", model: "openai/gpt-5-mini" } });
    expect(key.statusCode).toBe(422);
    expect(key.json()).toMatchObject({ code: "secret_not_allowed_for_tenant", field: "/agent/apiKeySecret" });
    expect((await submit(T.other, { ...spec, secrets: ["SHARED_TOKEN"] })).statusCode).toBe(202);
    expect(
      (await submit(T.ops, { ...spec, secrets: ["DEFAULT_ONLY", "SHARED_TOKEN"], agent: { kind: "opencode", model: "openai/gpt-5-mini" } }))
        .statusCode,
    ).toBe(202);
  });

  it("puts /metrics behind METRICS_TOKEN", async () => {
    const reg = await registry.app.inject({ method: "GET", url: "/metrics" });
    expect(reg.statusCode).toBe(401);
    expect(reg.json().code).toBe("unauthorized");
    expect((await registry.app.inject({ method: "GET", url: "/metrics", headers: bearer(T.ops) })).statusCode).toBe(401);
    const ok = await registry.app.inject({ method: "GET", url: "/metrics", headers: bearer(METRICS_TOKEN) });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain("codefleet_registry_events_ingested_total");
    expect((await fetch(`${storeUrl}/metrics`)).status).toBe(401);
    expect((await fetch(`${storeUrl}/metrics`, { headers: bearer(METRICS_TOKEN) })).status).toBe(200);
    // health stays open
    expect((await fetch(`${storeUrl}/healthz`)).status).toBe(200);
  });

  it("refuses the development tokens at start when CODEFLEET_ENV=production", async () => {
    const devFile = join(REPO_ROOT, "deploy/dev-tokens.yaml");
    const base = { DATABASE_URL: "postgres://x", CODEFLEET_ENV: "production" };
    expect(() => loadRegistryConfig({ ...base, CODEFLEET_TOKENS_FILE: devFile })).toThrow(/plaintext 'token' is refused/);
    expect(() => loadArtifactStoreConfig({ ...base, CODEFLEET_TOKENS_FILE: devFile })).toThrow(/plaintext 'token' is refused/);
    expect(() => loadRegistryConfig({ ...base, CODEFLEET_API_TOKENS: "codefleet-dev-token" })).toThrow(/development token/);
    expect(() => loadArtifactStoreConfig({ ...base, CODEFLEET_API_TOKENS: "a-real-token,codefleet-dev-reader" })).toThrow(
      /development token/,
    );
    const hashed = join(dir, "hashed-dev.yaml");
    writeFileSync(hashed, `tokens:\n  - { name: ops, sha256: ${sha256Hex("codefleet-dev-token")}, tenant: default, scopes: [admin] }\n`);
    expect(() => loadRegistryConfig({ ...base, CODEFLEET_TOKENS_FILE: hashed })).toThrow(/'ops' is a development token/);
    expect(() =>
      loadRegistryConfig({ ...base, CODEFLEET_API_TOKENS: "a-real-token-0123", CODEFLEET_API_TOKEN: "codefleet-dev-registry" }),
    ).toThrow(/CODEFLEET_API_TOKEN is a development token/);

    // the process refuses to start, and says why
    const proc = spawnService("services/task-registry/src/main.ts", {
      ...env,
      CODEFLEET_TOKENS_FILE: devFile,
      PORT: String(await freePort()),
      HOST: "127.0.0.1",
    });
    const code = await new Promise<number | null>((resolve) => proc.child.once("exit", (c) => resolve(c)));
    expect(code).toBe(1);
    expect(proc.output()).toMatch(/task-registry failed to start: .*plaintext 'token' is refused when CODEFLEET_ENV=production/);
  }, 60_000);

  it("ships development tokens the compose stack, the tests and the demo rely on", () => {
    const dev = parseTokensFile(readFileSync(join(REPO_ROOT, "deploy/dev-tokens.yaml"), "utf8"), { production: false });
    const byName = Object.fromEntries(dev.tokens.map((t) => [t.name, t]));
    expect(byName["codefleet-dev-token"]).toMatchObject({ tenant: "default", scopes: ["admin"], sha256: sha256Hex("codefleet-dev-token") });
    expect(byName["codefleet-dev-reader"]).toMatchObject({ tenant: "default", scopes: ["tasks:read", "artifacts:read"] });
    expect(byName["codefleet-dev-other"]).toMatchObject({
      tenant: "other",
      scopes: ["tasks:submit", "tasks:read", "tasks:cancel", "artifacts:read"],
    });
    expect(byName["codefleet-dev-runner"]).toMatchObject({ tenant: "*", scopes: ["artifacts:write"] });
    expect(byName["codefleet-dev-registry"]).toMatchObject({ tenant: "*", scopes: ["artifacts:read"] });
    expect(dev.tokens).toHaveLength(5);
  });
});

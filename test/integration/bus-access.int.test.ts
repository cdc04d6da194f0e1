import { createEvent, newTaskId, parseEvent, type TaskSpec, type TaskView } from "@codefleet/contracts";
import { Bus, type BusUser, connectNats, publishAsDispatcher, renderNatsAuthorization, type Subscription } from "@codefleet/platform/bus";
import { createTestDatabase, startNatsWithUsers, testNamespace, waitFor } from "@codefleet/test/support";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadRegistryConfig } from "../../services/task-registry/src/config.js";
import { type RegistryService, startRegistry } from "../../services/task-registry/src/service.js";

/**
 * NATS accounts against a real nats-server (Debian's 2.9 in CI) configured with the authorization
 * block the project renders for deployments: anonymous connections are refused, each service
 * publishes only what it produces, a dispatcher submits and cancels for its own tenant only (the
 * tenant comes from its subject), only operators change streams. The registry runs in-process as
 * its own NATS user; the runner's user consumes the run queue.
 */

const ns = testNamespace();
const pw = (user: string) => `pw-${user}-0123456789`;
const users: BusUser[] = [
  { user: "operator", role: "operator", password: "$CF_PW_OPERATOR" },
  { user: "task-registry", role: "task-registry", password: "$CF_PW_REGISTRY" },
  { user: "runner", role: "runner", password: "$CF_PW_RUNNER" },
  { user: "repo-pool", role: "repo-pool", password: "$CF_PW_REPO_POOL" },
  { user: "ci-acme", role: "dispatcher", tenant: "acme", password: "$CF_PW_ACME" },
  { user: "ci-globex", role: "dispatcher", tenant: "globex", password: "$CF_PW_GLOBEX" },
  { user: "ci-tiny", role: "dispatcher", tenant: "tiny", password: "$CF_PW_TINY" },
];
const passwords = Object.fromEntries(users.map((u) => [u.password.slice(1), pw(u.user)]));

const spec: TaskSpec = {
  repo: { url: "https://git.example.com/acme/app.git", ref: "main" },
  title: "add a greeting",
  prompt: "create HELLO.txt",
  agent: { kind: "script", steps: [{ run: "echo hello > HELLO.txt" }] },
};

let server: Awaited<ReturnType<typeof startNatsWithUsers>>;
let registry: RegistryService;
let dropDb: () => Promise<void>;
const connections: NatsConnection[] = [];

async function connectAs(user: string): Promise<NatsConnection> {
  const nc = await connectNats({ servers: server.url, name: `test-${user}`, user, pass: pw(user), connectTimeoutMs: 5000 });
  connections.push(nc);
  return nc;
}

beforeAll(async () => {
  server = await startNatsWithUsers({ authorization: renderNatsAuthorization(ns, users), passwords });
  const database = await createTestDatabase(inject("databaseUrl"));
  dropDb = database.drop;
  registry = await startRegistry(
    loadRegistryConfig({
      DATABASE_URL: database.url,
      NATS_URL: server.url,
      NATS_USER: "task-registry",
      NATS_PASSWORD: pw("task-registry"),
      CODEFLEET_NAMESPACE: ns,
      NATS_STORAGE: "memory",
      LOG_LEVEL: "error",
      CODEFLEET_API_TOKENS: "bus-access-admin-token-0123456789",
      CODEFLEET_TENANT_MAX_QUEUED: "0",
      CODEFLEET_TOKENS_FILE: "",
    }),
  );
}, 60_000);

afterAll(async () => {
  await Promise.allSettled(connections.map((c) => c.close()));
  await registry?.stop();
  await dropDb?.();
  await server?.stop();
});

async function view(taskId: string, ok: (v: TaskView) => boolean = () => true): Promise<TaskView> {
  let found: TaskView | undefined;
  await waitFor(
    `task ${taskId}`,
    async () => {
      const r = await registry.app.inject({
        method: "GET",
        url: `/v1/tasks/${taskId}`,
        headers: { authorization: "Bearer bus-access-admin-token-0123456789" },
      });
      // the admin token is of tenant default: other tenants' tasks are read from the event store
      if (r.statusCode === 200) found = r.json() as TaskView;
      else {
        const row = await registry.db.selectFrom("tasks").select("view").where("task_id", "=", taskId).executeTakeFirst();
        found = row?.view;
      }
      return found !== undefined && ok(found);
    },
    15_000,
    50,
  );
  return found as TaskView;
}

const submitted = (taskId: string, s: TaskSpec = spec, extra: Record<string, unknown> = {}) =>
  createEvent("task.submitted", { taskId, producer: "dispatcher", data: { spec: s, submittedVia: "bus", ...extra } });

describe("NATS accounts", () => {
  it("refuses a connection without credentials, or with a wrong password", async () => {
    await expect(connectNats({ servers: server.url, name: "anonymous", connectTimeoutMs: 1500 })).rejects.toThrow(/could not connect/);
    await expect(
      connectNats({ servers: server.url, name: "wrong", user: "runner", pass: "not-the-password", connectTimeoutMs: 1500 }),
    ).rejects.toThrow(/could not connect/);
  });

  it("admits a dispatcher's submission for its own tenant: tenant and submitter come from its NATS user", async () => {
    const acme = await connectAs("ci-acme");
    const taskId = newTaskId();
    await publishAsDispatcher(acme, { namespace: ns, tenant: "acme", dispatcher: "ci-acme" }, submitted(taskId));
    const v = await view(taskId);
    expect(v).toMatchObject({ status: "queued", tenant: "acme", submittedBy: "ci-acme", submittedVia: "bus" });
    // admitted tasks wait on their tenant's run queue
    const q = await registry.bus.jsm.streams.info(registry.bus.topology.streams.queue.name, {
      subjects_filter: registry.bus.topology.subjects.queue("acme"),
    });
    expect(q.state.subjects?.[registry.bus.topology.subjects.queue("acme")]).toBeGreaterThanOrEqual(1);
  });

  it("does not let a dispatcher publish for another tenant, or straight onto the event log", async () => {
    const acme = await connectAs("ci-acme");
    const taskId = newTaskId();
    await expect(publishAsDispatcher(acme, { namespace: ns, tenant: "globex", dispatcher: "ci-acme" }, submitted(taskId))).rejects.toThrow(
      /permission/i,
    );
    await expect(publishAsDispatcher(acme, { namespace: ns, tenant: "acme", dispatcher: "ci-globex" }, submitted(taskId))).rejects.toThrow(
      /permission/i,
    );
    const bus = await Bus.create(acme, { namespace: ns }).catch((err: unknown) => err);
    // no JetStream API beyond publishing on its ingress: it cannot even build a manager
    expect(bus).toBeInstanceOf(Error);
    const { jetstream } = await import("@nats-io/jetstream");
    await expect(
      jetstream(acme).publish(registry.bus.topology.subjects.event(taskId, "task.submitted"), JSON.stringify(submitted(taskId)), {
        timeout: 2000,
      }),
    ).rejects.toThrow(/permission/i);
    await new Promise((r) => setTimeout(r, 300));
    expect(await registry.db.selectFrom("events").select("event_id").where("stream_id", "=", taskId).execute()).toEqual([]);
  });

  it("refuses a payload naming another tenant, and explains an invalid submission (task.rejected)", async () => {
    const acme = await connectAs("ci-acme");
    const forged = newTaskId();
    await publishAsDispatcher(
      acme,
      { namespace: ns, tenant: "acme", dispatcher: "ci-acme" },
      submitted(forged, spec, { tenant: "globex" }),
    );
    expect(await view(forged)).toMatchObject({ status: "rejected", tenant: "acme", reasonCode: "tenant_mismatch", submittedBy: "ci-acme" });

    const invalid = newTaskId();
    const bad = { ...submitted(invalid), data: { spec: { ...spec, agent: { kind: "telepathy" } }, submittedVia: "bus" } };
    await publishAsDispatcher(acme, { namespace: ns, tenant: "acme", dispatcher: "ci-acme" }, bad as ReturnType<typeof submitted>);
    const v = await view(invalid);
    expect(v).toMatchObject({ status: "rejected", tenant: "acme", reasonCode: "invalid_event_data" });
    expect(v.rejection?.errors.some((e) => e.path.startsWith("/data/spec/agent"))).toBe(true);

    // the same policy as over HTTP: a repository URL with credentials is refused, its secret shown nowhere
    const creds = newTaskId();
    await publishAsDispatcher(
      acme,
      { namespace: ns, tenant: "acme", dispatcher: "ci-acme" },
      submitted(creds, { ...spec, repo: { url: "https://user:hunter2-secret@git.example.com/a.git", ref: "main" } }),
    );
    const refused = await view(creds);
    expect(refused).toMatchObject({ status: "rejected", reasonCode: "repo_url_credentials_refused" });
    expect(JSON.stringify(refused)).not.toContain("hunter2-secret");
  });

  it("does not let a dispatcher write into another tenant's task by reusing its id", async () => {
    const acme = await connectAs("ci-acme");
    const globex = await connectAs("ci-globex");
    const taskId = newTaskId();
    await publishAsDispatcher(acme, { namespace: ns, tenant: "acme", dispatcher: "ci-acme" }, submitted(taskId));
    await view(taskId);
    await publishAsDispatcher(globex, { namespace: ns, tenant: "globex", dispatcher: "ci-globex" }, submitted(taskId));
    await publishAsDispatcher(
      globex,
      { namespace: ns, tenant: "globex", dispatcher: "ci-globex" },
      createEvent("task.cancel_requested", { taskId, producer: "dispatcher", data: {} }),
    );
    await waitFor(
      "dead letters",
      async () =>
        (await registry.bus.deadLetters("registry-admission", 1000)).filter(
          (d) => d.code === "task_id_taken" || d.code === "task_not_found",
        ).length >= 2,
      15_000,
      100,
    );
    const events = await registry.db.selectFrom("events").select(["type", "data"]).where("stream_id", "=", taskId).execute();
    expect(events.map((e) => e.type)).toEqual(["task.submitted"]);
    expect((await view(taskId)).cancelRequested).toBeFalsy();

    // its own dispatcher may cancel it
    await publishAsDispatcher(
      acme,
      { namespace: ns, tenant: "acme", dispatcher: "ci-acme" },
      createEvent("task.cancel_requested", { taskId, producer: "dispatcher", data: { reason: "not needed" } }),
    );
    expect(await view(taskId, (v) => v.cancelRequested === true)).toMatchObject({ cancelRequestedBy: "ci-acme", tenant: "acme" });
  });

  it("counts bus submissions against the tenant's quota", async () => {
    await registry.stop();
    const database = await createTestDatabase(inject("databaseUrl"));
    const tokens = `tokens: []\ntenants:\n  tiny: { maxQueued: 1 }\n`;
    const { writeFileSync, mkdtempSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "cf-bus-quota-"));
    writeFileSync(join(dir, "tokens.yaml"), tokens);
    registry = await startRegistry(
      loadRegistryConfig({
        DATABASE_URL: database.url,
        NATS_URL: server.url,
        NATS_USER: "task-registry",
        NATS_PASSWORD: pw("task-registry"),
        CODEFLEET_NAMESPACE: ns,
        NATS_STORAGE: "memory",
        LOG_LEVEL: "error",
        CODEFLEET_API_TOKENS: "bus-access-admin-token-0123456789",
        CODEFLEET_TOKENS_FILE: join(dir, "tokens.yaml"),
      }),
    );
    const tiny = await connectAs("ci-tiny");
    const first = newTaskId();
    const second = newTaskId();
    await publishAsDispatcher(tiny, { namespace: ns, tenant: "tiny", dispatcher: "ci-tiny" }, submitted(first));
    await view(first);
    await publishAsDispatcher(tiny, { namespace: ns, tenant: "tiny", dispatcher: "ci-tiny" }, submitted(second));
    expect(await view(second)).toMatchObject({ status: "rejected", reasonCode: "quota_exceeded", tenant: "tiny" });
    const old = dropDb;
    dropDb = async () => {
      await old();
      await database.drop();
    };
  });

  it("lets each service publish only what it produces; only operators change or delete streams", async () => {
    const runner = await connectAs("runner");
    const runnerBus = await Bus.create(runner, { namespace: ns });
    const taskId = newTaskId();
    await expect(runnerBus.publish(submitted(taskId))).rejects.toThrow(/permission/i);
    await expect(runnerBus.publish(createEvent("task.cancel_requested", { taskId, producer: "runner", data: {} }))).rejects.toThrow(
      /permission/i,
    );
    await expect(runnerBus.js.publish(runnerBus.topology.subjects.event(taskId, "slot.released"), "{}", { timeout: 2000 })).rejects.toThrow(
      /permission/i,
    );
    // what it does produce
    await expect(
      runnerBus.publish(
        createEvent("run.started", { taskId, attempt: 1, producer: "runner", data: { runnerId: "r1", agentKind: "script" } }),
      ),
    ).resolves.toMatchObject({ duplicate: false });
    // slot affinity: it hears the other runners' heartbeats and which tasks have started
    const heard: unknown[] = [];
    const started: string[] = [];
    const listeners = [
      runnerBus.listen(runnerBus.topology.subjects.allRunnerStatus, (v) => heard.push(v)),
      runnerBus.watchEvents("run.started", (e) => started.push(e.taskId)),
    ];
    await runner.flush();
    runnerBus.announce(runnerBus.topology.subjects.runnerStatus("r2"), { runnerId: "r2" });
    const other = newTaskId();
    await runnerBus.publish(
      createEvent("run.started", { taskId: other, attempt: 1, producer: "runner", data: { runnerId: "r2", agentKind: "script" } }),
    );
    await waitFor("a heartbeat and a run.started heard", async () => heard.length === 1 && started.includes(other), 5000, 50);
    for (const l of listeners) l.unsubscribe();
    // a runner cannot take dispatchers' submissions off the ingress before the registry admits them
    await expect(
      runnerBus.js.consumers.get(runnerBus.topology.streams.ingress.name, "registry-admission").then((c) => c.next({ expires: 1000 })),
    ).rejects.toThrow(/permission|timeout/i);
    await expect(runnerBus.jsm.streams.delete(runnerBus.topology.streams.events.name)).rejects.toThrow(/permission/i);
    await expect(runnerBus.jsm.streams.purge(runnerBus.topology.streams.queue.name)).rejects.toThrow(/permission/i);
    await expect(registry.bus.jsm.streams.delete(registry.bus.topology.streams.events.name)).rejects.toThrow(/permission/i);

    const repoPool = await connectAs("repo-pool");
    const poolBus = await Bus.create(repoPool, { namespace: ns });
    await expect(poolBus.js.publish(poolBus.topology.subjects.event(taskId, "run.finished"), "{}", { timeout: 2000 })).rejects.toThrow(
      /permission/i,
    );
    await expect(poolBus.js.publish(poolBus.topology.subjects.queue("acme"), "{}", { timeout: 2000 })).rejects.toThrow(/permission/i);

    // the operator may (here on a scratch stream, to leave the platform's alone)
    const operator = await connectAs("operator");
    const opBus = await Bus.create(operator, { namespace: ns });
    await opBus.jsm.streams.add({ name: `${ns.toUpperCase().replace(/-/g, "_")}_SCRATCH`, subjects: [`${ns}.scratch.>`] });
    await expect(opBus.jsm.streams.delete(`${ns.toUpperCase().replace(/-/g, "_")}_SCRATCH`)).resolves.toBe(true);
  });

  it("leaves a stream whose settings differ to the operator: a service warns and goes on", async () => {
    const operator = await connectAs("operator");
    const opBus = await Bus.create(operator, { namespace: ns, storage: "memory" });
    const name = opBus.topology.streams.deadLetters.name;
    const { config } = await opBus.jsm.streams.info(name);
    await opBus.jsm.streams.update(name, { ...config, max_age: config.max_age + 1_000_000_000 });
    // the registry's user may not update streams: the server's permissions violation is recognised
    await expect(registry.bus.ensureStreams()).resolves.toBeUndefined();
    expect((await opBus.jsm.streams.info(name)).config.max_age).toBe(config.max_age + 1_000_000_000);
    await opBus.ensureStreams();
    expect((await opBus.jsm.streams.info(name)).config.max_age).toBe(config.max_age);
  });

  it("lets the runner's user take admitted tasks off its tenants' queues, the tenants taking turns", async () => {
    const acme = await connectAs("ci-acme");
    const globex = await connectAs("ci-globex");
    const acmeIds: string[] = [];
    for (let i = 0; i < 8; i++) {
      const id = newTaskId();
      acmeIds.push(id);
      await publishAsDispatcher(acme, { namespace: ns, tenant: "acme", dispatcher: "ci-acme" }, submitted(id));
    }
    await view(acmeIds.at(-1) as string);
    const globexIds: string[] = [];
    for (let i = 0; i < 2; i++) {
      const id = newTaskId();
      globexIds.push(id);
      await publishAsDispatcher(globex, { namespace: ns, tenant: "globex", dispatcher: "ci-globex" }, submitted(id));
    }
    await view(globexIds.at(-1) as string);

    const runner = await connectAs("runner");
    const runnerBus = await Bus.create(runner, { namespace: ns });
    const t = runnerBus.topology;
    const order: string[] = [];
    const wanted = new Set([...acmeIds, ...globexIds]);
    let sub: Subscription | undefined;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`took ${order.length} of ${wanted.size}`)), 20_000);
      void runnerBus
        .consumeLanes({
          stream: t.streams.queue.name,
          lanesSubject: t.subjects.allQueues,
          laneOf: (s) => t.subjects.queueTenant(s),
          lane: (tenant) => t.consumers.runnerQueue(tenant),
          decode: (d) => parseEvent(d),
          concurrency: 1,
          refreshMs: 500,
          handle: async (e) => {
            if (!wanted.has(e.taskId)) return; // earlier tests' tasks
            order.push(e.taskId);
            if (order.length === wanted.size) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .then((s) => {
          sub = s;
        }, reject);
    });
    await sub?.stop();
    // globex's two tasks, queued after acme's eight, start among the first four
    const globexPositions = globexIds.map((id) => order.indexOf(id));
    expect(Math.max(...globexPositions)).toBeLessThan(4);
    expect(new Set(order)).toEqual(wanted);
  });
});

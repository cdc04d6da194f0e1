import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FleetView } from "@codefleet/contracts";
import { createEvent, repoPoolService, type TaskSpec, type TaskView } from "@codefleet/contracts";
import { sha256Hex } from "@codefleet/contracts/access";
import { createTestDatabase, testNamespace, waitFor } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadRegistryConfig } from "../config.js";
import { type RegistryService, startRegistry } from "../service.js";

/**
 * `GET /v1/fleet` on real NATS and Postgres: the numbers come from the projections and the bus,
 * task numbers are the token's tenant's, and a token of every tenant sees them all.
 */

const T = {
  a: "fleet-a-token-0123456789",
  b: "fleet-b-token-0123456789",
  all: "fleet-all-token-0123456789",
  none: "fleet-none-0123456789",
};
let registry: RegistryService;
let dir: string;
let dropDb: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase(inject("databaseUrl"));
  dropDb = database.drop;
  dir = mkdtempSync(join(tmpdir(), "cf-fleet-"));
  writeFileSync(
    join(dir, "tokens.yaml"),
    [
      "tokens:",
      `  - { name: a, sha256: ${sha256Hex(T.a)}, tenant: team-a, scopes: [tasks:submit, tasks:read, tasks:cancel, artifacts:read] }`,
      `  - { name: b, sha256: ${sha256Hex(T.b)}, tenant: team-b, scopes: [tasks:submit, tasks:read, artifacts:read] }`,
      `  - { name: all, sha256: ${sha256Hex(T.all)}, tenant: "*", scopes: [tasks:read] }`,
      `  - { name: none, sha256: ${sha256Hex(T.none)}, tenant: team-a, scopes: [tasks:submit] }`,
      "tenants:",
      "  team-a: { maxRunning: 3 }",
      "",
    ].join("\n"),
  );
  registry = await startRegistry(
    loadRegistryConfig({
      DATABASE_URL: database.url,
      NATS_URL: inject("natsUrl"),
      CODEFLEET_NAMESPACE: testNamespace(),
      NATS_STORAGE: "memory",
      LOG_LEVEL: "error",
      CODEFLEET_TOKENS_FILE: join(dir, "tokens.yaml"),
      DASHBOARD_DIR: "off",
    }),
  );
});

afterAll(async () => {
  await registry?.stop();
  await dropDb?.();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const spec: TaskSpec = {
  repo: { url: "https://git.example.com/acme/app.git", ref: "main" },
  title: "fleet",
  prompt: "p",
  agent: { kind: "script", steps: [{ run: "true" }] },
};

async function call<T>(method: "GET" | "POST", url: string, token: string, payload?: object): Promise<{ status: number; body: T }> {
  const res = await registry.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: res.json() as T };
}

async function view(id: string, token: string, ok: (v: TaskView) => boolean): Promise<TaskView> {
  let v: TaskView | undefined;
  await waitFor(
    `task ${id}`,
    async () => {
      const r = await call<TaskView>("GET", `/v1/tasks/${id}`, token);
      v = r.status === 200 ? r.body : undefined;
      return v !== undefined && ok(v);
    },
    15_000,
    50,
  );
  return v!;
}

const fleet = async (token: string) => {
  const r = await call<FleetView>("GET", "/v1/fleet", token);
  expect(r.status).toBe(200);
  return r.body;
};

describe("GET /v1/fleet", () => {
  it("counts the tenant's tasks, runners, allocations, queue and throughput, and only the tenant's", async () => {
    const submit = async (token: string) => (await call<TaskView>("POST", "/v1/tasks", token, spec)).body.id;
    const [a1, a2, a3, b1] = [await submit(T.a), await submit(T.a), await submit(T.a), await submit(T.b)];
    for (const [id, token] of [
      [a1, T.a],
      [a2, T.a],
      [a3, T.a],
      [b1, T.b],
    ] as const)
      await view(id!, token, () => true);

    // a runner takes a1 (warm slot) and b1; a2 is canceled while queued (it finishes now)
    const bus = registry.bus;
    const ev = (taskId: string, type: Parameters<typeof createEvent>[0], data: unknown) =>
      bus.publish(createEvent(type, { taskId, producer: "runner", attempt: 1, data: data as never }));
    await ev(a1!, "run.started", { runnerId: "runner-1", agentKind: "script" });
    await ev(a1!, "slot.allocated", {
      slotId: "slot_01",
      repoUrl: spec.repo.url,
      ref: "main",
      leaseExpiresAt: new Date(Date.now() + 60_000).toISOString(),
      warm: true,
    });
    await ev(b1!, "run.started", { runnerId: "runner-1", agentKind: "script" });
    await ev(b1!, "slot.allocated", {
      slotId: "slot_02",
      repoUrl: spec.repo.url,
      ref: "main",
      leaseExpiresAt: new Date(Date.now() + 60_000).toISOString(),
      warm: false,
    });
    expect((await call("POST", `/v1/tasks/${a2}/cancel`, T.a)).status).toBe(202);
    await view(a1!, T.a, (v) => v.status === "running");
    await view(a2!, T.a, (v) => v.status === "canceled");
    await view(b1!, T.b, (v) => v.status === "running");
    // one more message on team-a's lane of the runners' queue (whether admission has put the
    // submissions there already or not): counted in team-a's lane only
    const [aBefore, bBefore] = [(await fleet(T.a)).workQueue, (await fleet(T.b)).workQueue];
    await bus.js.publish(bus.topology.subjects.queue("team-a"), JSON.stringify({ taskId: a3 }));

    const a = await fleet(T.a);
    expect(a).toMatchObject({ tenant: "team-a", tasks: { queued: 1, running: 1 }, maxRunning: 3, allocations: { total: 1, warm: 1 } });
    expect(a.runners.filter((r) => r.runnerId === "runner-1")).toEqual([
      { runnerId: "runner-1", running: 1, lastStartedAt: expect.any(String) },
    ]);
    expect(a.workQueue).toEqual({ pending: (aBefore?.pending ?? 0) + 1, inProgress: 0, lanes: 1 });
    expect(a.warmPool).toBeNull(); // no repo-pool on this bus
    expect(a.throughput.buckets).toHaveLength(60);
    const sum = (f: FleetView, k: "submitted" | "canceled") =>
      f.throughput.buckets.reduce((s, b) => s + (k === "submitted" ? b.submitted : (b.finished.canceled ?? 0)), 0);
    expect(sum(a, "submitted")).toBe(3);
    expect(sum(a, "canceled")).toBe(1);
    expect(a.throughput.buckets.at(-1)!.submitted + a.throughput.buckets.at(-2)!.submitted).toBe(3); // just now

    const b = await fleet(T.b);
    expect(b).toMatchObject({ tenant: "team-b", tasks: { queued: 0, running: 1 }, maxRunning: 0, allocations: { total: 1, warm: 0 } });
    expect(b.workQueue).toEqual(bBefore);
    expect(sum(b, "submitted")).toBe(1);
    expect(sum(b, "canceled")).toBe(0);

    const all = await fleet(T.all);
    expect(all).toMatchObject({ tenant: "*", tasks: { queued: 1, running: 2 }, maxRunning: null, allocations: { total: 2, warm: 1 } });
    expect(all.runners.filter((r) => r.runnerId === "runner-1")).toEqual([
      { runnerId: "runner-1", running: 2, lastStartedAt: expect.any(String) },
    ]);
    expect(sum(all, "submitted")).toBe(4);
    expect(all.workQueue?.pending).toBe((a.workQueue?.pending ?? 0) + (b.workQueue?.pending ?? 0));
  });

  it("shows live runners' capacity, attempts and warm containers from their heartbeats, and forgets a stopped one", async () => {
    const bus = registry.bus;
    const status = (runnerId: string, extra: Record<string, unknown> = {}) =>
      bus.nc.publish(
        bus.topology.subjects.runnerStatus(runnerId),
        JSON.stringify({
          runnerId,
          concurrency: 4,
          active: 1,
          warm: { ready: 2, filling: 0 },
          intervalMs: 5000,
          sentAt: new Date().toISOString(),
          ...extra,
        }),
      );
    status("runner-live-1");
    status("runner-live-2", { concurrency: 6, active: 3, warm: { ready: 0, filling: 1 } });
    bus.nc.publish(bus.topology.subjects.runnerStatus("runner-bogus"), JSON.stringify({ runnerId: "runner-bogus", concurrency: "lots" }));
    await bus.nc.flush();
    let f = await fleet(T.a);
    for (let i = 0; i < 50 && (f.capacity?.concurrency ?? 0) < 10; i++) {
      await new Promise((r) => setTimeout(r, 50));
      f = await fleet(T.a);
    }
    expect(f.capacity).toEqual({ concurrency: 10, active: 4, warmReady: 2 });
    expect(f.runners.find((r) => r.runnerId === "runner-live-2")).toMatchObject({
      concurrency: 6,
      active: 3,
      warm: { ready: 0, filling: 1 },
      lastSeenAt: expect.any(String),
    });
    expect(f.runners.some((r) => r.runnerId === "runner-bogus")).toBe(false);

    status("runner-live-2", { stopping: true });
    await bus.nc.flush();
    for (let i = 0; i < 50 && (f.capacity?.concurrency ?? 0) !== 4; i++) {
      await new Promise((r) => setTimeout(r, 50));
      f = await fleet(T.a);
    }
    expect(f.capacity).toEqual({ concurrency: 4, active: 1, warmReady: 2 });
  });

  it("sees every named runner host's repo-pool (learnt from its runners' heartbeats), and sums them", async () => {
    const bus = registry.bus;
    const pool = (total: number, leased: number) => ({
      slots: { total, warm: total - leased, leased, creating: 0, reserved: 0 },
      mirrors: 1,
      limits: { maxSlots: 8, maxSlotsPerRepo: 4 },
    });
    const listeners = [
      bus.serveRpc(repoPoolService("host-a"), "status", async () => pool(3, 1)),
      bus.serveRpc(repoPoolService("host-b"), "status", async () => pool(5, 2)),
    ];
    try {
      const status = (runnerId: string, host: string) =>
        bus.nc.publish(
          bus.topology.subjects.runnerStatus(runnerId),
          JSON.stringify({
            runnerId,
            concurrency: 2,
            active: 0,
            warm: { ready: 0, filling: 0 },
            intervalMs: 5000,
            sentAt: new Date().toISOString(),
            host,
          }),
        );
      status("runner-host-a", "host-a");
      status("runner-host-b", "host-b");
      status("runner-host-c", "host-c"); // its repo-pool does not answer
      await bus.nc.flush();
      let f = await fleet(T.a);
      for (let i = 0; i < 50 && f.hosts.length < 3; i++) {
        await new Promise((r) => setTimeout(r, 50));
        f = await fleet(T.a);
      }
      expect(f.hosts).toEqual([
        { host: "host-a", pool: pool(3, 1), runners: ["runner-host-a"] },
        { host: "host-b", pool: pool(5, 2), runners: ["runner-host-b"] },
        { host: "host-c", pool: null, runners: ["runner-host-c"] },
      ]);
      expect(f.warmPool?.slots).toMatchObject({ total: 8, leased: 3 });
      expect(f.warmPool?.limits.maxSlots).toBe(16);
    } finally {
      for (const l of listeners) l.unsubscribe();
    }
  });

  it("needs tasks:read", async () => {
    expect((await call("GET", "/v1/fleet", T.none)).status).toBe(403);
    expect((await registry.app.inject({ method: "GET", url: "/v1/fleet" })).statusCode).toBe(401);
  });

  it("serves an artifact's text only for the task's tenant and only when it is the task's", async () => {
    const id = (await call<TaskView>("POST", "/v1/tasks", T.a, spec)).body.id;
    await view(id, T.a, () => true);
    // no artifact-store is configured here, and the artifact is not the task's: 404 before anything else
    const r = await call<{ code: string }>("GET", `/v1/tasks/${id}/artifacts/art_nope/text`, T.a);
    expect(r).toMatchObject({ status: 404, body: { code: "artifact_not_found" } });
    const other = await call<{ code: string }>("GET", `/v1/tasks/${id}/artifacts/art_nope/text`, T.b);
    expect(other).toMatchObject({ status: 404, body: { code: "task_not_found" } }); // another tenant's task
    expect((await call<{ code: string }>("GET", `/v1/tasks/${id}/artifacts/art_nope/text`, T.all)).status).toBe(403); // no artifacts:read
  });
});

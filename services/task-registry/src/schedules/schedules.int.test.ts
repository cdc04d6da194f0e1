import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TaskSpec } from "@codefleet/contracts";
import { sha256Hex } from "@codefleet/contracts/access";
import { createTestDatabase, testNamespace, waitFor } from "@codefleet/test/support";
import { sql } from "kysely";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { loadRegistryConfig } from "../config.js";
import { type RegistryService, startRegistry } from "../service.js";
import type { ScheduleView } from "./schedule-state.js";

/**
 * Schedules end to end on real NATS and Postgres, the registry in-process: a seconds cron fires
 * one task per second, with two registries at once and across a stop/start of the leader (no
 * double submissions); the acceptance's `* * * * *` under a moved clock; pause/resume; quotas
 * recorded per firing; tenants isolated.
 */

const T = { a: "team-a-token-0123456789", b: "team-b-token-0123456789", readerA: "reader-a-token-0123456789", q: "quota-token-0123456789" };
const tokensFile = [
  "tokens:",
  `  - { name: a-bot, sha256: ${sha256Hex(T.a)}, tenant: team-a, scopes: [tasks:submit, tasks:read, tasks:cancel] }`,
  `  - { name: b-bot, sha256: ${sha256Hex(T.b)}, tenant: team-b, scopes: [tasks:submit, tasks:read] }`,
  `  - { name: reader-a, sha256: ${sha256Hex(T.readerA)}, tenant: team-a, scopes: [tasks:read] }`,
  `  - { name: q-bot, sha256: ${sha256Hex(T.q)}, tenant: team-q, scopes: [tasks:submit, tasks:read] }`,
  "tenants:",
  "  team-q: { maxQueued: 1 }",
  "",
].join("\n");

const task: TaskSpec = {
  repo: { url: "https://git.example.com/acme/app.git", ref: "main" },
  title: "scheduled chore",
  prompt: "do the chore",
  agent: { kind: "script", steps: [{ run: "true" }] },
  labels: { team: "platform" },
};

let env: Record<string, string>;
let dir: string;
let dropDb: () => Promise<void>;
const running = new Set<RegistryService>();
/** The registries' clock: real time plus an offset the minute-level test moves. */
let offsetMs = 0;
const clock = () => new Date(Date.now() + offsetMs);

async function start(): Promise<RegistryService> {
  const r = await startRegistry(loadRegistryConfig(env), { now: clock });
  running.add(r);
  return r;
}
async function stop(r: RegistryService): Promise<void> {
  await r.stop();
  running.delete(r);
}

beforeAll(async () => {
  const database = await createTestDatabase(inject("databaseUrl"));
  dropDb = database.drop;
  dir = mkdtempSync(join(tmpdir(), "cf-schedules-"));
  writeFileSync(join(dir, "tokens.yaml"), tokensFile);
  env = {
    DATABASE_URL: database.url,
    NATS_URL: inject("natsUrl"),
    CODEFLEET_NAMESPACE: testNamespace(),
    NATS_STORAGE: "memory",
    LOG_LEVEL: "error",
    CODEFLEET_TOKENS_FILE: join(dir, "tokens.yaml"),
    SCHEDULER_TICK_MS: "100",
    SCHEDULER_LEASE_MS: "1500",
  };
});

afterEach(async () => {
  for (const r of [...running]) await stop(r);
  offsetMs = 0;
});

afterAll(async () => {
  await dropDb?.();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
function call(r: RegistryService, method: "GET" | "POST" | "PATCH" | "DELETE", url: string, token: string, payload?: unknown) {
  return r.app.inject({ method, url, headers: bearer(token), ...(payload === undefined ? {} : { payload: payload as object }) });
}

async function create(r: RegistryService, cron: string, token = T.a, extra: Record<string, unknown> = {}): Promise<ScheduleView> {
  const res = await call(r, "POST", "/v1/schedules", token, { cron, task, ...extra });
  expect(res.statusCode, res.body).toBe(201);
  const s = res.json() as ScheduleView;
  await waitFor(
    "the schedule's projection",
    async () => (await call(r, "GET", `/v1/schedules/${s.id}`, token)).statusCode === 200,
    10_000,
    50,
  );
  return s;
}

type Firing = { fireTime: string; outcome: string; taskId?: string; code?: string };
async function firings(r: RegistryService, id: string): Promise<Firing[]> {
  const rows = await r.db.selectFrom("events").select("data").where("stream_id", "=", id).where("type", "=", "schedule.fired").execute();
  return rows.map((x) => x.data as Firing).sort((a, b) => a.fireTime.localeCompare(b.fireTime));
}
/** The tasks a schedule submitted, as the event store has them: one per idempotency key, or a double submission. */
async function submissions(r: RegistryService, id: string): Promise<{ taskId: string; key: string }[]> {
  const rows = await r.db
    .selectFrom("events")
    .select(["stream_id", sql<string>`data->>'idempotencyKey'`.as("key")])
    .where("type", "=", "task.submitted")
    .where(sql<boolean>`data->'spec'->'labels'->>'schedule' = ${id}`)
    .execute();
  return rows.map((x) => ({ taskId: x.stream_id, key: x.key }));
}
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

describe("schedules", () => {
  it("checks a schedule like a task, and keeps tenants apart", async () => {
    const r = await start();
    const bad = async (body: unknown, code: string) => {
      const res = await call(r, "POST", "/v1/schedules", T.a, body);
      expect(res.statusCode, res.body).toBe(422);
      expect(res.json().code).toBe(code);
    };
    await bad({ cron: "61 * * * *", task }, "invalid_cron");
    await bad({ cron: "* * * * *", timezone: "Mars/Olympus", task }, "invalid_timezone");
    await bad({ cron: "* * * * *", task: { ...task, repo: { url: "file:///etc" } } }, "repo_url_file_refused");
    await bad({ cron: "* * * * *", task: { ...task, notify: { url: "https://169.254.169.254/x" } } }, "webhook_url_address_refused");
    await bad({ cron: "* * * * *", task: { ...task, labels: { schedule: "mine" } } }, "reserved_label");
    expect((await call(r, "POST", "/v1/schedules", T.a, { cron: "* * * * *", task: { title: "no repo" } })).statusCode).toBe(422); // the schema
    expect((await call(r, "POST", "/v1/schedules", T.readerA, { cron: "* * * * *", task })).statusCode).toBe(403);

    const s = await create(r, "0 9 * * 1-5", T.a, { timezone: "Europe/Berlin" });
    expect(s).toMatchObject({ tenant: "team-a", status: "active", createdBy: "a-bot", timezone: "Europe/Berlin" });
    expect(s.id).toMatch(/^sch_/);
    const got = (await call(r, "GET", `/v1/schedules/${s.id}`, T.readerA)).json() as ScheduleView & { nextFireTime: string };
    expect(new Date(got.nextFireTime).getUTCHours()).toBeOneOf([7, 8]); // 09:00 in Berlin
    expect(((await call(r, "GET", "/v1/schedules", T.a)).json() as { items: ScheduleView[] }).items.map((x) => x.id)).toContain(s.id);

    // another tenant: as if it did not exist
    expect((await call(r, "GET", `/v1/schedules/${s.id}`, T.b)).statusCode).toBe(404);
    expect((await call(r, "GET", `/v1/schedules/${s.id}/events`, T.b)).statusCode).toBe(404);
    expect((await call(r, "PATCH", `/v1/schedules/${s.id}`, T.b, { paused: true })).statusCode).toBe(404);
    expect((await call(r, "DELETE", `/v1/schedules/${s.id}`, T.b)).statusCode).toBe(404);
    expect(((await call(r, "GET", "/v1/schedules", T.b)).json() as { items: ScheduleView[] }).items).toEqual([]);
    expect((await call(r, "PATCH", `/v1/schedules/${s.id}`, T.readerA, { paused: true })).statusCode).toBe(403);

    const events = (await call(r, "GET", `/v1/schedules/${s.id}/events`, T.a)).json() as { items: { type: string }[] };
    expect(events.items.map((e) => e.type)).toEqual(["schedule.created"]);
    expect((await call(r, "DELETE", `/v1/schedules/${s.id}`, T.a)).statusCode).toBe(204);
    await waitFor("deleted", async () => (await call(r, "GET", `/v1/schedules/${s.id}`, T.a)).statusCode === 404, 10_000, 50);
    // the task projection never saw the schedule's stream
    expect(await r.db.selectFrom("tasks").select("task_id").where("task_id", "=", s.id).executeTakeFirst()).toBeUndefined();
  });

  it("fires `* * * * * *` once per second: two registries at once, the leader stopped and started, never a double submission", async () => {
    const r1 = await start();
    const r2 = await start();
    await waitFor("a leader", async () => r1.scheduler.isLeader() || r2.scheduler.isLeader(), 10_000, 50);
    expect(r1.scheduler.isLeader() && r2.scheduler.isLeader()).toBe(false);
    const s = await create(r1, "* * * * * *");
    const t0 = Date.now();
    await sleep(3500);
    // stop the leader: the other takes over (the lease is given up on stop)
    const leader = r1.scheduler.isLeader() ? r1 : r2;
    const follower = leader === r1 ? r2 : r1;
    await stop(leader);
    const stoppedAt = Date.now();
    await waitFor("the follower to lead", async () => follower.scheduler.isLeader(), 5000, 20);
    await sleep(3000);
    // start a registry again: two at once
    const r3 = await start();
    const restartedAt = Date.now();
    await sleep(3000);
    const paused = await call(follower, "PATCH", `/v1/schedules/${s.id}`, T.a, { paused: true });
    expect(paused.statusCode).toBe(200);
    const pausedAt = Date.parse((paused.json() as ScheduleView).pausedAt as string);
    const elapsed = (pausedAt - t0) / 1000;
    await waitFor(
      "paused",
      async () =>
        (await r3.db.selectFrom("schedules").select("status").where("schedule_id", "=", s.id).executeTakeFirst())?.status === "paused",
    );
    await sleep(500); // a firing decided just before the pause was projected may still land
    const beforeWait = (await firings(r3, s.id)).length;
    await sleep(2500);
    const fired = await firings(r3, s.id);
    expect(fired.length, "a paused schedule does not fire").toBe(beforeWait);

    // exactly one task per fire time, each fire time once
    const times = fired.map((f) => f.fireTime);
    expect(new Set(times).size).toBe(times.length);
    expect(fired.every((f) => f.outcome === "submitted" && f.taskId)).toBe(true);
    expect(new Set(fired.map((f) => f.taskId)).size).toBe(fired.length);
    const subs = await submissions(r3, s.id);
    expect(subs.length).toBe(fired.length);
    expect(new Set(subs.map((x) => x.key)).size).toBe(subs.length);
    expect(subs.map((x) => x.key).sort()).toEqual(times.map((t) => `schedule:${s.id}:${t}`).sort());
    // every second while it ran (a few may fall to the handover and to slow ticks: only the latest missed one fires)
    expect(fired.length).toBeGreaterThanOrEqual(Math.floor(elapsed) - 3);
    expect(fired.length).toBeLessThanOrEqual(Math.ceil(elapsed) + 1);
    expect(times.some((t) => Date.parse(t) > stoppedAt + 1000 && Date.parse(t) < restartedAt)).toBe(true);
    expect(times.some((t) => Date.parse(t) > restartedAt + 1000)).toBe(true);
    expect(times.every((t) => Date.parse(t) <= pausedAt + 1000)).toBe(true);
    // the tasks: queued, labelled, submitted by the schedule's creator in its tenant
    const list = (await call(r3, "GET", `/v1/tasks?label=schedule=${s.id}&limit=200`, T.a)).json() as {
      items: { id: string; labels: Record<string, string>; submittedBy: string; tenant: string }[];
    };
    expect(list.items.length).toBe(fired.length);
    expect(
      list.items.every(
        (x) => x.labels.schedule === s.id && x.labels.team === "platform" && x.submittedBy === "a-bot" && x.tenant === "team-a",
      ),
    ).toBe(true);
    expect(((await call(r3, "GET", `/v1/tasks?label=schedule=${s.id}`, T.b)).json() as { items: unknown[] }).items).toEqual([]);

    // resumed: fires again, not the seconds missed while paused
    const resumed = await call(r3, "PATCH", `/v1/schedules/${s.id}`, T.a, { paused: false });
    const resumedAt = Date.parse((resumed.json() as ScheduleView).resumedAt as string);
    await waitFor("a firing after the resume", async () => (await firings(r3, s.id)).length > fired.length, 10_000, 100);
    const after = (await firings(r3, s.id)).slice(fired.length);
    expect(after.every((f) => Date.parse(f.fireTime) > resumedAt)).toBe(true);
    await call(r3, "DELETE", `/v1/schedules/${s.id}`, T.a);
  });

  it("submits exactly one task per minute for `* * * * *` across a restart and with two registries (moved clock)", async () => {
    let r = await start();
    const s = await create(r, "* * * * *");
    const created = Date.parse(s.createdAt);
    const minute = (n: number) => new Date((Math.floor(created / 60_000) + n) * 60_000).toISOString();
    const expectFired = async (reg: RegistryService, n: number) => {
      await waitFor(`${n} firing(s)`, async () => (await firings(reg, s.id)).length >= n, 10_000, 50);
      await sleep(800); // 8 more ticks: nothing more may fire this minute
      return firings(reg, s.id);
    };
    offsetMs = Date.parse(minute(1)) + 20_000 - Date.now();
    expect((await expectFired(r, 1)).map((f) => f.fireTime)).toEqual([minute(1)]);

    // restart: the new registry starts from the log, fires the next minute once
    await stop(r);
    offsetMs = Date.parse(minute(2)) + 5_000 - Date.now();
    r = await start();
    expect((await expectFired(r, 2)).map((f) => f.fireTime)).toEqual([minute(1), minute(2)]);

    // down for three minutes: only the latest missed minute fires; two registries at once
    await stop(r);
    offsetMs = Date.parse(minute(5)) + 30_000 - Date.now();
    const [a, b] = [await start(), await start()];
    const fired = await expectFired(a, 3);
    expect(fired.map((f) => f.fireTime)).toEqual([minute(1), minute(2), minute(5)]);
    const subs = await submissions(b, s.id);
    expect(subs.map((x) => x.key).sort()).toEqual(fired.map((f) => `schedule:${s.id}:${f.fireTime}`));
    await call(a, "DELETE", `/v1/schedules/${s.id}`, T.a);
  });

  it("records a firing the tenant's quota refuses, once, and goes on", async () => {
    const r = await start();
    const s = await create(r, "* * * * * *", T.q);
    await waitFor("a refused firing", async () => (await firings(r, s.id)).some((f) => f.outcome === "refused"), 10_000, 100);
    await sleep(1500);
    await call(r, "PATCH", `/v1/schedules/${s.id}`, T.q, { paused: true });
    const fired = await firings(r, s.id);
    const refused = fired.filter((f) => f.outcome === "refused");
    expect(fired.filter((f) => f.outcome === "submitted")).toHaveLength(1); // maxQueued 1, no runner takes it
    expect(refused.every((f) => f.code === "quota_exceeded")).toBe(true);
    expect(new Set(fired.map((f) => f.fireTime)).size).toBe(fired.length); // each refusal recorded once, never retried
    expect(await submissions(r, s.id)).toHaveLength(1);
    const view = (await call(r, "GET", `/v1/schedules/${s.id}`, T.q)).json() as ScheduleView;
    expect(view.firings).toBe(fired.length);
  });
});

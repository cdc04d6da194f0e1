import { MockAgent } from "undici";
import { describe, expect, it } from "vitest";
import type { CliIo } from "./cli.js";
import { EXIT } from "./exit-codes.js";
import { RegistryApi, type ScheduleInfo } from "./registry-api.js";
import { createStyle } from "./render.js";
import { renderSchedules, scheduleCommand } from "./schedule.js";

const URL_ = "http://registry.test";
const taskYaml =
  "repo: {url: 'https://git.example/r.git'}\ntitle: Nightly deps\nprompt: update\nagent: {kind: script, steps: [{run: 'true'}]}\n";
const schedule: ScheduleInfo = {
  id: "sch_01KA0000000000000000000000",
  tenant: "default",
  cron: "0 9 * * 1-5",
  timezone: "Europe/Berlin",
  task: {
    repo: { url: "https://git.example/r.git" },
    title: "Nightly deps",
    prompt: "update",
    agent: { kind: "script", steps: [{ run: "true" }] },
  },
  status: "active",
  createdAt: "2026-01-01T00:00:00.000Z",
  firings: 0,
  nextFireTime: "2026-01-02T08:00:00.000Z",
};

function harness() {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get(URL_);
  const api = new RegistryApi({ url: URL_, token: "tok", dispatcher: agent });
  let out = "";
  const io = {
    env: {},
    stdout: {
      write: (t: string) => {
        out += t;
      },
      isTTY: false,
    },
    stderr: { write: () => undefined, isTTY: false },
    stdoutStream: process.stdout,
    readStdin: async () => "",
    readFile: (p: string) => (p === "task.yaml" ? taskYaml : undefined),
  } satisfies CliIo;
  const run = (args: string[], json = false) => scheduleCommand({ io, api, st: createStyle(false), json }, args, {});
  return { pool, run, out: () => out };
}

describe("codefleet schedule", () => {
  it("creates a schedule from a task file, checked locally first", async () => {
    const h = harness();
    let sent: unknown;
    h.pool.intercept({ path: "/v1/schedules", method: "POST" }).reply(201, (opts) => {
      sent = JSON.parse(String(opts.body));
      return schedule;
    });
    expect(await h.run(["create", "--cron", "0 9 * * 1-5", "--timezone", "Europe/Berlin", "-f", "task.yaml"])).toBe(EXIT.ok);
    expect(sent).toMatchObject({ cron: "0 9 * * 1-5", timezone: "Europe/Berlin", task: { title: "Nightly deps" } });
    expect(h.out()).toBe(`${schedule.id}  (next firing 2026-01-02T08:00:00.000Z)\n`);
  });

  it("lists, pauses, resumes and deletes", async () => {
    const h = harness();
    h.pool.intercept({ path: "/v1/schedules", method: "GET" }).reply(200, { items: [schedule] });
    h.pool
      .intercept({ path: `/v1/schedules/${schedule.id}`, method: "PATCH", body: '{"paused":true}' })
      .reply(200, { ...schedule, status: "paused", nextFireTime: undefined });
    h.pool.intercept({ path: `/v1/schedules/${schedule.id}`, method: "PATCH", body: '{"paused":false}' }).reply(200, schedule);
    h.pool.intercept({ path: `/v1/schedules/${schedule.id}`, method: "DELETE" }).reply(204, "");
    expect(await h.run(["list"])).toBe(EXIT.ok);
    expect(h.out()).toContain(`${schedule.id}  active  0 9 * * 1-5 (Europe/Berlin)  2026-01-02T08:00:00.000Z  -     Nightly deps`);
    expect(await h.run(["pause", schedule.id])).toBe(EXIT.ok);
    expect(h.out()).toContain(`${schedule.id} paused\n`);
    expect(await h.run(["resume", schedule.id])).toBe(EXIT.ok);
    expect(await h.run(["delete", schedule.id])).toBe(EXIT.ok);
    expect(h.out()).toContain(`${schedule.id} deleted\n`);
  });

  it("says what is missing, and maps a 404 to its exit code", async () => {
    const h = harness();
    await expect(h.run(["create", "-f", "task.yaml"])).rejects.toMatchObject({ exitCode: EXIT.usage, message: "--cron is required" });
    await expect(h.run(["create", "--cron", "* * * * *"])).rejects.toMatchObject({ exitCode: EXIT.usage });
    await expect(h.run(["create", "--cron", "* * * * *", "-f", "missing.yaml"])).rejects.toMatchObject({ exitCode: EXIT.usage });
    await expect(h.run(["pause"])).rejects.toMatchObject({ exitCode: EXIT.usage, message: "missing schedule id" });
    await expect(h.run(["frobnicate"])).rejects.toMatchObject({ exitCode: EXIT.usage });
    h.pool
      .intercept({ path: "/v1/schedules/sch_nope", method: "GET" })
      .reply(404, { code: "schedule_not_found", detail: "no schedule 'sch_nope'" });
    await expect(h.run(["show", "sch_nope"])).rejects.toMatchObject({ exitCode: EXIT.notFound });
  });

  it("renders refused firings and paused schedules", () => {
    const text = renderSchedules(
      [
        {
          ...schedule,
          status: "paused",
          nextFireTime: undefined,
          lastFiring: { fireTime: "2026-01-01T08:00:00.000Z", outcome: "refused", code: "quota_exceeded" },
        },
      ] as ScheduleInfo[],
      createStyle(false),
    );
    expect(text).toContain("paused");
    expect(text).toContain("refused (quota_exceeded)");
    expect(renderSchedules([], createStyle(false))).toBe("no schedules");
  });
});

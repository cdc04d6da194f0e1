import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEvent, type TaskSpec, type TaskView } from "@codefleet/contracts";
import { sha256Hex } from "@codefleet/contracts/access";
import { createTestDatabase, testNamespace, waitFor } from "@codefleet/test/support";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { loadRegistryConfig } from "../config.js";
import { type RegistryService, startRegistry } from "../service.js";
import { verifySignature } from "./delivery.js";

/**
 * Webhooks end to end: the registry in-process on real NATS and Postgres posts to a real local
 * HTTP receiver that verifies every signature; a 500 is retried with backoff, a pending delivery
 * survives a registry restart, and every attempt is an event in the task's history.
 */

const TOKEN = "team-a-token-0123456789";
const SECRET = "team-a-signing-secret-0123456789";
const DEFAULT_SECRET = "default-signing-secret-0123456789";

type Received = { path: string; headers: Record<string, string | string[] | undefined>; body: string };
let server: Server;
let port: number;
const received: Received[] = [];
/** The receiver's answer to each request, by path: a queue of statuses, then 204. */
const script = new Map<string, number[]>();

let env: Record<string, string>;
let dir: string;
let dropDb: () => Promise<void>;
const running = new Set<RegistryService>();

const spec = (notify?: string): TaskSpec => ({
  repo: { url: "https://git.example.com/acme/app.git", ref: "main" },
  title: "notify me",
  prompt: "p",
  agent: { kind: "script", steps: [{ run: "true" }] },
  ...(notify ? { notify: { url: notify } } : {}),
});

async function start(): Promise<RegistryService> {
  const r = await startRegistry(loadRegistryConfig(env));
  running.add(r);
  return r;
}
async function stop(r: RegistryService): Promise<void> {
  await r.stop();
  running.delete(r);
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString("utf8");
    });
    req.on("end", () => {
      received.push({ path: req.url ?? "", headers: req.headers, body });
      const status = script.get(req.url ?? "")?.shift() ?? 204;
      res.writeHead(status).end(status >= 400 ? "nope" : "");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
  const database = await createTestDatabase(inject("databaseUrl"));
  dropDb = database.drop;
  dir = mkdtempSync(join(tmpdir(), "cf-webhooks-"));
  writeFileSync(
    join(dir, "tokens.yaml"),
    `tokens:\n  - { name: a-bot, sha256: ${sha256Hex(TOKEN)}, tenant: team-a, scopes: [tasks:submit, tasks:read, tasks:cancel] }\n`,
  );
  writeFileSync(join(dir, "webhooks.yaml"), `tenants:\n  team-a: { url: "http://127.0.0.1:${port}/tenant-a", secret: "${SECRET}" }\n`);
  env = {
    DATABASE_URL: database.url,
    NATS_URL: inject("natsUrl"),
    CODEFLEET_NAMESPACE: testNamespace(),
    NATS_STORAGE: "memory",
    LOG_LEVEL: "error",
    CODEFLEET_TOKENS_FILE: join(dir, "tokens.yaml"),
    CODEFLEET_WEBHOOKS_FILE: join(dir, "webhooks.yaml"),
    CODEFLEET_WEBHOOK_SECRET: DEFAULT_SECRET,
    CODEFLEET_WEBHOOK_HTTP_HOSTS: `127.0.0.1:${port}`,
    CODEFLEET_WEBHOOK_PRIVATE_HOSTS: `127.0.0.1:${port}`,
    REGISTRY_PUBLIC_URL: "https://codefleet.example",
    WEBHOOK_POLL_MS: "50",
    WEBHOOK_RETRY_BASE_MS: "400",
    WEBHOOK_MAX_ATTEMPTS: "4",
    WEBHOOK_TIMEOUT_MS: "2000",
  };
});

afterEach(async () => {
  for (const r of [...running]) await stop(r);
});

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await dropDb?.();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const auth = { authorization: `Bearer ${TOKEN}` };
async function submit(r: RegistryService, body: TaskSpec) {
  return r.app.inject({ method: "POST", url: "/v1/tasks", headers: auth, payload: body });
}
async function events(r: RegistryService, id: string): Promise<{ type: string; data: Record<string, unknown> }[]> {
  return ((await r.app.inject({ method: "GET", url: `/v1/tasks/${id}/events`, headers: auth })).json() as { items: never[] }).items;
}
const to = (path: string) => received.filter((x) => x.path === path);
const header = (x: Received, name: string) => x.headers[name.toLowerCase()] as string;

/** Finishes a queued task the way a runner would: run.started and run.finished on the bus. */
async function finish(r: RegistryService, taskId: string, status: "succeeded" | "failed") {
  await r.bus.publish(
    createEvent("run.started", { taskId, attempt: 1, producer: "runner", data: { runnerId: "r1", agentKind: "script" } }),
  );
  await r.bus.publish(
    createEvent("run.finished", {
      taskId,
      attempt: 1,
      producer: "runner",
      data: {
        status,
        durationMs: 5,
        branch: `codefleet/${taskId}`,
        commitSha: "c".repeat(40),
        ...(status === "failed" ? { reasonCode: "test_failed" } : {}),
      },
    }),
  );
}

describe("webhooks", () => {
  it("refuses a task webhook to a private or non-https address at submission", async () => {
    const r = await start();
    for (const [url, code] of [
      ["https://169.254.169.254/latest", "webhook_url_address_refused"],
      ["https://127.0.0.1:1/x", "webhook_url_address_refused"],
      ["http://hooks.example.com/x", "webhook_url_scheme_refused"],
      ["https://user:pw@hooks.example.com/x", "webhook_url_invalid"],
    ] as const) {
      const res = await submit(r, spec(url));
      expect(res.statusCode, url).toBe(422);
      expect(res.json()).toMatchObject({ code, field: "/notify/url" });
    }
  });

  it("posts a signed task.finished to the task's and the tenant's webhooks, retrying a 500 with backoff", async () => {
    const r = await start();
    script.set("/task-hook-1", [500, 503]);
    const res = await submit(r, spec(`http://127.0.0.1:${port}/task-hook-1`));
    expect(res.statusCode, res.body).toBe(202);
    const id = (res.json() as TaskView).id;
    await waitFor("queued", async () => (await events(r, id)).length === 1, 10_000, 50);
    await finish(r, id, "succeeded");
    await waitFor(
      "three attempts and the tenant's delivery",
      async () => to("/task-hook-1").length >= 3 && to("/tenant-a").length >= 1,
      20_000,
      50,
    );

    const attempts = to("/task-hook-1");
    expect(attempts).toHaveLength(3);
    const deliveryIds = new Set(attempts.map((x) => header(x, "Codefleet-Delivery")));
    expect(deliveryIds.size).toBe(1);
    for (const x of attempts) {
      expect(verifySignature(SECRET, x.body, header(x, "Codefleet-Signature"))).toBe(true);
      expect(verifySignature(DEFAULT_SECRET, x.body, header(x, "Codefleet-Signature"))).toBe(false);
      expect(header(x, "Codefleet-Event")).toBe("task.finished");
      expect(Number(header(x, "Codefleet-Timestamp"))).toBe(Math.floor(Date.parse(JSON.parse(x.body).sentAt) / 1000));
    }
    expect(JSON.parse(attempts[0]?.body ?? "{}")).toMatchObject({
      type: "task.finished",
      taskId: id,
      status: "succeeded",
      tenant: "team-a",
      branch: `codefleet/${id}`,
      commit: "c".repeat(40),
      url: `https://codefleet.example/v1/tasks/${id}`,
    });
    // backoff: 400 ms, then 800 ms
    const at = attempts.map((x) => Date.parse(JSON.parse(x.body).sentAt));
    expect((at[1] as number) - (at[0] as number)).toBeGreaterThanOrEqual(350);
    expect((at[2] as number) - (at[1] as number)).toBeGreaterThanOrEqual(750);
    const tenantHook = to("/tenant-a").filter((x) => JSON.parse(x.body).taskId === id);
    expect(tenantHook).toHaveLength(1);
    expect(header(tenantHook[0] as Received, "Codefleet-Delivery")).not.toBe([...deliveryIds][0]);

    // every attempt is an event in the task's history: outcome, status, attempt; never a body, URL or secret
    await waitFor(
      "webhook events",
      async () => (await events(r, id)).filter((e) => e.type.startsWith("webhook.")).length === 4,
      10_000,
      50,
    );
    const hooks = (await events(r, id)).filter((e) => e.type.startsWith("webhook."));
    const task = hooks.filter((e) => e.data.target === "task");
    expect(task.map((e) => [e.type, e.data.attempt, e.data.statusCode, e.data.code, e.data.final])).toEqual([
      ["webhook.failed", 1, 500, "http_500", false],
      ["webhook.failed", 2, 503, "http_503", false],
      ["webhook.delivered", 3, 204, undefined, undefined],
    ]);
    expect(hooks.filter((e) => e.data.target === "tenant").map((e) => e.type)).toEqual(["webhook.delivered"]);
    const text = JSON.stringify(hooks);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain("/task-hook-1");
    expect(text).toContain(`"host":"127.0.0.1:${port}"`);
    const view = (await r.app.inject({ method: "GET", url: `/v1/tasks/${id}`, headers: auth })).json() as TaskView;
    expect(view).toMatchObject({ status: "succeeded", anomalies: 0 });
  });

  it("gives up on a 4xx at once, and after the last attempt", async () => {
    const r = await start();
    script.set("/gone", [410]);
    script.set("/down", [500, 500, 500, 500]);
    const ids: string[] = [];
    for (const path of ["/gone", "/down"]) {
      const res = await submit(r, spec(`http://127.0.0.1:${port}${path}`));
      ids.push((res.json() as TaskView).id);
    }
    for (const id of ids) {
      await waitFor("queued", async () => (await events(r, id)).length === 1, 10_000, 50);
      const canceled = await r.app.inject({ method: "POST", url: `/v1/tasks/${id}/cancel`, headers: auth }); // canceled: final too
      expect(canceled.statusCode).toBe(202);
    }
    await waitFor("the last attempt", async () => to("/down").length >= 4, 20_000, 50);
    await new Promise((res) => setTimeout(res, 1500));
    expect(to("/gone")).toHaveLength(1);
    expect(to("/down")).toHaveLength(4);
    const last = async (id: string) => (await events(r, id)).filter((e) => e.type === "webhook.failed" && e.data.target === "task").at(-1);
    await waitFor("final events", async () => (await last(ids[1] as string))?.data.final === true, 10_000, 50);
    expect((await last(ids[0] as string))?.data).toMatchObject({ attempt: 1, code: "http_410", final: true });
    expect((await last(ids[1] as string))?.data).toMatchObject({ attempt: 4, code: "http_500", final: true });
    expect(JSON.parse(to("/gone")[0]?.body ?? "{}")).toMatchObject({ status: "canceled", reasonCode: "canceled" });
  });

  it("keeps a pending delivery across a registry restart, and notifies of a task that ended while it was down", async () => {
    let r = await start();
    script.set("/restart-hook", [500]);
    const res = await submit(r, spec(`http://127.0.0.1:${port}/restart-hook`));
    const id = (res.json() as TaskView).id;
    const second = (await submit(r, spec(`http://127.0.0.1:${port}/while-down`))).json() as TaskView;
    await waitFor("queued", async () => (await events(r, second.id)).length === 1, 10_000, 50);
    await finish(r, id, "failed");
    await waitFor("the first attempt", async () => to("/restart-hook").length === 1, 10_000, 20);
    await stop(r); // the retry is due in 400 ms: nobody is there to send it
    // the second task ends while no registry runs: its events wait in JetStream
    const { Bus, connectNats } = await import("@codefleet/platform/bus");
    const nc = await connectNats({ servers: [env.NATS_URL as string], name: "test" });
    const bus = await Bus.create(nc, { namespace: env.CODEFLEET_NAMESPACE as string });
    await finish({ bus } as RegistryService, second.id, "succeeded");
    await new Promise((res) => setTimeout(res, 1200));
    expect(to("/restart-hook")).toHaveLength(1);
    expect(to("/while-down")).toHaveLength(0);

    r = await start();
    await waitFor(
      "the retry and the new notification",
      async () => to("/restart-hook").length === 2 && to("/while-down").length === 1,
      20_000,
      50,
    );
    const [first, retry] = to("/restart-hook") as [Received, Received];
    expect(header(retry, "Codefleet-Delivery")).toBe(header(first, "Codefleet-Delivery"));
    expect(verifySignature(SECRET, retry.body, header(retry, "Codefleet-Signature"))).toBe(true);
    expect(JSON.parse(retry.body)).toMatchObject({ taskId: id, status: "failed", reasonCode: "test_failed" });
    expect(JSON.parse((to("/while-down")[0] as Received).body)).toMatchObject({ taskId: second.id, status: "succeeded" });
    await waitFor(
      "the delivered event",
      async () => (await events(r, id)).some((e) => e.type === "webhook.delivered" && e.data.attempt === 2),
      10_000,
      50,
    );
    await nc.drain();
  });

  it("posts a signed pull_request.opened once per task, however often the runner reports it, before task.finished", async () => {
    const r = await start();
    const res = await submit(r, spec(`http://127.0.0.1:${port}/pr-hook`));
    const id = (res.json() as TaskView).id;
    await waitFor("queued", async () => (await events(r, id)).length === 1, 10_000, 50);
    const pr = { url: "https://github.com/acme/app/pull/7", number: 7 };
    await r.bus.publish(
      createEvent("run.started", { taskId: id, attempt: 1, producer: "runner", data: { runnerId: "r1", agentKind: "script" } }),
    );
    for (const created of [true, false])
      await r.bus.publish(
        createEvent("pull_request.opened", { taskId: id, attempt: 1, producer: "runner", data: { ...pr, provider: "github", created } }),
      );
    await waitFor("the pull request notification", async () => to("/pr-hook").length >= 1, 20_000, 50);
    const view = (await r.app.inject({ method: "GET", url: `/v1/tasks/${id}`, headers: auth })).json() as TaskView;
    expect(view.pullRequest).toEqual(pr);
    await finish(r, id, "succeeded");
    await waitFor("task.finished too", async () => to("/pr-hook").length >= 2, 20_000, 50);
    await new Promise((ok) => setTimeout(ok, 300));
    const [opened, finished] = to("/pr-hook") as [Received, Received];
    expect(to("/pr-hook")).toHaveLength(2);
    expect(header(opened, "Codefleet-Event")).toBe("pull_request.opened");
    expect(verifySignature(SECRET, opened.body, header(opened, "Codefleet-Signature"))).toBe(true);
    expect(JSON.parse(opened.body)).toMatchObject({
      type: "pull_request.opened",
      taskId: id,
      tenant: "team-a",
      branch: `codefleet/${id}`,
      pullRequest: pr,
      url: `https://codefleet.example/v1/tasks/${id}`,
    });
    expect(header(finished, "Codefleet-Event")).toBe("task.finished");
    expect(header(finished, "Codefleet-Delivery")).not.toBe(header(opened, "Codefleet-Delivery"));
  });
});

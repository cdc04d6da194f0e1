import { request as httpRequest } from "node:http";
import { createEvent, type LogChunk, type TaskSpec, type TaskView } from "@codefleet/contracts";
import { contextFromFields } from "@codefleet/platform/bus";
import { waitFor } from "@codefleet/test/support";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type DashboardHarness, startDashboardHarness, TOKENS } from "./harness.js";

/**
 * The web dashboard in Chromium against the registry that serves it (real NATS and Postgres, no
 * runner): sign-in, the live task list, the submit form's validation, cancel, a task's page with its
 * live log and diff, the fleet page, phone width and keyboard use. The static serving itself
 * (content types, caching, fallback, no traversal) is checked over HTTP at the end.
 */

let h: DashboardHarness;
let context: BrowserContext;

beforeAll(async () => {
  h = await startDashboardHarness({ natsUrl: inject("natsUrl"), databaseUrl: inject("databaseUrl") });
}, 180_000);

afterAll(async () => {
  await context?.close().catch(() => undefined);
  await h?.stop();
});

const spec = (over: Partial<TaskSpec> = {}): TaskSpec => ({
  repo: { url: "https://git.example.com/acme/app.git", ref: "main" },
  title: "add a greeting",
  prompt: "create HELLO.txt",
  agent: { kind: "script", steps: [{ run: "echo hello > HELLO.txt" }] },
  labels: { team: "platform" },
  ...over,
});

async function api<T>(
  method: "GET" | "POST",
  path: string,
  token: string = TOKENS.admin,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await fetch(`${h.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

async function submitViaApi(s: TaskSpec, token: string = TOKENS.admin): Promise<TaskView> {
  const res = await api<TaskView>("POST", "/v1/tasks", token, s);
  expect(res.status).toBe(202);
  await projected(res.body.id, () => true, token);
  return res.body;
}

async function projected(id: string, ok: (v: TaskView) => boolean = () => true, token: string = TOKENS.admin): Promise<TaskView> {
  let view: TaskView | undefined;
  await waitFor(
    `task ${id}`,
    async () => {
      const r = await api<TaskView>("GET", `/v1/tasks/${id}`, token);
      view = r.status === 200 ? r.body : undefined;
      return view !== undefined && ok(view);
    },
    15_000,
    100,
  );
  return view!;
}

async function newPage(viewport = { width: 1280, height: 900 }): Promise<Page> {
  context = await h.browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  return page;
}

async function signIn(page: Page, token: string = TOKENS.admin): Promise<void> {
  await page.goto(`${h.url}/`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Tasks", level: 1 }).waitFor();
}

describe("dashboard: signing in", () => {
  it("shows the registry's refusal of a bad token and stays on the token field", async () => {
    const page = await newPage();
    await page.goto(`${h.url}/tasks`);
    await page.getByLabel("API token").fill("not-a-valid-token-0000");
    await page.getByRole("button", { name: "Sign in" }).click();
    const alert = page.getByRole("alert");
    await expect(alert.textContent()).resolves.toContain("The registry refused the token");
    await expect(alert.textContent()).resolves.toContain("unauthorized");
    expect(await page.evaluate(() => sessionStorage.getItem("codefleet.token"))).toBeNull();
    await context.close();
  });

  it("signs in with the keyboard alone, keeps the token in session storage only, and signs out", async () => {
    const page = await newPage();
    await page.goto(`${h.url}/`);
    await page.keyboard.press("Tab"); // the token field is the first control of the page
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("token");
    await page.keyboard.type(TOKENS.reader);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Tasks", level: 1 }).waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem("codefleet.token"))).toBe(TOKENS.reader);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    // a new tab (another session) asks again
    const other = await context.newPage();
    await other.goto(`${h.url}/tasks`);
    await other.getByLabel("API token").waitFor();
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API token").waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem("codefleet.token"))).toBeNull();
    await context.close();
  });
});

describe("dashboard: tasks", () => {
  it("shows a task submitted through the API live, with its columns, and filters by status and label", async () => {
    const page = await newPage();
    await signIn(page);
    const label = `run-${Date.now()}`;
    const task = await submitViaApi(spec({ title: `live row ${label}`, labels: { batch: label } }));
    // no reload: the page refreshes itself
    const row = page.locator(`tr[data-task-id="${task.id}"]`);
    await row.waitFor();
    const cells = await row.locator("td").allTextContents();
    expect(cells[0]).toBe("queued");
    expect(cells[1]).toContain(`live row ${label}`);
    expect(cells[2]).toContain("git.example.com/acme/app @ main");
    expect(cells[3]).toBe("script");
    expect(cells[4]).toMatch(/^waiting /);
    expect(cells[5]).toContain(`batch=${label}`);
    expect(cells[6]).toBe("admin-bot");

    // another tenant's task never shows up
    const foreign = await submitViaApi(spec({ title: `foreign ${label}`, labels: { batch: label } }), TOKENS.other);
    await page.getByLabel("Labels", { exact: true }).fill(`batch=${label}`);
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL(/label=batch/);
    await expect.poll(() => page.locator("tbody tr").count()).toBe(1);
    expect(await page.locator(`tr[data-task-id="${foreign.id}"]`).count()).toBe(0);

    await page.getByLabel("Status").selectOption("running");
    await page.getByText("No tasks match these filters").waitFor();
    await page.getByLabel("Status").selectOption("queued");
    await row.waitFor();
    await context.close();
  });

  it("pages through the list with Older and Newer", async () => {
    const label = `page-${Date.now()}`;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await submitViaApi(spec({ title: `paged ${i}`, labels: { batch: label } }))).id);
    const page = await newPage();
    await signIn(page);
    await page.goto(`${h.url}/tasks?label=batch%3D${label}&limit=25`);
    await page.locator(`tr[data-task-id="${ids[2]}"]`).waitFor();
    // the smallest page size the API allows through the URL: 1 per page
    await page.goto(`${h.url}/tasks?label=batch%3D${label}&limit=1`);
    await page.locator(`tr[data-task-id="${ids[2]}"]`).waitFor();
    await page.getByRole("button", { name: "Older" }).click();
    await page.locator(`tr[data-task-id="${ids[1]}"]`).waitFor();
    await page.getByRole("button", { name: "Older" }).click();
    await page.locator(`tr[data-task-id="${ids[0]}"]`).waitFor();
    expect(await page.getByRole("button", { name: "Older" }).isDisabled()).toBe(true);
    await page.getByRole("button", { name: "Newer" }).click();
    await page.locator(`tr[data-task-id="${ids[1]}"]`).waitFor();
    await context.close();
  });
});

describe("dashboard: submitting", () => {
  it("checks the form with the API's schema in the page, shows the API's problem+json, and submits a valid task", async () => {
    const page = await newPage();
    await signIn(page);
    const requests: string[] = [];
    page.on("request", (r) => {
      if (r.method() === "POST") requests.push(r.url());
    });
    await page.getByRole("link", { name: "Submit", exact: true }).click();
    await page.getByRole("heading", { name: "Submit a task" }).waitFor();

    // nothing filled in: the schema's errors, beside their fields, and no request
    await page.getByRole("button", { name: "Submit task" }).click();
    const errors = page.locator("#spec-errors");
    await errors.waitFor();
    const text = (await errors.textContent()) ?? "";
    expect(text).toContain("/repo/url");
    expect(text).toContain("/title");
    expect(text).toContain("/agent/steps");
    expect(await page.getByLabel("Title").getAttribute("aria-invalid")).toBe("true");
    await page.getByLabel("Timeout (s)").fill("5");
    await page.getByLabel("Candidates").fill("9");
    await page.getByRole("button", { name: "Submit task" }).click();
    await expect.poll(async () => (await errors.textContent()) ?? "").toContain("/limits/timeoutSeconds");
    expect(await errors.textContent()).toContain("/candidates");
    expect(await page.getByLabel("Candidates").getAttribute("aria-invalid")).toBe("true");
    expect(requests).toEqual([]);

    // valid for the schema, refused by the registry's policy (plain http is not allowed): its problem+json is shown
    const title = `form task ${Date.now()}`;
    await page.getByLabel("Title").fill(title);
    await page.getByLabel("Prompt").fill("Change greet.sh so that it greets from codefleet.");
    await page.getByLabel("Repository URL").fill("http://plain.example.com/acme/app.git");
    await page.getByLabel("Ref").fill("main");
    await page.getByLabel("Steps").fill("printf 'hello from codefleet\\n' > greet.sh");
    await page.getByLabel("Test command").fill("sh test.sh");
    await page.getByLabel("Timeout (s)").fill("600");
    await page.getByLabel("Memory (MB)").fill("256");
    await page.getByLabel("Labels").fill("demo=true");
    await page.getByLabel("Candidates").fill("2");
    await page.getByRole("button", { name: "Submit task" }).click();
    const refused = page.getByRole("alert").filter({ hasText: "The registry refused the task" });
    await refused.waitFor();
    expect(await refused.textContent()).toMatch(/HTTP 422/);
    expect(requests).toHaveLength(1);

    await page.getByLabel("Repository URL").fill("https://git.example.com/acme/app.git");
    await page.getByRole("button", { name: "Submit task" }).click();
    await page.waitForURL(/\/tasks\/tsk_/);
    await page.getByRole("heading", { name: title }).waitFor();
    const id = decodeURIComponent(new URL(page.url()).pathname.split("/").pop()!);
    const view = await projected(id);
    expect(view.spec).toMatchObject({
      repo: { url: "https://git.example.com/acme/app.git", ref: "main" },
      agent: { kind: "script", steps: [{ run: "printf 'hello from codefleet\\n' > greet.sh" }] },
      test: { command: "sh test.sh" },
      limits: { timeoutSeconds: 600, memoryMb: 256 },
      labels: { demo: "true" },
      candidates: 2,
    });
    await context.close();
  });
});

describe("dashboard: a task", () => {
  it("cancels a queued task", async () => {
    const task = await submitViaApi(spec({ title: "to be canceled" }));
    const page = await newPage();
    await signIn(page);
    await page.goto(`${h.url}/tasks/${task.id}`);
    await page.getByRole("heading", { name: "to be canceled" }).waitFor();
    await page.getByRole("button", { name: "Cancel task" }).click();
    await page.getByLabel("Reason (optional)").fill("wrong ref");
    await page.getByRole("button", { name: "Confirm cancel" }).click();
    await page.locator('.page-head [data-status="canceled"]').waitFor();
    expect(await page.getByRole("button", { name: "Cancel task" }).count()).toBe(0);
    const view = await projected(task.id, (v) => v.status === "canceled");
    expect(view).toMatchObject({ status: "canceled", failureReason: "wrong ref", cancelRequestedBy: "admin-bot" });
    await page.getByText("requested by admin-bot").waitFor();
    await context.close();
  });

  it("shows the live log as it arrives, phases, tests, usage, attempts with trace links, artifacts and the diff", async () => {
    const task = await submitViaApi(spec({ title: "a task that ran" }));
    const page = await newPage();
    await signIn(page);
    await page.goto(`${h.url}/tasks/${task.id}`);
    await page.getByRole("heading", { name: "a task that ran" }).waitFor();
    await page.locator('[data-log-state="live"]').waitFor();

    // what a runner publishes: run.started, phases with facts, log chunks, the diff, run.finished
    const bus = h.registry.bus;
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const ctx = contextFromFields({ traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    const publish = (type: Parameters<typeof createEvent>[0], data: unknown) =>
      bus.publish(createEvent(type, { taskId: task.id, producer: "runner", attempt: 1, data: data as never }), { ctx });
    const log = async (seq: number, text: string) => {
      const chunk: LogChunk = { taskId: task.id, attempt: 1, seq, stream: "stdout", text, at: new Date().toISOString() };
      await bus.publishLog(chunk);
    };
    await publish("run.started", { runnerId: "runner-a", agentKind: "script" });
    await publish("phase.started", { phase: "implement" });
    await log(1, "cloning…\n");
    await page.getByRole("log", { name: "Task log" }).filter({ hasText: "cloning…" }).waitFor();
    await log(2, "wrote greet.sh\n");
    await page.getByRole("log", { name: "Task log" }).filter({ hasText: "wrote greet.sh" }).waitFor();
    await publish("phase.finished", {
      phase: "implement",
      outcome: "succeeded",
      durationMs: 1200,
      facts: { inputTokens: 1500, outputTokens: 320, costUsd: 0.0123, turns: 3 },
    });
    await publish("phase.started", { phase: "test" });
    await publish("phase.finished", {
      phase: "test",
      outcome: "succeeded",
      durationMs: 800,
      exitCode: 0,
      facts: { tests: 4, passed: 4, failed: 0 },
    });
    const diff = [
      "diff --git a/greet.sh b/greet.sh",
      "index 1111111..2222222 100755",
      "--- a/greet.sh",
      "+++ b/greet.sh",
      "@@ -1,2 +1,2 @@",
      " #!/bin/sh",
      '-echo "hello"',
      '+echo "hello from codefleet"',
      "diff --git a/src/app.ts b/src/app.ts",
      "new file mode 100644",
      "--- /dev/null",
      "+++ b/src/app.ts",
      "@@ -0,0 +1,3 @@",
      "+export function greet(name: string): string {",
      "+  return `hello ${name}`; // friendly",
      "+}",
      "",
    ].join("\n");
    const up = await fetch(`${h.storeUrl}/v1/tasks/${task.id}/attempts/1/artifacts?name=changes.diff&kind=diff`, {
      method: "PUT",
      headers: { authorization: `Bearer ${TOKENS.runner}`, "content-type": "text/x-diff" },
      body: diff,
    });
    expect(up.status).toBeLessThan(300);
    await publish("pull_request.opened", { url: "https://github.example/acme/app/pull/7", number: 7, provider: "github", created: true });
    await publish("run.finished", { status: "succeeded", durationMs: 2500, branch: `codefleet/${task.id}` });
    await projected(task.id, (v) => v.status === "succeeded" && v.artifacts.length > 0);

    // the log ends with the task; the page follows the view
    await page.locator('[data-log-state="ended"]').waitFor();
    await page.locator('.page-head [data-status="succeeded"]').waitFor();
    const phases = await page.locator(".timeline .phase").allTextContents();
    expect(phases[0]).toMatch(/implement.*succeeded · 1\.2 s/);
    expect(phases[1]).toMatch(/test.*succeeded · 800 ms · exit 0/);
    const tests = page.getByRole("region", { name: "Tests" });
    expect(await tests.textContent()).toMatch(/passed4/);
    const usage = page.getByRole("region", { name: "Usage and cost" });
    expect(await usage.textContent()).toContain("$0.0123");
    const trace = page.getByRole("link", { name: "Trace of attempt 1 in Jaeger" });
    expect(await trace.getAttribute("href")).toBe(`${h.jaegerUrl}/trace/${traceId}`);
    expect(await page.getByRole("region", { name: "Attempts" }).textContent()).toContain("runner-a");
    const pr = page.getByRole("link", { name: "#7" });
    expect(await pr.getAttribute("href")).toBe("https://github.example/acme/app/pull/7");
    expect(await pr.getAttribute("rel")).toBe("noopener noreferrer");

    // the diff: files, counts, highlighted code
    const files = page.getByRole("navigation", { name: "Changed files" });
    await files.waitFor();
    expect(await files.textContent()).toMatch(/greet\.sh\+1\s*−1/);
    await page.getByRole("region", { name: "Diff of greet.sh" }).waitFor();
    expect(await page.locator(".line.add .code").first().textContent()).toBe('echo "hello from codefleet"');
    await files.getByRole("button", { name: /src\/app\.ts/ }).click();
    const ts = page.getByRole("region", { name: "Diff of src/app.ts" });
    await ts.waitFor();
    expect(await ts.locator(".hljs-keyword").first().textContent()).toBe("export");
    expect(await ts.locator(".hljs-comment").first().textContent()).toBe("// friendly");

    // an artifact's content through the registry
    await page.getByRole("button", { name: "View changes.diff" }).click();
    await page.getByRole("region", { name: "Content of changes.diff" }).filter({ hasText: "hello from codefleet" }).waitFor();
    await context.close();
  });

  it("asks for a follow-up turn of a finished task and lists the turns; shows best-of-N candidates with the winner", async () => {
    const task = await submitViaApi(spec({ title: "a task to follow up", candidates: 2 }));
    const bus = h.registry.bus;
    const publish = (type: Parameters<typeof createEvent>[0], data: unknown, attempt = 1) =>
      bus.publish(createEvent(type, { taskId: task.id, producer: "runner", attempt, data: data as never }));
    await publish("run.started", { runnerId: "runner-a", agentKind: "script" });
    await publish("phase.started", { phase: "implement", candidate: 1 });
    await publish("phase.started", { phase: "implement", candidate: 2 });
    // candidate 1's unfinished line, then candidate 2's: each on its own line, marked
    await bus.publishLog({
      taskId: task.id,
      attempt: 1,
      candidate: 1,
      seq: 1,
      stream: "stdout",
      text: "from the first",
      at: new Date().toISOString(),
    });
    await bus.publishLog({
      taskId: task.id,
      attempt: 1,
      candidate: 2,
      seq: 1,
      stream: "stdout",
      text: "from the second\n",
      at: new Date().toISOString(),
    });
    await publish("candidate.selected", {
      winner: 2,
      candidates: [
        { candidate: 1, status: "failed", testsPassed: 1, testsFailed: 2, reasonCode: "test_failed", reason: "2 tests failed" },
        { candidate: 2, status: "passed", testsPassed: 3, testsFailed: 0, diffLines: 4, traceId: "5bf92f3577b34da6a3ce929d0e0e4736" },
      ],
      reason: "candidate 2: the only candidate whose tests passed",
    });
    await publish("run.finished", { status: "succeeded", durationMs: 900, branch: `codefleet/${task.id}`, commitSha: "c".repeat(40) });
    await projected(task.id, (v) => v.status === "succeeded");

    const page = await newPage();
    await signIn(page);
    await page.goto(`${h.url}/tasks/${task.id}`);
    const candidates = page.getByRole("region", { name: "Candidates", exact: true });
    await candidates.locator("tbody tr").nth(1).waitFor();
    const rows = await candidates.locator("tbody tr").allTextContents();
    expect(rows[0]).toMatch(/^1failed1 passed, 2 failed–2 tests failed/);
    expect(rows[1]).toMatch(/^2 \(selected\)passed3 passed, 0 failed4 lines/);
    expect(await page.getByRole("link", { name: "Trace of candidate 2 in Jaeger" }).getAttribute("href")).toBe(
      `${h.jaegerUrl}/trace/5bf92f3577b34da6a3ce929d0e0e4736`,
    );
    expect(rows[0]).toContain("(test_failed)");
    expect(await candidates.locator("tr.winner").allTextContents()).toEqual([expect.stringMatching(/^2 \(selected\)/)]);
    const log = page.getByRole("log", { name: "Task log" });
    await log.filter({ hasText: "[c2] from the second" }).waitFor();
    expect(await log.textContent()).toContain("[c1] from the first\n[c2] from the second\n");

    // a follow-up: the form on a finished task, then turn 2 queued and the turns listed
    await page.getByLabel(/What next\?/).fill("also say goodbye");
    await page.getByRole("button", { name: "Send follow-up" }).click();
    await page.locator('.page-head [data-status="queued"]').waitFor();
    const turns = page.getByRole("region", { name: "Turns", exact: true });
    await turns.locator("tbody tr").nth(1).waitFor();
    const turnRows = await turns.locator("tbody tr").allTextContents();
    expect(turnRows[0]).toMatch(/^1succeededcccccccccccc/);
    expect(turnRows[1]).toMatch(/^2queued–admin-botalso say goodbye/);
    expect(await page.getByRole("button", { name: "Send follow-up" }).count()).toBe(0);
    const view = await projected(task.id, (v) => v.turn === 2);
    expect(view.turns[1]).toMatchObject({ turn: 2, prompt: "also say goodbye", fromCommit: "c".repeat(40), requestedBy: "admin-bot" });

    // the new turn runs: the page follows it live (no reload), its attempt listed under turn 2
    await publish("run.started", { runnerId: "runner-b", agentKind: "script" }, 2);
    await page.locator('.page-head [data-status="running"]').waitFor();
    await page.locator('[data-log-state="live"]').waitFor();
    await bus.publishLog({ taskId: task.id, attempt: 2, seq: 1, stream: "stdout", text: "saying goodbye\n", at: new Date().toISOString() });
    await log.filter({ hasText: "── turn 2 · attempt 2 ──\nsaying goodbye" }).waitFor();
    const attempts = page.getByRole("region", { name: "Attempts", exact: true });
    await attempts.locator("tbody tr").nth(1).waitFor();
    const attemptRows = await attempts.locator("tbody tr").allTextContents();
    expect(attemptRows[0]).toMatch(/^11succeededrunner-a/);
    expect(attemptRows[1]).toMatch(/^22runningrunner-b/);
    await context.close();
  });

  it("shows the API's refusal of a follow-up", async () => {
    const task = await submitViaApi(spec({ title: "a follow-up refused" }));
    const bus = h.registry.bus;
    const publish = (type: Parameters<typeof createEvent>[0], data: unknown) =>
      bus.publish(createEvent(type, { taskId: task.id, producer: "runner", attempt: 1, data: data as never }));
    await publish("run.started", { runnerId: "runner-a", agentKind: "script" });
    await publish("run.finished", { status: "failed", durationMs: 900, reasonCode: "test_failed", reason: "x" });
    const ended = await projected(task.id, (v) => v.status === "failed");
    const page = await newPage();
    await signIn(page);
    await page.goto(`${h.url}/tasks/${task.id}`);
    await page.getByLabel(/What next\?/).fill("try again");
    // another client asks first, and the page has not polled since: its request is the second for turn 2
    const taskUrl = `${h.url}/v1/tasks/${task.id}`;
    await page.route(taskUrl, (route) => route.fulfill({ json: ended }));
    expect((await api("POST", `/v1/tasks/${task.id}/follow-ups`, TOKENS.admin, { prompt: "first" })).status).toBe(202);
    await projected(task.id, (v) => v.turn === 2);
    await page.getByRole("button", { name: "Send follow-up" }).click();
    const refusal = page.getByRole("region", { name: "Follow up" }).getByText(/cannot follow up: the task is still queued/);
    await refusal.waitFor();
    // the page looks again: the turn the other client asked for, the refusal still in sight, the prompt kept for later
    await page.unroute(taskUrl);
    await page.locator('.page-head [data-status="queued"]').waitFor();
    await page.getByText("Turn 2 is under way").waitFor();
    expect(await refusal.isVisible()).toBe(true);
    const turns = page.getByRole("region", { name: "Turns", exact: true });
    await turns.locator("tbody tr").nth(1).waitFor();
    expect((await turns.locator("tbody tr").allTextContents())[1]).toMatch(/^2queued–admin-botfirst/);
    await context.close();
  });

  it("offers no follow-up for a task that does not push", async () => {
    const task = await submitViaApi(spec({ title: "a task that keeps its change", push: { enabled: false } }));
    const bus = h.registry.bus;
    await bus.publish(
      createEvent("run.started", { taskId: task.id, producer: "runner", attempt: 1, data: { runnerId: "runner-a", agentKind: "script" } }),
    );
    await bus.publish(
      createEvent("run.finished", { taskId: task.id, producer: "runner", attempt: 1, data: { status: "succeeded", durationMs: 10 } }),
    );
    await projected(task.id, (v) => v.status === "succeeded");
    const page = await newPage();
    await signIn(page);
    await page.goto(`${h.url}/tasks/${task.id}`);
    await page.getByText("This task does not push its change").waitFor();
    expect(await page.getByRole("button", { name: "Send follow-up" }).count()).toBe(0);
    await context.close();
  });

  it("says so when a task does not exist or belongs to another tenant", async () => {
    const foreign = await submitViaApi(spec({ title: "not yours" }), TOKENS.other);
    const page = await newPage();
    await signIn(page);
    await page.goto(`${h.url}/tasks/${foreign.id}`);
    const alert = page.getByRole("alert");
    await alert.waitFor();
    expect(await alert.textContent()).toContain("task_not_found");
    await context.close();
  });
});

describe("dashboard: fleet", () => {
  it("shows the tenant's running and queued tasks, the queue, and throughput as a chart", async () => {
    const page = await newPage();
    await signIn(page, TOKENS.other);
    await page.getByRole("link", { name: "Fleet", exact: true }).click();
    await page.getByRole("heading", { name: "Fleet" }).waitFor();
    const fleet = (await api<{ tasks: { queued: number } }>("GET", "/v1/fleet", TOKENS.other)).body;
    await page
      .locator('[data-stat="queued"]')
      .filter({ hasText: String(fleet.tasks.queued) })
      .waitFor();
    expect(await page.getByText("tenant other").count()).toBe(1);
    const chart = page.getByRole("img", { name: /In the last hour: \d+ submitted/ });
    await chart.waitFor();
    await context.close();
  });
});

describe("dashboard: phone width and accessibility", () => {
  it("fits a 390 px screen without sideways scrolling and names every control", async () => {
    const task = await submitViaApi(spec({ title: "seen on a phone" }));
    const page = await newPage({ width: 390, height: 844 });
    await signIn(page);
    await page.locator(`tr[data-task-id="${task.id}"]`).waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    // the table is a list of cards: the column headers are visually hidden, each cell says what it is
    expect((await page.locator("table.tasks thead").boundingBox())?.width).toBeLessThanOrEqual(1);
    for (const path of ["/tasks", `/tasks/${task.id}`, "/submit", "/fleet"]) {
      await page.goto(`${h.url}${path}`);
      await page.locator("h1").first().waitFor();
      await page.waitForTimeout(300);
      expect(await page.evaluate(() => document.documentElement.scrollWidth), path).toBeLessThanOrEqual(390);
      const unnamed = await page.evaluate(() =>
        [...document.querySelectorAll("button, input, select, textarea, a[href]")]
          .filter((el) => {
            const e = el as HTMLElement & { labels?: NodeListOf<HTMLLabelElement> };
            const name = e.getAttribute("aria-label") || e.textContent?.trim() || (e.labels && e.labels.length > 0 ? "label" : "");
            return !name;
          })
          .map((el) => el.outerHTML.slice(0, 80)),
      );
      expect(unnamed, path).toEqual([]);
    }
    await context.close();
  });
});

function rawGet(base: string, path: string): Promise<{ status: number; type: string; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"] ?? ""), body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("dashboard: static files", () => {
  it("serves the build with content types, caching and security headers, the page for client routes, and nothing else", async () => {
    const index = await fetch(`${h.url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(index.headers.get("cache-control")).toBe("no-cache");
    expect(index.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(index.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await index.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    expect(html).not.toMatch(/https?:\/\//); // nothing from elsewhere
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeDefined();
    const js = await fetch(`${h.url}${asset}`);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");

    const route = await fetch(`${h.url}/tasks/tsk_anything`);
    expect(route.status).toBe(200);
    expect(await route.text()).toBe(html);
    // sent as they are (fetch would normalise the dots away)
    for (const path of [
      "/assets/missing-abcdefgh.js",
      "/v1/nope",
      "/../../package.json",
      "/%2e%2e/%2e%2e/etc/passwd",
      "/assets/..%2f..%2f..%2fpackage.json",
      "/assets/%2e%2e/index.html",
      "/index.html%00.js",
    ]) {
      const res = await rawGet(`${h.url}`, path);
      expect(res.status, path).toBe(404);
      expect(res.type, path).toContain("application/problem+json");
      expect(res.body, path).not.toContain('"workspaces"');
    }
    // the API is untouched: still behind its token
    expect((await fetch(`${h.url}/v1/tasks`)).status).toBe(401);
    expect(await (await fetch(`${h.url}/dashboard-config.json`)).json()).toEqual({ jaegerUrl: h.jaegerUrl });
  });
});

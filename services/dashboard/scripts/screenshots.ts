/**
 * Screenshots of the dashboard for the docs (docs/images/dashboard-*.png): the registry serving a
 * fresh build, with the artifact-store, on NATS and PostgreSQL started the way the tests start them
 * (local binaries, else containers). There is no runner here: what a runner would publish for the
 * tasks that "ran" (run.started, phases, log chunks, the diff, run.finished) is published by this
 * script on the bus and through the artifact-store's API, so every number on the pages is what the
 * registry computed from those events.
 *
 *   npm run screenshots:dashboard
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createEvent, type EventType, type TaskSpec, type TaskView } from "@codefleet/contracts";
import { contextFromFields } from "@codefleet/contracts/bus";
import { startDashboardHarness, TOKENS } from "@codefleet/test/browser";
import { REPO_ROOT, startNats, startPostgres, waitFor } from "@codefleet/test/support";

const out = join(REPO_ROOT, "docs/images");
mkdirSync(out, { recursive: true });
const [nats, postgres] = [await startNats(), await startPostgres()];
const h = await startDashboardHarness({ natsUrl: nats.url, databaseUrl: postgres.url });

async function api<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${h.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKENS.admin}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function until(id: string, ok: (v: TaskView) => boolean): Promise<void> {
  await waitFor(
    `task ${id}`,
    async () => {
      const v = await api<TaskView>("GET", `/v1/tasks/${id}`).catch(() => undefined);
      return v !== undefined && ok(v);
    },
    20_000,
    100,
  );
}

const sample = (title: string, over: Partial<TaskSpec> = {}): TaskSpec => ({
  repo: { url: "git://git-server:9418/sample.git", ref: "main" },
  title,
  prompt: title,
  agent: { kind: "script", steps: [{ run: "true" }] },
  test: { command: "sh test.sh" },
  ...over,
});

const submit = async (spec: TaskSpec) => {
  const t = await api<TaskView>("POST", "/v1/tasks", spec);
  await until(t.id, () => true);
  return t.id;
};

/** Publishes what a runner publishes while it runs a task, phase by phase. */
async function run(
  id: string,
  opts: { ok: boolean; runner: string; diff?: string; log: string[]; usage?: Record<string, number>; finish?: boolean },
) {
  const bus = h.registry.bus;
  const ctx = contextFromFields({
    traceparent: `00-${id
      .slice(4, 36)
      .toLowerCase()
      .padEnd(32, "0")
      .replace(/[^0-9a-f]/g, "a")}-00f067aa0ba902b7-01`,
  });
  const pub = (type: EventType, data: unknown) =>
    bus.publish(createEvent(type, { taskId: id, producer: "runner", attempt: 1, data: data as never }), { ctx });
  let seq = 1;
  const log = (text: string, phase?: "fetch" | "implement" | "test" | "push") =>
    bus.publishLog({
      taskId: id,
      attempt: 1,
      seq: seq++,
      stream: "stdout",
      text,
      at: new Date().toISOString(),
      ...(phase ? { phase } : {}),
    });
  await pub("run.started", { runnerId: opts.runner, agentKind: "script" });
  await pub("slot.allocated", {
    slotId: `slot_${id.slice(4)}`,
    repoUrl: "git://git-server:9418/sample.git",
    ref: "main",
    leaseExpiresAt: new Date(Date.now() + 600_000).toISOString(),
    warm: true,
  });
  const phases: [string, number, Record<string, string | number | boolean>][] = [
    ["fetch", 180, { warm: true }],
    ["implement", 2400, opts.usage ?? {}],
    ["test", 900, opts.ok ? { tests: 3, passed: 3, failed: 0 } : { tests: 3, passed: 2, failed: 1 }],
    ["push", 350, {}],
  ];
  for (const [i, [phase, ms, facts]] of phases.entries()) {
    if (opts.finish === false && phase === "test") return;
    await pub("phase.started", { phase });
    const line = opts.log[i];
    if (line) await log(line, phase as "fetch");
    const failed = !opts.ok && phase === "test";
    await pub("phase.finished", {
      phase,
      outcome: failed ? "failed" : "succeeded",
      durationMs: ms,
      ...(phase === "test" ? { exitCode: failed ? 1 : 0 } : {}),
      ...(Object.keys(facts).length ? { facts } : {}),
    });
    if (failed) break;
  }
  if (opts.diff) {
    const res = await fetch(`${h.storeUrl}/v1/tasks/${id}/attempts/1/artifacts?name=changes.diff&kind=diff`, {
      method: "PUT",
      headers: { authorization: `Bearer ${TOKENS.runner}`, "content-type": "text/x-diff" },
      body: opts.diff,
    });
    if (res.status >= 300) throw new Error(`upload: ${res.status}`);
  }
  await pub(
    "run.finished",
    opts.ok
      ? { status: "succeeded", durationMs: 3830, branch: `codefleet/${id}` }
      : { status: "failed", durationMs: 3480, reason: "1 of 3 tests failed", reasonCode: "test_failed" },
  );
  await until(id, (v) => v.status === (opts.ok ? "succeeded" : "failed") && (!opts.diff || v.artifacts.length > 0));
}

const demoDiff = [
  "diff --git a/greet.sh b/greet.sh",
  "index 3b18e51..9d1f2c4 100755",
  "--- a/greet.sh",
  "+++ b/greet.sh",
  "@@ -1,2 +1,2 @@",
  " #!/bin/sh",
  '-echo "hello"',
  '+echo "hello from codefleet"',
  "diff --git a/src/greeting.ts b/src/greeting.ts",
  "new file mode 100644",
  "--- /dev/null",
  "+++ b/src/greeting.ts",
  "@@ -0,0 +1,6 @@",
  "+/** The greeting the CLI prints. */",
  '+export function greeting(name = "codefleet"): string {',
  '+  const when = new Date().getHours() < 12 ? "morning" : "day";',
  "+  return `hello from ${name}, good ${when}`;",
  "+}",
  "+",
  "",
].join("\n");

// a small fleet's afternoon
await submit(sample("Bump lodash to 4.17.21", { labels: { team: "web" }, agent: { kind: "openai", model: "gpt-4.1-mini" } }));
const failing = await submit(sample("Fix flaky date test in utils", { labels: { team: "core" } }));
await run(failing, { ok: false, runner: "runner-2", log: ["fetched 1a2b3c4\n", "patched src/date.ts\n", "not ok 3 - parses ISO weeks\n"] });
const running = await submit(
  sample("Add retry to the HTTP client", { labels: { team: "core", priority: "high" }, agent: { kind: "claude-code" } }),
);
await run(running, { ok: true, runner: "runner-1", finish: false, log: ["fetched 1a2b3c4\n", "claude-code: reading src/http.ts…\n"] });
const canceled = await submit(sample("Rename config keys", { labels: { team: "platform" } }));
await api("POST", `/v1/tasks/${canceled}/cancel`, { reason: "superseded by #212" });
await until(canceled, (v) => v.status === "canceled");
const demo = await submit(
  sample("Make the greeting mention codefleet", {
    prompt: "Change greet.sh so that the greeting it prints mentions codefleet. Keep it a POSIX shell script.",
    agent: { kind: "script", steps: [{ run: "printf '#!/bin/sh\\necho \"hello from codefleet\"\\n' > greet.sh" }] },
    labels: { demo: "true" },
  }),
);
await run(demo, {
  ok: true,
  runner: "runner-1",
  diff: demoDiff,
  usage: { inputTokens: 1840, outputTokens: 312, turns: 2 },
  log: [
    "fetch: base 3b18e51 (warm slot, warm container)\n",
    "$ printf '#!/bin/sh\\necho \"hello from codefleet\"\\n' > greet.sh\n",
    "$ sh test.sh\nok 1 - greet.sh prints a greeting\nok 2 - it mentions codefleet\nok 3 - it is a POSIX script\n",
    "pushed 9d1f2c4 to codefleet/" + demo + "\n",
  ],
});
await submit(sample("Document the release process", { labels: { team: "docs" } }));

const context = await h.browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
const page = await context.newPage();
await page.goto(`${h.url}/`);
await page.getByLabel("API token").fill(TOKENS.admin);
await page.getByRole("button", { name: "Sign in" }).click();
await page.locator(`tr[data-task-id="${demo}"]`).waitFor();
await page.screenshot({ path: join(out, "dashboard-tasks.png") });

await page.goto(`${h.url}/tasks/${demo}`);
await page.getByRole("region", { name: "Diff of greet.sh" }).waitFor();
await page.locator('[data-log-state="ended"]').waitFor();
await page
  .getByRole("navigation", { name: "Changed files" })
  .getByRole("button", { name: /src\/greeting\.ts/ })
  .click();
await page.getByRole("region", { name: "Diff of src/greeting.ts" }).waitFor();
await page.screenshot({ path: join(out, "dashboard-task.png"), fullPage: true });

await page.goto(`${h.url}/fleet`);
await page.getByRole("img", { name: /In the last hour/ }).waitFor();
await page.screenshot({ path: join(out, "dashboard-fleet.png") });

const phone = await h.browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
const p2 = await phone.newPage();
await p2.goto(`${h.url}/`);
await p2.getByLabel("API token").fill(TOKENS.admin);
await p2.getByRole("button", { name: "Sign in" }).click();
await p2.locator(`tr[data-task-id="${demo}"]`).waitFor();
await p2.screenshot({ path: join(out, "dashboard-tasks-phone.png") });

await context.close();
await phone.close();
await h.stop();
await Promise.allSettled([nats.stop(), postgres.stop()]);
process.stdout.write(`screenshots in ${out}\n`);

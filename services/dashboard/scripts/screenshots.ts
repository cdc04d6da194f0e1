/**
 * Screenshots of the dashboard for the docs (docs/images/dashboard-*.png), of real runs: the compose
 * stack (deploy/stack.sh, the offline images when built) runs a few tasks through the real runner,
 * the built-in agent against a scripted OpenAI-compatible model on this host (through the runner's
 * LLM gateway, with a price table, so usage and cost are the gateway's), then Chromium takes the
 * tasks page, a task page, the fleet page and the tasks page at phone width. Needs Docker.
 *
 *   npm run screenshots:dashboard
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { TaskSpec, TaskView } from "@codefleet/contracts";
import { REPO_ROOT, startScriptedOpenAI, startStack, waitFor } from "@codefleet/test/support";
import { chromium } from "playwright-core";

const out = join(REPO_ROOT, "docs/images");
mkdirSync(out, { recursive: true });
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

// the model: writes two files with tool calls, then answers; the runner holds the key, the gateway prices the calls
const llm = await startScriptedOpenAI((req) => {
  const done = req.messages.filter((m) => m.role === "tool").length;
  if (done === 0)
    return {
      toolCalls: [
        {
          name: "write_file",
          arguments: {
            path: "retry.sh",
            content: '#!/bin/sh\n# retry CMD...: up to 3 tries, 1 s apart\nfor i in 1 2 3; do "$@" && exit 0; sleep 1; done\nexit 1\n',
          },
        },
      ],
    };
  if (done === 1)
    return { toolCalls: [{ name: "write_file", arguments: { path: "greet.sh", content: '#!/bin/sh\necho "hello from codefleet"\n' } }] };
  return { content: "Added retry.sh and made the greeting mention codefleet; test.sh passes." };
}, "0.0.0.0");
process.env.OPENAI_API_KEY = "sk-screenshots-scripted-0123456789";
process.env.LLM_PRICES = JSON.stringify({ "gpt-4.1-mini": { inputPerMTok: 0.4, outputPerMTok: 1.6 } });
const stack = await startStack();

try {
  const api = async <T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${stack.registryUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${stack.token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  const until = async (id: string, ok: (v: TaskView) => boolean) =>
    waitFor(`task ${id}`, async () => ok(await api<TaskView>("GET", `/v1/tasks/${id}`)), 180_000, 500);
  const sample = (title: string, over: Partial<TaskSpec>): TaskSpec => ({
    repo: { url: "git://git-server:9418/sample.git", ref: "main" },
    title,
    prompt: title,
    agent: { kind: "script", steps: [{ run: "true" }] },
    test: { command: "sh test.sh" },
    ...over,
  });
  const submit = async (spec: TaskSpec) => (await api<TaskView>("POST", "/v1/tasks", spec)).id;
  const port = new URL(llm.url).port;

  const failing = await submit(
    sample("Make the greeting shout", {
      agent: { kind: "script", steps: [{ run: "echo 'echo HELLO' > greet.sh" }] },
      labels: { team: "core" },
    }),
  );
  const modelTask = await submit(
    sample("Add a retry helper and fix the greeting", {
      agent: { kind: "openai", model: "gpt-4.1-mini", baseUrl: `http://host.docker.internal:${port}/v1` },
      test: { command: "sh -n retry.sh && sh test.sh" },
      labels: { team: "platform" },
    }),
  );
  const demo = await submit(
    sample("Make the greeting mention codefleet", {
      prompt: "Change greet.sh so that the greeting it prints mentions codefleet. Keep it a POSIX shell script.",
      agent: { kind: "script", steps: [{ run: "printf '#!/bin/sh\\necho \"hello from codefleet\"\\n' > greet.sh" }] },
      labels: { demo: "true" },
    }),
  );
  const canceled = await submit(sample("Rename the config keys", { agent: { kind: "script", steps: [{ run: "sleep 600" }] } }));
  for (const id of [failing, modelTask, demo]) await until(id, (v) => !["queued", "running"].includes(v.status) && v.artifacts.length > 0);
  await until(canceled, (v) => v.status === "running");
  await api("POST", `/v1/tasks/${canceled}/cancel`, { reason: "superseded" });
  await until(canceled, (v) => v.status === "canceled");
  const running = await submit(sample("Upgrade the test runner", { agent: { kind: "script", steps: [{ run: "sleep 120" }] } }));
  await until(running, (v) => v.status === "running");

  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: CHROMIUM_ARGS });
  const signIn = async (width: number, height: number) => {
    const page = await (await browser.newContext({ viewport: { width, height } })).newPage();
    await page.goto(`${stack.registryUrl}/`);
    await page.getByLabel("API token").fill(stack.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Tasks", level: 1 }).waitFor();
    await page.waitForTimeout(1000);
    return page;
  };
  const page = await signIn(1280, 800);
  await page.screenshot({ path: join(out, "dashboard-tasks.png") });
  await page.goto(`${stack.registryUrl}/tasks/${modelTask}`);
  await page.getByRole("navigation", { name: "Changed files" }).waitFor();
  await page.locator('[data-log-state="ended"]').waitFor();
  await page.screenshot({ path: join(out, "dashboard-task.png"), fullPage: true });
  await page.goto(`${stack.registryUrl}/fleet`);
  await page.getByRole("heading", { name: "Runners" }).waitFor();
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(out, "dashboard-fleet.png"), fullPage: true });
  const phone = await signIn(390, 844);
  await phone.screenshot({ path: join(out, "dashboard-tasks-phone.png"), fullPage: true });
  await browser.close();
  await api("POST", `/v1/tasks/${running}/cancel`, {});
  process.stdout.write(`screenshots in ${out}\n`);
} finally {
  await stack.down();
  await llm.stop();
}
process.exit(0);

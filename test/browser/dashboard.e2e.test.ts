import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, type Stack, startStack } from "@codefleet/test/support";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { CHROMIUM_ARGS } from "./harness.js";

/**
 * The dashboard against the compose stack, with a runner: the demo task submitted through the
 * form reaches `succeeded` live on its page, its diff opens, and a long task is canceled while it
 * runs. Needs the services image to carry the dashboard's build (services/dashboard/dist).
 */

type DemoTask = {
  repo: { url: string; ref: string };
  title: string;
  prompt: string;
  agent: { steps: { run: string }[] };
  test: { command: string };
  labels: Record<string, string>;
};

let stack: Stack;
let browser: Browser;

beforeAll(async () => {
  stack = await startStack();
  const index = await fetch(`${stack.registryUrl}/`);
  if (index.status !== 200 || !(index.headers.get("content-type") ?? "").startsWith("text/html"))
    throw new Error(`the stack's registry serves no dashboard at / (HTTP ${index.status}): the services image needs the dashboard's build`);
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: CHROMIUM_ARGS });
});

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await stack?.down();
});

async function signedIn(): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(`${stack.registryUrl}/`);
  await page.getByLabel("API token").fill(stack.token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Tasks", level: 1 }).waitFor();
  return page;
}

async function fillForm(
  page: Page,
  t: {
    title: string;
    prompt: string;
    repo: { url: string; ref: string };
    steps: string[];
    test?: string;
    labels?: string;
    timeout?: string;
  },
) {
  await page.getByRole("link", { name: "Submit", exact: true }).click();
  await page.getByLabel("Title").fill(t.title);
  await page.getByLabel("Prompt").fill(t.prompt);
  await page.getByLabel("Repository URL").fill(t.repo.url);
  await page.getByLabel("Ref").fill(t.repo.ref);
  await page.getByLabel("Steps").fill(t.steps.join("\n"));
  if (t.test) await page.getByLabel("Test command").fill(t.test);
  if (t.labels) await page.getByLabel("Labels").fill(t.labels);
  if (t.timeout) await page.getByLabel("Timeout (s)").fill(t.timeout);
  await page.getByRole("button", { name: "Submit task" }).click();
  await page.waitForURL(/\/tasks\/tsk_/);
}

describe("dashboard on the compose stack", () => {
  it("submits the demo task, watches it reach succeeded live, and opens its diff", async () => {
    const demo = parse(readFileSync(join(REPO_ROOT, "deploy/demo-task.yaml"), "utf8")) as DemoTask;
    const page = await signedIn();
    await fillForm(page, {
      title: demo.title,
      prompt: demo.prompt,
      repo: demo.repo,
      steps: demo.agent.steps.map((s) => s.run),
      test: demo.test.command,
      labels: Object.entries(demo.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join("\n"),
    });
    await page.getByRole("heading", { name: demo.title }).waitFor();
    // no reload from here on: the page follows the task
    // running may last less than a refresh of the page (a warm container): it is not required to be seen
    await page.locator('.page-head [data-status="running"], .page-head [data-status="succeeded"]').first().waitFor({ timeout: 120_000 });
    await page.locator('.page-head [data-status="succeeded"]').waitFor({ timeout: 180_000 });
    await page.locator('[data-log-state="ended"]').waitFor();
    expect(await page.getByRole("log", { name: "Task log" }).textContent()).not.toBe("(nothing yet)");
    const phases = await page.locator(".timeline .phase").allTextContents();
    expect(phases.map((p) => p.split(/succeeded|skipped|failed/)[0])).toEqual(
      expect.arrayContaining(["fetch", "implement", "test", "push"]),
    );
    const files = page.getByRole("navigation", { name: "Changed files" });
    await files.waitFor({ timeout: 30_000 });
    expect(await files.textContent()).toContain("greet.sh");
    const diff = page.getByRole("region", { name: "Diff of greet.sh" });
    expect(await diff.locator(".line.add").allTextContents()).toEqual(
      expect.arrayContaining([expect.stringContaining("hello from codefleet")]),
    );
    // the demo's test prints TAP on stdout and writes no report file: the page says how the command ended
    expect(await page.getByRole("region", { name: "Tests" }).textContent()).toContain("The test command passed (exit code 0)");
    await page.context().close();
  });

  it("cancels a long task while it runs", async () => {
    const page = await signedIn();
    await fillForm(page, {
      title: "a long task to cancel",
      prompt: "sleep",
      repo: { url: "git://git-server:9418/sample.git", ref: "main" },
      steps: ["sleep 600"],
      timeout: "900",
    });
    // running may last less than a refresh of the page (a warm container): it is not required to be seen
    await page.locator('.page-head [data-status="running"], .page-head [data-status="succeeded"]').first().waitFor({ timeout: 120_000 });
    await page.getByRole("button", { name: "Cancel task" }).click();
    await page.getByLabel("Reason (optional)").fill("e2e: cancel while running");
    await page.getByRole("button", { name: "Confirm cancel" }).click();
    await page.getByText("Cancel requested").waitFor();
    await page.locator('.page-head [data-status="canceled"]').waitFor({ timeout: 120_000 });
    await page.context().close();
  });
});

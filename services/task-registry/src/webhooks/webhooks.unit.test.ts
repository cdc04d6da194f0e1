import { createHmac } from "node:crypto";
import type { TaskView } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { deliveryIdFor, judgeAttempt, retryDelayMs, signBody, targetsFor, verifySignature, webhookBody } from "./delivery.js";
import { notificationsFor } from "./outbox.js";
import { signingSecretFor, webhookSettingsFrom } from "./settings.js";

const view = (over: Partial<TaskView> = {}): TaskView =>
  ({
    id: "tsk_1",
    status: "running",
    title: "t",
    repo: { url: "https://x/y.git" },
    agentKind: "script",
    labels: {},
    submittedVia: "http",
    submittedAt: "2026-01-01T00:00:00.000Z",
    tenant: "team-a",
    attempt: 1,
    phases: [],
    attempts: [],
    branch: "codefleet/tsk_1",
    cancelRequested: false,
    artifacts: [],
    version: 3,
    anomalies: 0,
    ...over,
  }) as TaskView;

describe("task-finished notifications", () => {
  it("are due once, when a task reaches a final status", () => {
    const done = view({ status: "succeeded", commitSha: "a".repeat(40), finishedAt: "2026-01-01T00:01:00.000Z" });
    expect(notificationsFor(view(), done)).toEqual([
      {
        kind: "task.finished",
        taskId: "tsk_1",
        tenant: "team-a",
        payload: {
          type: "task.finished",
          taskId: "tsk_1",
          status: "succeeded",
          tenant: "team-a",
          title: "t",
          branch: "codefleet/tsk_1",
          commit: "a".repeat(40),
          finishedAt: "2026-01-01T00:01:00.000Z",
        },
      },
    ]);
    expect(notificationsFor(done, { ...done, version: 4 })).toEqual([]); // already final: e.g. a webhook event
    expect(notificationsFor(undefined, view({ status: "queued" }))).toEqual([]);
  });
  it("carry the task's own webhook and the reason code, and no branch without a commit", () => {
    const failed = view({
      status: "failed",
      reasonCode: "test_failed",
      spec: { notify: { url: "https://hooks.example/x" } } as TaskView["spec"],
    });
    const [n] = notificationsFor(view(), failed);
    expect(n?.notifyUrl).toBe("https://hooks.example/x");
    expect(n?.payload).toMatchObject({ status: "failed", reasonCode: "test_failed" });
    expect(n?.payload).not.toHaveProperty("branch");
    expect(notificationsFor(undefined, view({ status: "rejected" }))).toHaveLength(1); // a rejected bus submission
  });
});

describe("pull-request-opened notifications", () => {
  const pr = { url: "https://github.com/acme/app/pull/7", number: 7 };
  it("are due once, when the view first has a pull request, before the task's end", () => {
    const opened = view({ pullRequest: pr, spec: { notify: { url: "https://hooks.example/x" } } as TaskView["spec"] });
    expect(notificationsFor(view(), opened)).toEqual([
      {
        kind: "pull_request.opened",
        taskId: "tsk_1",
        tenant: "team-a",
        notifyUrl: "https://hooks.example/x",
        payload: { type: "pull_request.opened", taskId: "tsk_1", tenant: "team-a", title: "t", branch: "codefleet/tsk_1", pullRequest: pr },
      },
    ]);
    expect(notificationsFor(opened, { ...opened, version: 4 })).toEqual([]); // a redelivered push updates the same one
    // opened and finished in one batch: both, the pull request first
    const both = notificationsFor(view(), view({ status: "succeeded", pullRequest: pr }));
    expect(both.map((n) => n.kind)).toEqual(["pull_request.opened", "task.finished"]);
  });
});

describe("the webhook protocol", () => {
  it("signs the raw body with HMAC-SHA256 and verifies in constant time", () => {
    const body = webhookBody(
      { type: "task.finished", taskId: "tsk_1", status: "succeeded", tenant: "team-a", title: "t" },
      { deliveryId: "whd_1", publicUrl: "https://cf.example", sentAt: new Date("2026-01-01T00:00:00Z") },
    );
    expect(JSON.parse(body)).toMatchObject({
      url: "https://cf.example/v1/tasks/tsk_1",
      deliveryId: "whd_1",
      sentAt: "2026-01-01T00:00:00.000Z",
    });
    const sig = signBody("s3cret-s3cret-s3cret", body);
    expect(sig).toBe(`sha256=${createHmac("sha256", "s3cret-s3cret-s3cret").update(body).digest("hex")}`);
    expect(verifySignature("s3cret-s3cret-s3cret", body, sig)).toBe(true);
    expect(verifySignature("other-secret-0000000", body, sig)).toBe(false);
    expect(verifySignature("s3cret-s3cret-s3cret", `${body} `, sig)).toBe(false);
    expect(verifySignature("s3cret-s3cret-s3cret", body, undefined)).toBe(false);
  });
  it("keys a delivery by notification and target, and sends one URL once", () => {
    expect(deliveryIdFor("task.finished", "tsk_1", "task")).toBe(deliveryIdFor("task.finished", "tsk_1", "task"));
    expect(deliveryIdFor("task.finished", "tsk_1", "task")).not.toBe(deliveryIdFor("task.finished", "tsk_1", "tenant"));
    expect(targetsFor("https://a/x", "https://b/y")).toEqual([
      { target: "task", url: "https://a/x" },
      { target: "tenant", url: "https://b/y" },
    ]);
    expect(targetsFor("https://a/x", "https://a/x")).toEqual([{ target: "task", url: "https://a/x" }]);
    expect(targetsFor(undefined, undefined)).toEqual([]);
  });
  it("delivers on 2xx, retries 5xx/408/429/timeouts with backoff up to the last attempt, gives up on other answers", () => {
    const opts = { maxAttempts: 3, retryBaseMs: 1000, retryMaxMs: 3000, now: new Date("2026-01-01T00:00:00Z") };
    expect(judgeAttempt({ kind: "response", statusCode: 204 }, 1, opts)).toEqual({ state: "delivered" });
    expect(judgeAttempt({ kind: "response", statusCode: 500 }, 1, opts)).toEqual({
      state: "pending",
      code: "http_500",
      nextAttemptAt: new Date("2026-01-01T00:00:01Z"),
    });
    expect(judgeAttempt({ kind: "response", statusCode: 429 }, 2, opts)).toMatchObject({
      state: "pending",
      nextAttemptAt: new Date("2026-01-01T00:00:02Z"),
    });
    expect(judgeAttempt({ kind: "response", statusCode: 503 }, 3, opts)).toEqual({ state: "failed", code: "http_503" });
    expect(judgeAttempt({ kind: "response", statusCode: 404 }, 1, opts)).toEqual({ state: "failed", code: "http_404" });
    expect(judgeAttempt({ kind: "error", code: "timeout", retryable: true }, 1, opts)).toMatchObject({ state: "pending", code: "timeout" });
    expect(judgeAttempt({ kind: "error", code: "address_refused", retryable: false }, 1, opts)).toEqual({
      state: "failed",
      code: "address_refused",
    });
    expect([1, 2, 3, 4, 10].map((n) => retryDelayMs(n, 1000, 5000))).toEqual([1000, 2000, 4000, 5000, 5000]);
  });
});

describe("webhook settings", () => {
  const env = {
    REGISTRY_PUBLIC_URL: "https://cf.example/",
    WEBHOOK_MAX_ATTEMPTS: 8,
    WEBHOOK_RETRY_BASE_MS: 1000,
    WEBHOOK_RETRY_MAX_MS: 60_000,
    WEBHOOK_TIMEOUT_MS: 5000,
    WEBHOOK_POLL_MS: 1000,
  };
  const files: Record<string, string> = {
    "/etc/hooks.yaml": [
      "secretFile: /run/secrets/default",
      "tenants:",
      "  team-a: { url: 'https://hooks.team-a.example/cf', secret: 'team-a-secret-0123456789' }",
      "  team-b: { url: 'https://hooks.team-b.example/cf' }",
      "",
    ].join("\n"),
    "/run/secrets/default": "default-secret-0123456789\n",
    "/etc/bad.yaml": "tenants:\n  team-a: { url: 'ftp://x', secret: 'short' }\n",
  };
  const read = (p: string) => {
    const t = files[p];
    if (t === undefined) throw new Error(`ENOENT ${p}`);
    return t;
  };
  it("reads tenants' URLs and secrets, falling back to the default secret", () => {
    const s = webhookSettingsFrom({ ...env, CODEFLEET_WEBHOOKS_FILE: "/etc/hooks.yaml" }, read);
    expect(s.publicUrl).toBe("https://cf.example");
    expect(s.tenants["team-a"]?.url).toBe("https://hooks.team-a.example/cf");
    expect(signingSecretFor(s, "team-a")).toBe("team-a-secret-0123456789");
    expect(signingSecretFor(s, "team-b")).toBe("default-secret-0123456789");
    expect(signingSecretFor(s, "other")).toBe("default-secret-0123456789");
    expect(signingSecretFor(webhookSettingsFrom(env, read), "team-a")).toBeUndefined();
  });
  it("fails fast on a bad file, without echoing secrets", () => {
    let message = "";
    try {
      webhookSettingsFrom({ ...env, CODEFLEET_WEBHOOKS_FILE: "/etc/bad.yaml" }, read);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/CODEFLEET_WEBHOOKS_FILE \/etc\/bad.yaml: \/tenants\/team-a/);
    expect(message).not.toContain("short");
  });
});

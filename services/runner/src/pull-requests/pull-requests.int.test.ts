import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { type EventData, type PullRequestSpec, resolveTaskSpec, type TaskSpec, validateEventData } from "@codefleet/contracts";
import { SecretMasker } from "@codefleet/platform/runtime";
import { afterEach, describe, expect, it } from "vitest";
import type { PhaseContext, PhaseReport } from "../phases/phase.js";
import { SecretResolver } from "../secrets.js";
import { openOrUpdate } from "./forge.js";
import { checkGitHubRequest, type ForgeServer, startGiteaServer, startGitHubServer, startGitLabServer } from "./forge-servers.test.js";
import { type ForgeHttpOptions, PullRequestError, type RetryPolicy } from "./http.js";
import { openPullRequestFor, pullRequestServices } from "./open.js";
import { createForge } from "./providers.js";

// Real HTTP all the way: the official clients (Octokit, Gitbeaker) and undici talk to local
// servers that play the providers and check every request against the provider's API description.

const TOKEN = "ghp_T0k3nThatMustNeverShowUp0123456789";
const BRANCH = "codefleet/tsk_01KA0000000000000000000001";
const servers: ForgeServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    expect(s.problems, "requests that do not conform to the provider's API").toEqual([]);
    await s.close();
  }
});
const track = <T extends ForgeServer>(s: T) => {
  servers.push(s);
  return s;
};

const http = (over: Partial<ForgeHttpOptions> = {}): ForgeHttpOptions => ({
  timeoutMs: 2000,
  maxResponseBytes: 1 << 20,
  scrub: [TOKEN],
  ...over,
});
const fast: RetryPolicy = { retries: 3, baseDelayMs: 10, maxDelayMs: 50, maxRetryAfterMs: 5000 };
const content = (title = "Fix the flaky date test") => ({ head: BRANCH, title, body: `body of ${title}`, draft: false });
const prSpec = (over: Partial<PullRequestSpec>, server: ForgeServer): PullRequestSpec => ({
  provider: "github",
  repository: "acme/app",
  tokenSecret: "GH_TOKEN",
  apiUrl: server.apiUrl,
  ...over,
});

describe("GitHub through Octokit (requests checked against @octokit/openapi)", () => {
  it("opens the pull request once; a second call (a redelivered push) updates it instead of opening another", async () => {
    const gh = track(await startGitHubServer({ token: TOKEN }));
    const forge = createForge(prSpec({}, gh), TOKEN, http());
    const first = await openOrUpdate(forge, { ...content(), base: "main" }, fast);
    expect(first).toEqual({ url: "https://github.example/acme/app/pull/1", number: 1, created: true, base: "main" });
    const second = await openOrUpdate(forge, { ...content("Fix the flaky date test (again)"), base: "main" }, fast);
    expect(second).toEqual({ ...first, created: false });
    expect(gh.pulls).toHaveLength(1);
    expect(gh.pulls[0]).toMatchObject({
      head: BRANCH,
      base: "main",
      title: "Fix the flaky date test (again)",
      draft: false,
      state: "open",
    });
    expect(gh.requests.map((r) => r.operation)).toEqual(["pulls/list", "pulls/create", "pulls/list", "pulls/update"]);
    expect(gh.requests[0]?.query).toMatchObject({ state: "open", head: `acme:${BRANCH}` });
    expect(gh.requests[1]?.body).toEqual({
      title: "Fix the flaky date test",
      head: BRANCH,
      base: "main",
      body: "body of Fix the flaky date test",
      draft: false,
    });
  });

  it("opens a draft when asked, into the repository's default branch when no base is named", async () => {
    const gh = track(await startGitHubServer({ token: TOKEN, defaultBranch: "develop" }));
    const r = await openOrUpdate(createForge(prSpec({}, gh), TOKEN, http()), { ...content(), draft: true }, fast);
    expect(r).toMatchObject({ created: true, base: "develop" });
    expect(gh.requests.map((x) => x.operation)).toEqual(["repos/get", "pulls/list", "pulls/create"]);
    expect(gh.pulls[0]).toMatchObject({ base: "develop", draft: true });
  });

  it("a refused token is a clear error, never retried, and the token is in no message", async () => {
    const gh = track(await startGitHubServer({ token: "the-right-token-0000" }));
    const err = await openOrUpdate(createForge(prSpec({}, gh), TOKEN, http()), { ...content(), base: "main" }, fast).catch((e) => e);
    expect(err).toBeInstanceOf(PullRequestError);
    expect(err).toMatchObject({ status: 401, code: "pull_request_failed", retry: { kind: "never" } });
    expect(err.message).toContain("401 Bad credentials");
    expect(JSON.stringify({ message: err.message, stack: err.stack, details: err.details })).not.toContain(TOKEN);
    expect(gh.requests).toHaveLength(1);
    expect(gh.requests[0]?.headers.authorization).toBe(`token ${TOKEN}`); // it was sent, to the API only
  });

  it("waits as a 429's Retry-After says, then goes on; a 5xx is retried a bounded number of times", async () => {
    const gh = track(await startGitHubServer({ token: TOKEN }));
    gh.inject({ method: "POST", path: "/pulls" }, { status: 429, headers: { "retry-after": "1" }, body: { message: "slow down" } });
    const t0 = Date.now();
    const r = await openOrUpdate(createForge(prSpec({}, gh), TOKEN, http()), { ...content(), base: "main" }, fast);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(r).toMatchObject({ number: 1, created: true });
    expect(gh.requests.filter((x) => x.method === "POST")).toHaveLength(2);
    expect(gh.pulls).toHaveLength(1);

    gh.inject({ method: "GET" }, { status: 502, body: "bad gateway" }, 100);
    const err = await openOrUpdate(createForge(prSpec({}, gh), TOKEN, http()), { ...content(), base: "main" }, fast).catch((e) => e);
    expect(err).toMatchObject({ status: 502, retry: { kind: "backoff" } });
    expect(gh.requests.length).toBe(3 + 4); // the first call's three, then one try and three retries of the lookup
  });

  it("a create whose answer was lost is found on the retry, not opened twice", async () => {
    const gh = track(await startGitHubServer({ token: TOKEN }));
    gh.inject({ method: "POST", path: "/pulls" }, { status: 502, body: "upstream hiccup", applied: true });
    const r = await openOrUpdate(createForge(prSpec({}, gh), TOKEN, http()), { ...content(), base: "main" }, fast);
    expect(r).toMatchObject({ number: 1, created: false });
    expect(gh.pulls).toHaveLength(1);
    expect(gh.requests.map((x) => x.operation)).toEqual(["pulls/list", "pulls/create", "pulls/create", "pulls/list", "pulls/update"]);
  });

  it("bounds time and answers, and never follows a redirect (the token stays with the API)", async () => {
    const gh = track(await startGitHubServer({ token: TOKEN }));
    gh.inject({ method: "GET" }, { status: 200, body: [], delayMs: 1500 });
    const t0 = Date.now();
    const r = await openOrUpdate(createForge(prSpec({}, gh), TOKEN, http({ timeoutMs: 300 })), { ...content(), base: "main" }, fast);
    expect(r.created).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1400);

    gh.inject({ method: "GET" }, { status: 200, body: "x".repeat(200_000) });
    const big = await openOrUpdate(createForge(prSpec({}, gh), TOKEN, http({ maxResponseBytes: 64 * 1024 })), content(), fast).catch(
      (e) => e,
    );
    expect(big).toMatchObject({ retry: { kind: "never" } });
    expect(big.message).toContain("larger than 65536 bytes");

    const seen: string[] = [];
    const elsewhere = createServer((req, res) => {
      seen.push(`${req.url} ${req.headers.authorization ?? ""}`);
      res.end("[]");
    });
    await new Promise<void>((ok) => elsewhere.listen(0, "127.0.0.1", ok));
    const port = (elsewhere.address() as AddressInfo).port;
    gh.inject({ method: "GET" }, { status: 302, headers: { location: `http://127.0.0.1:${port}/steal` } });
    const moved = await openOrUpdate(createForge(prSpec({}, gh), TOKEN, http()), { ...content(), base: "main" }, fast).catch((e) => e);
    elsewhere.close();
    expect(moved.message).toContain("a redirect, which is not followed");
    expect(seen).toEqual([]);
  });

  it("the checker itself refuses what GitHub's description does not allow", async () => {
    const gh = await startGitHubServer({ token: TOKEN });
    const post = await fetch(`${gh.apiUrl}/repos/acme/app/pulls`, {
      method: "POST",
      headers: { authorization: `token ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ head: 7, base: "main", titel: "typo", draft: "yes" }),
    });
    expect(post.status).toBe(400);
    await fetch(`${gh.apiUrl}/repos/acme/app/pullz?state=open`, { headers: { authorization: `token ${TOKEN}` } });
    await fetch(`${gh.apiUrl}/repos/acme/app/pulls?state=opened&per_page=ten`, { headers: { authorization: `token ${TOKEN}` } });
    await gh.close();
    expect(gh.problems.join("\n")).toMatch(/head: integer, the schema says string/);
    expect(gh.problems.join("\n")).toMatch(/field 'titel' is not in the operation's schema/);
    expect(gh.problems.join("\n")).toMatch(/draft: string, the schema says boolean/);
    expect(gh.problems.join("\n")).toMatch(/pullz: no such path/);
    expect(gh.problems.join("\n")).toMatch(/state=opened: not one of open, closed, all/);
    expect(gh.problems.join("\n")).toMatch(/per_page=ten: not an integer/);
    expect(checkGitHubRequest({ method: "DELETE", path: "/repos/a/b/pulls", query: {}, headers: {}, body: undefined }).problems).toEqual([
      "DELETE /repos/a/b/pulls: GitHub's /repos/{owner}/{repo}/pulls has no DELETE",
    ]);
  });
});

describe("GitLab through Gitbeaker (documented paths and fields)", () => {
  it("opens the merge request of a nested project once, then updates it; a draft is marked in its title and stays marked", async () => {
    const gl = track(await startGitLabServer({ token: TOKEN, project: "acme/platform/app", defaultBranch: "trunk" }));
    const forge = createForge(
      { provider: "gitlab", apiUrl: gl.apiUrl, repository: "acme/platform/app", tokenSecret: "GL_TOKEN" },
      TOKEN,
      http(),
    );
    const first = await openOrUpdate(forge, { ...content(), draft: true }, fast);
    expect(first).toEqual({ url: "https://gitlab.example/acme/platform/app/-/merge_requests/1", number: 1, created: true, base: "trunk" });
    const second = await openOrUpdate(forge, { ...content("Second turn"), draft: true }, fast);
    expect(second).toMatchObject({ number: 1, created: false });
    expect(gl.pulls).toHaveLength(1);
    expect(gl.pulls[0]).toMatchObject({ head: BRANCH, base: "trunk", title: "Draft: Second turn", body: "body of Second turn" });
    expect(gl.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /projects/acme%2Fplatform%2Fapp",
      "GET /projects/acme%2Fplatform%2Fapp/merge_requests",
      "POST /projects/acme%2Fplatform%2Fapp/merge_requests",
      "GET /projects/acme%2Fplatform%2Fapp",
      "GET /projects/acme%2Fplatform%2Fapp/merge_requests",
      "PUT /projects/acme%2Fplatform%2Fapp/merge_requests/1",
    ]);
    expect(gl.requests[1]?.query).toMatchObject({ state: "opened", source_branch: BRANCH, per_page: "20" });
    expect(gl.requests[2]?.body).toEqual({
      source_branch: BRANCH,
      target_branch: "trunk",
      title: `Draft: ${content().title}`,
      description: content().body,
    });
    expect(gl.requests.every((r) => r.headers["private-token"] === TOKEN)).toBe(true);
  });

  it("a 409 (one exists after all) becomes an update; 401 is final and says nothing of the token", async () => {
    const gl = track(await startGitLabServer({ token: TOKEN }));
    const spec: PullRequestSpec = { provider: "gitlab", apiUrl: gl.apiUrl, repository: "acme/platform/app", tokenSecret: "GL_TOKEN" };
    await openOrUpdate(createForge(spec, TOKEN, http()), { ...content(), base: "main" }, fast);
    gl.inject({ method: "GET", path: "/merge_requests" }, { status: 200, body: [] }); // a lookup that misses it
    const r = await openOrUpdate(createForge(spec, TOKEN, http()), { ...content("again"), base: "main" }, fast);
    expect(r).toMatchObject({ number: 1, created: false });
    expect(gl.pulls).toHaveLength(1);
    const err = await openOrUpdate(
      createForge(spec, "glpat-wrong-token-000", http({ scrub: ["glpat-wrong-token-000"] })),
      content(),
      fast,
    ).catch((e) => e);
    expect(err).toMatchObject({ status: 401, retry: { kind: "never" } });
    expect(err.message).not.toContain("glpat-wrong-token-000");
  });
});

describe("Gitea through its REST API (documented paths and fields)", () => {
  it("opens once and updates after; a draft is a WIP: title", async () => {
    const gt = track(await startGiteaServer({ token: TOKEN }));
    const spec: PullRequestSpec = { provider: "gitea", apiUrl: gt.apiUrl, repository: "acme/app", tokenSecret: "GITEA_TOKEN" };
    const first = await openOrUpdate(createForge(spec, TOKEN, http()), { ...content(), draft: true }, fast);
    expect(first).toEqual({ url: "https://gitea.example/acme/app/pulls/1", number: 1, created: true, base: "main" });
    const second = await openOrUpdate(createForge(spec, TOKEN, http()), { ...content("later"), draft: true }, fast);
    expect(second).toMatchObject({ number: 1, created: false });
    expect(gt.pulls).toHaveLength(1);
    expect(gt.pulls[0]?.title).toBe("WIP: later");
    expect(gt.requests.map((r) => r.operation)).toEqual([
      "repoGet",
      "repoGetPullRequestByBaseHead",
      "repoCreatePullRequest",
      "repoGet",
      "repoGetPullRequestByBaseHead",
      "repoEditPullRequest",
    ]);
    expect(gt.requests[1]?.path).toBe(`/repos/acme/app/pulls/main/${BRANCH}`);
  });

  it("an older Gitea (no lookup by base and head) still gets one pull request: the 409 leads to the list", async () => {
    const gt = track(await startGiteaServer({ token: TOKEN, baseHeadLookup: false }));
    const spec: PullRequestSpec = { provider: "gitea", apiUrl: gt.apiUrl, repository: "acme/app", tokenSecret: "GITEA_TOKEN" };
    await openOrUpdate(createForge(spec, TOKEN, http()), { ...content(), base: "main" }, fast);
    const r = await openOrUpdate(createForge(spec, TOKEN, http()), { ...content("redelivered"), base: "main" }, fast);
    expect(r).toMatchObject({ number: 1, created: false });
    expect(gt.pulls).toHaveLength(1);
    expect(gt.pulls[0]?.title).toBe("redelivered");
    expect(gt.requests.slice(3).map((x) => x.operation)).toEqual(["repoCreatePullRequest", "repoListPullRequests", "repoEditPullRequest"]);
  });
});

describe("openPullRequestFor: after the push phase", () => {
  const SHA = "c".repeat(40);
  const DIFF = "diff --git a/a.ts b/a.ts\n--- a/a.ts\n+++ b/a.ts\n@@ -1,2 +1,2 @@\n-old\n+new\n same\n";

  function context(
    server: ForgeServer,
    o: { pullRequest?: Partial<PullRequestSpec>; summary?: string; env?: Record<string, string> } = {},
  ) {
    const published: EventData<"pull_request.opened">[] = [];
    const logs: string[] = [];
    const taskId = "tsk_01KA0000000000000000000001";
    const spec: TaskSpec = {
      repo: { url: "https://github.example/acme/app.git", ref: "main" },
      title: "Fix the flaky date test",
      prompt: "p",
      agent: { kind: "script", steps: [{ run: "true" }] },
      test: { command: "npm test" },
      push: { enabled: true, branch: BRANCH },
      ...(o.pullRequest === undefined ? {} : { pullRequest: { ...prSpec({}, server), ...o.pullRequest } }),
    };
    const ctx = {
      taskId,
      attempt: 1,
      spec: resolveTaskSpec(spec, taskId),
      record: {
        baseSha: "b".repeat(40),
        pushedSha: SHA,
        head: { sha: SHA, workspace: { diff: async (_b: string, _h: string, onChunk: (c: Buffer) => void) => onChunk(Buffer.from(DIFF)) } },
        agentResult: { exitCode: 0, summary: o.summary ?? "Made the date test use a fixed clock." },
        testOutcome: { outcome: "succeeded", detail: "", counts: { total: 3, passed: 3, failed: 0, skipped: 0 } },
      },
      masker: new SecretMasker(),
      log: { system: (m: string) => logs.push(m) },
      signal: new AbortController().signal,
      pullRequests: pullRequestServices({
        secrets: new SecretResolver({ env: o.env ?? { CODEFLEET_SECRET_GH_TOKEN: TOKEN }, tenants: {} }),
        tenant: "default",
        publish: async (data) => {
          validateEventData("pull_request.opened", data);
          published.push(data);
        },
        settings: { publicUrl: "https://codefleet.example", retryBaseMs: 10 },
      }),
    } as unknown as PhaseContext;
    return { ctx, published, logs };
  }
  const pushed: PhaseReport = {
    outcome: "succeeded",
    detail: `pushed ${SHA.slice(0, 12)} to ${BRANCH}`,
    facts: { commitSha: SHA, branch: BRANCH },
  };
  const alreadyPushed: PhaseReport = {
    outcome: "skipped",
    detail: "already pushed by an earlier attempt",
    facts: { commitSha: SHA, branch: BRANCH, alreadyPushed: true },
  };

  it("opens it after a push and publishes pull_request.opened; the redelivered attempt (branch already pushed) updates the same one", async () => {
    const gh = track(await startGitHubServer({ token: TOKEN }));
    const a = context(gh, { pullRequest: {} });
    const report = await openPullRequestFor(a.ctx, pushed);
    expect(report).toEqual({
      outcome: "succeeded",
      detail: `pushed ${SHA.slice(0, 12)} to ${BRANCH}; pull request #1 opened`,
      facts: { commitSha: SHA, branch: BRANCH, pullRequestUrl: "https://github.example/acme/app/pull/1", pullRequestNumber: 1 },
    });
    expect(a.published).toEqual([
      { url: "https://github.example/acme/app/pull/1", number: 1, provider: "github", created: true, head: BRANCH, base: "main" },
    ]);
    const body = gh.pulls[0]?.body ?? "";
    expect(gh.pulls[0]?.title).toBe("Fix the flaky date test");
    expect(body).toContain("Made the date test use a fixed clock.");
    expect(body).toContain("✅ passed: 3 passed, 0 failed, 0 skipped (3 tests)");
    expect(body).toContain("1 file changed, +1 −1");
    expect(body).toContain("https://codefleet.example/tasks/tsk_01KA0000000000000000000001");

    const b = context(gh, { pullRequest: {}, summary: "Second attempt's summary." });
    const again = await openPullRequestFor(b.ctx, alreadyPushed);
    expect(again.outcome).toBe("skipped");
    expect(again.facts?.pullRequestNumber).toBe(1);
    expect(b.published[0]).toMatchObject({ number: 1, created: false });
    expect(gh.pulls).toHaveLength(1);
    expect(gh.pulls[0]?.body).toContain("Second attempt's summary.");
    expect(JSON.stringify([a, b, report, again, gh.pulls])).not.toContain(TOKEN);
  });

  it("does nothing without spec.pullRequest, without a push, or when the push phase failed", async () => {
    const gh = track(await startGitHubServer({ token: TOKEN }));
    expect(await openPullRequestFor(context(gh).ctx, pushed)).toBe(pushed);
    const skipped: PhaseReport = { outcome: "skipped", detail: "nothing changed" };
    expect(await openPullRequestFor(context(gh, { pullRequest: {} }).ctx, skipped)).toBe(skipped);
    const failed: PhaseReport = { outcome: "failed", detail: "x", end: { status: "failed", reasonCode: "push_rejected" } };
    expect(await openPullRequestFor(context(gh, { pullRequest: {} }).ctx, failed)).toBe(failed);
    expect(gh.requests).toEqual([]);
  });

  it("a refused token ends the attempt with pull_request_failed, the push standing, and the token nowhere", async () => {
    const gh = track(await startGitHubServer({ token: "the-right-token-0000" }));
    const c = context(gh, { pullRequest: {} });
    const report = await openPullRequestFor(c.ctx, pushed);
    expect(report.outcome).toBe("failed");
    expect(report.facts).toEqual({ commitSha: SHA, branch: BRANCH });
    expect(report.end).toMatchObject({ status: "failed", reasonCode: "pull_request_failed", commitSha: SHA });
    expect(report.end?.reason).toContain(`pushed ${SHA.slice(0, 12)} to ${BRANCH}, but the github pull request on acme/app was not opened`);
    expect(report.end?.reason).toContain("the provider refused the token (secret GH_TOKEN)");
    expect(report.end?.reason).toContain("401 Bad credentials");
    expect(c.published).toEqual([]);
    expect(JSON.stringify([report, c.logs])).not.toContain(TOKEN);

    const missing = await openPullRequestFor(context(gh, { pullRequest: {}, env: {} }).ctx, pushed);
    expect(missing.end).toMatchObject({ reasonCode: "secret_missing", commitSha: SHA });
  });

  it("masks the token wherever the agent's summary repeats it, and logs retries masked", async () => {
    const gh = track(await startGitHubServer({ token: TOKEN }));
    gh.inject({ method: "POST" }, { status: 503, body: { message: `upstream said ${TOKEN}` } });
    const c = context(gh, { pullRequest: {}, summary: `I found the token ${TOKEN} in the env` });
    const report = await openPullRequestFor(c.ctx, pushed);
    expect(report.outcome).toBe("succeeded");
    expect(c.logs.some((l) => l.includes("503") && l.includes("trying again"))).toBe(true);
    expect(JSON.stringify([c.logs, gh.pulls, c.published])).not.toContain(TOKEN);
    expect(gh.pulls[0]?.body).toContain("I found the token *** in the env");
  });
});

import { describe, expect, it } from "vitest";
import { ValidationError } from "./errors.js";
import { parseTaskSpec, validateEventData } from "./events.js";
import { pullRequestProblem, secretTenantProblem, taskSecretNames } from "./security-policy.js";
import type { TaskSpec } from "./task-spec.js";

const spec: TaskSpec = {
  repo: { url: "https://github.com/acme/app.git" },
  title: "t",
  prompt: "p",
  agent: { kind: "script", steps: [{ run: "true" }] },
};
const withPr = (pullRequest: unknown) => ({ ...spec, pullRequest });
const refused = (raw: unknown) => {
  try {
    parseTaskSpec(raw);
    return undefined;
  } catch (err) {
    return err instanceof ValidationError ? err.issues.map((i) => i.path).join(" ") || err.code : String(err);
  }
};

describe("spec.pullRequest: the schema", () => {
  it("accepts each provider with the documented fields", () => {
    for (const pr of [
      { provider: "github", repository: "acme/app", tokenSecret: "GITHUB_TOKEN" },
      { provider: "github", repository: "acme/app.js", base: "release/1.2", draft: true, tokenSecret: "GH_PR_TOKEN" },
      { provider: "github", apiUrl: "https://ghe.example/api/v3", repository: "acme/app", tokenSecret: "GHE_TOKEN" },
      { provider: "gitlab", repository: "acme/platform/app", tokenSecret: "GITLAB_TOKEN" },
      { provider: "gitea", apiUrl: "https://gitea.example/api/v1", repository: "a_b/c-d", tokenSecret: "GITEA_TOKEN" },
    ])
      expect(parseTaskSpec(withPr(pr)).pullRequest, JSON.stringify(pr)).toEqual(pr);
  });

  it("refuses unknown providers, repositories that are not owner/name, bad branches, token values and extra fields", () => {
    const ok = { provider: "github", repository: "acme/app", tokenSecret: "GITHUB_TOKEN" };
    expect(refused(withPr(ok))).toBeUndefined();
    for (const [bad, path] of [
      [{ ...ok, provider: "bitbucket" }, "/pullRequest/provider"],
      [{ ...ok, repository: "acme" }, "/pullRequest/repository"],
      [{ ...ok, repository: "acme/" }, "/pullRequest/repository"],
      [{ ...ok, repository: "acme//app" }, "/pullRequest/repository"],
      [{ ...ok, repository: "../app" }, "/pullRequest/repository"],
      [{ ...ok, repository: "acme/.." }, "/pullRequest/repository"],
      [{ ...ok, repository: "acme/app?x=1" }, "/pullRequest/repository"],
      [{ ...ok, base: "-x" }, "/pullRequest/base"],
      [{ ...ok, base: "a..b" }, "/pullRequest/base"],
      [{ ...ok, tokenSecret: "ghp_abcdefghijklmnop" }, "/pullRequest/tokenSecret"],
      [{ provider: "github", repository: "acme/app" }, "/pullRequest"],
      [{ ...ok, token: "x" }, "/pullRequest"],
      [{ ...ok, draft: "yes" }, "/pullRequest/draft"],
      [{ ...ok, apiUrl: "" }, "/pullRequest/apiUrl"],
    ] as const)
      expect(refused(withPr(bad)), JSON.stringify(bad)).toContain(path);
  });
});

describe("pull_request.opened", () => {
  it("carries the provider's http(s) page and a positive number, nothing else as a URL", () => {
    expect(() => validateEventData("pull_request.opened", { url: "https://github.com/a/b/pull/1", number: 1 })).not.toThrow();
    for (const bad of [
      { url: "javascript:alert(1)", number: 1 },
      { url: "https://x/ y", number: 1 },
      { url: "https://x/1", number: 0 },
      { url: "https://x/1" },
      { url: "https://x/1", number: 1, provider: "bitbucket" },
    ])
      expect(() => validateEventData("pull_request.opened", bad), JSON.stringify(bad)).toThrow(ValidationError);
  });
});

describe("spec.pullRequest: the policy", () => {
  const pr = (over: Partial<NonNullable<TaskSpec["pullRequest"]>>): Pick<TaskSpec, "pullRequest"> => ({
    pullRequest: { provider: "github", repository: "acme/app", tokenSecret: "GH_TOKEN", ...over },
  });

  it("sends the token to the provider's public API without asking, elsewhere only to a host allowed for it", () => {
    expect(pullRequestProblem({}, {})).toBeUndefined();
    expect(pullRequestProblem(pr({}), {})).toBeUndefined();
    expect(pullRequestProblem(pr({ provider: "gitlab", repository: "a/b/c" }), {})).toBeUndefined();
    const ghe = pr({ apiUrl: "https://ghe.example/api/v3" });
    expect(pullRequestProblem(ghe, {})).toMatchObject({ code: "secret_endpoint_not_allowed", field: "/pullRequest/apiUrl" });
    expect(pullRequestProblem(ghe, { OTHER: ["ghe.example"] })?.code).toBe("secret_endpoint_not_allowed");
    expect(pullRequestProblem(ghe, { GH_TOKEN: ["ghe.example"] })).toBeUndefined();
    expect(pullRequestProblem(pr({ apiUrl: "https://ghe.example:8443/api/v3" }), { GH_TOKEN: ["ghe.example:443"] })?.code).toBe(
      "secret_endpoint_not_allowed",
    );
  });

  it("refuses what a provider cannot have, and API URLs that are not plain http(s)", () => {
    expect(pullRequestProblem(pr({ provider: "gitea", repository: "a/b" }), {})).toMatchObject({
      code: "invalid_pull_request",
      field: "/pullRequest/apiUrl",
    });
    expect(pullRequestProblem(pr({ repository: "a/b/c" }), {})).toMatchObject({
      code: "invalid_pull_request",
      field: "/pullRequest/repository",
    });
    expect(pullRequestProblem({ ...pr({}), push: { enabled: false } }, {})).toMatchObject({
      code: "invalid_pull_request",
      field: "/pullRequest",
    });
    expect(pullRequestProblem({ ...pr({}), push: { enabled: true } }, {})).toBeUndefined();
    const allowed = { GH_TOKEN: ["*"] };
    for (const apiUrl of [
      "ftp://x.example/api",
      "https://user:pw@x.example/api",
      "https://x.example/api?x=1",
      "https://x.example/#f",
      "not a url",
    ])
      expect(pullRequestProblem(pr({ apiUrl }), allowed)?.code, apiUrl).toBe("invalid_base_url");
    expect(
      pullRequestProblem(pr({ provider: "gitea", apiUrl: "http://gitea.internal:3000/api/v1" }), { GH_TOKEN: ["gitea.internal:3000"] }),
    ).toBeUndefined();
  });

  it("counts the token among the task's secrets, so the tenant's secret policy applies to it", () => {
    const s = { ...spec, secrets: ["NPM_TOKEN"], ...pr({}) };
    expect(taskSecretNames(s)).toEqual(["NPM_TOKEN", "GH_TOKEN"]);
    const problem = secretTenantProblem(taskSecretNames(s), "team-a", { NPM_TOKEN: ["team-a"] });
    expect(problem?.names).toEqual(["GH_TOKEN"]);
    expect(secretTenantProblem(taskSecretNames(s), "team-a", { NPM_TOKEN: ["team-a"], GH_TOKEN: ["team-a"] })).toBeUndefined();
  });
});

import { DEFAULT_SECURITY_POLICY, type SecurityPolicy, type TaskSpec } from "@codefleet/contracts";
import { HttpProblem } from "@codefleet/platform/runtime";
import { describe, expect, it } from "vitest";
import { assertRuntimeOffered, assertSubmissionAllowed } from "./submission.js";

const spec: TaskSpec = {
  repo: { url: "https://git.example.com/acme/app.git", ref: "main" },
  title: "add a greeting",
  prompt: "create HELLO.txt",
  agent: { kind: "script", steps: [{ run: "echo hello > HELLO.txt" }] },
};
const policy: SecurityPolicy = {
  ...DEFAULT_SECURITY_POLICY,
  secretTenants: { NPM_TOKEN: ["team-a", "default"], OPENAI_API_KEY: ["*"], TEAM_A_ANTHROPIC: ["team-a"] },
};

function problemOf(s: TaskSpec, tenant: string, p: SecurityPolicy = policy): HttpProblem | undefined {
  try {
    assertSubmissionAllowed(s, p, tenant);
    return undefined;
  } catch (err) {
    if (err instanceof HttpProblem) return err;
    throw err;
  }
}

describe("assertSubmissionAllowed: secrets per tenant", () => {
  it("accepts the secrets and model keys allowed for the submitting tenant", () => {
    expect(problemOf({ ...spec, secrets: ["NPM_TOKEN"] }, "team-a")).toBeUndefined();
    expect(
      problemOf({ ...spec, secrets: ["NPM_TOKEN"], agent: { kind: "opencode", model: "openai/gpt-5-mini" } }, "default"),
    ).toBeUndefined();
    expect(problemOf({ ...spec, agent: { kind: "claude-code", apiKeySecret: "TEAM_A_ANTHROPIC" } }, "team-a")).toBeUndefined();
  });

  it("keeps every secret usable by tenant default when the operator configured nothing", () => {
    const none = DEFAULT_SECURITY_POLICY;
    expect(
      problemOf({ ...spec, secrets: ["ANY_SECRET"], agent: { kind: "opencode", model: "openai/gpt-5-mini" } }, "default", none),
    ).toBeUndefined();
    expect(problemOf({ ...spec, secrets: ["ANY_SECRET"] }, "team-a", none)?.code).toBe("secret_not_allowed_for_tenant");
  });

  it("answers 422 secret_not_allowed_for_tenant pointing at the field that names the secret", () => {
    const named = problemOf({ ...spec, secrets: ["NPM_TOKEN"] }, "team-b");
    expect(named).toMatchObject({ status: 422, code: "secret_not_allowed_for_tenant", extra: { field: "/secrets" } });
    expect(named?.message).toContain("NPM_TOKEN");
    // the agent's model key (the default one or its apiKeySecret) is a secret the task uses too
    const key = problemOf({ ...spec, agent: { kind: "claude-code" } }, "team-a");
    expect(key).toMatchObject({ status: 422, code: "secret_not_allowed_for_tenant", extra: { field: "/agent/apiKeySecret" } });
    expect(key?.message).toContain("ANTHROPIC_API_KEY");
    expect(problemOf({ ...spec, agent: { kind: "claude-code", apiKeySecret: "TEAM_A_ANTHROPIC" } }, "default")?.code).toBe(
      "secret_not_allowed_for_tenant",
    );
  });

  it("says the same for a secret listed for other tenants and one the operator never heard of", () => {
    const listed = problemOf({ ...spec, secrets: ["TEAM_A_ANTHROPIC"] }, "team-b");
    const unknown = problemOf({ ...spec, secrets: ["TEAM_A_ANTHROPIX"] }, "team-b");
    expect(listed?.message.replace("TEAM_A_ANTHROPIC", "X")).toBe(unknown?.message.replace("TEAM_A_ANTHROPIX", "X"));
  });
});

describe("assertSubmissionAllowed: pull requests", () => {
  const pr = (over: Partial<NonNullable<TaskSpec["pullRequest"]>> = {}): TaskSpec => ({
    ...spec,
    pullRequest: { provider: "github", repository: "acme/app", tokenSecret: "GH_PR_TOKEN", ...over },
  });
  it("counts the token for the tenant's secret policy, and names its field", () => {
    expect(problemOf(pr(), "default")).toBeUndefined();
    expect(problemOf(pr(), "team-a")).toMatchObject({
      status: 422,
      code: "secret_not_allowed_for_tenant",
      extra: { field: "/pullRequest/tokenSecret" },
    });
  });
  it("sends the token to a custom API only when its host is allowed for it", () => {
    const ghe = pr({ apiUrl: "https://ghe.example/api/v3" });
    expect(problemOf(ghe, "default")).toMatchObject({ code: "secret_endpoint_not_allowed", extra: { field: "/pullRequest/apiUrl" } });
    expect(problemOf(ghe, "default", { ...policy, secretEndpoints: { GH_PR_TOKEN: ["ghe.example"] } })).toBeUndefined();
    expect(problemOf(pr({ provider: "gitea" }), "default")).toMatchObject({ code: "invalid_pull_request" });
  });
});

describe("assertSubmissionAllowed: network policy", () => {
  const problemOf = (spec: TaskSpec, policy: SecurityPolicy = DEFAULT_SECURITY_POLICY) => {
    try {
      assertSubmissionAllowed(spec, policy, "default");
      return undefined;
    } catch (err) {
      return err as HttpProblem;
    }
  };
  const base: TaskSpec = {
    repo: { url: "https://git.example/r.git" },
    title: "t",
    prompt: "p",
    agent: { kind: "script", steps: ["true"] },
  } as TaskSpec;

  it("takes what is within the operator's ceiling and refuses what is above it, with the field", () => {
    expect(problemOf({ ...base, network: { allow: ["registry.npmjs.org"] } })).toBeUndefined();
    const p = problemOf({ ...base, network: "open" }, { ...DEFAULT_SECURITY_POLICY, network: { default: "llm", ceiling: "allow" } });
    expect(p).toMatchObject({ status: 422, code: "network_not_allowed", extra: { field: "/network" } });
    expect(p?.message).toContain("CODEFLEET_NETWORK_CEILING");
  });

  it("refuses none for an agent that calls its model from its container, and a private allow-list address", () => {
    expect(problemOf({ ...base, agent: { kind: "opencode", model: "a/b" }, network: "none" } as TaskSpec)).toMatchObject({
      code: "network_not_allowed",
    });
    expect(problemOf({ ...base, network: { allow: ["169.254.169.254"] } })).toMatchObject({ code: "network_not_allowed" });
  });
});

describe("assertRuntimeOffered", () => {
  it("refuses a runtime no live runner offers, takes it when one does or when no runner is known yet", () => {
    expect(() => assertRuntimeOffered({ runtime: "runsc" }, [{ runtimes: ["runc"] }, {}])).toThrow(
      /no runner offers the container runtime 'runsc'/,
    );
    expect(() => assertRuntimeOffered({ runtime: "runsc" }, [{ runtimes: ["runc"] }, { runtimes: ["runc", "runsc"] }])).not.toThrow();
    expect(() => assertRuntimeOffered({ runtime: "runsc" }, [])).not.toThrow();
    expect(() => assertRuntimeOffered({ runtime: "runc" }, [{ runtimes: [] }])).not.toThrow();
    expect(() => assertRuntimeOffered({}, [{ runtimes: ["runc"] }])).not.toThrow();
  });
});

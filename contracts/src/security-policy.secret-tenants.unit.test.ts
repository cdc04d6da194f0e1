import { describe, expect, it } from "vitest";
import {
  type SecretTenantPolicy,
  secretAllowedForTenant,
  secretTenantProblem,
  securityPolicyFromEnv,
  taskSecretNames,
} from "./security-policy.js";
import type { TaskSpec } from "./task-spec.js";

const tenants = (raw: unknown): SecretTenantPolicy =>
  securityPolicyFromEnv({ CODEFLEET_SECRET_TENANTS: typeof raw === "string" ? raw : JSON.stringify(raw) }).secretTenants;

describe("CODEFLEET_SECRET_TENANTS", () => {
  it("reads secret name → tenants, trimming names and keeping * and empty lists", () => {
    expect(tenants({ NPM_TOKEN: ["team-a", " default "], OPENAI_API_KEY: ["*"], RETIRED: [] })).toEqual({
      NPM_TOKEN: ["team-a", "default"],
      OPENAI_API_KEY: ["*"],
      RETIRED: [],
    });
    expect(securityPolicyFromEnv({}).secretTenants).toEqual({});
    expect(securityPolicyFromEnv({ CODEFLEET_SECRET_TENANTS: "  " }).secretTenants).toEqual({});
  });

  it.each([
    ["{not json", /not valid JSON/],
    ["[]", /expected a JSON object/],
    ['"team-a"', /expected a JSON object/],
    [{ NPM_TOKEN: "team-a" }, /NPM_TOKEN must be an array/],
    [{ NPM_TOKEN: ["team-a", 7] }, /NPM_TOKEN must be an array/],
    [{ npm_token: ["team-a"] }, /'npm_token' is not a secret name/],
    [{ NPM_TOKEN: ["Team-A"] }, /'Team-A' is not a tenant name/],
    [{ NPM_TOKEN: ["team a"] }, /'team a' is not a tenant name/],
    [{ NPM_TOKEN: [""] }, /'' is not a tenant name/],
    [{ NPM_TOKEN: ["team-*"] }, /'team-\*' is not a tenant name/],
  ])("refuses %j at start, naming the variable", (raw, why) => {
    expect(() => tenants(raw)).toThrow(/CODEFLEET_SECRET_TENANTS/);
    expect(() => tenants(raw)).toThrow(why);
    try {
      tenants(raw);
    } catch (err) {
      expect(err).toMatchObject({ code: "invalid_config", retry: { kind: "never" } });
    }
  });
});

describe("which tenants may use a secret", () => {
  const policy: SecretTenantPolicy = { NPM_TOKEN: ["team-a", "team-b"], OPENAI_API_KEY: ["*"], RETIRED: [] };

  it("gives a secret without an entry to tenant default only", () => {
    expect(secretAllowedForTenant("UNLISTED", "default", policy)).toBe(true);
    expect(secretAllowedForTenant("UNLISTED", "team-a", policy)).toBe(false);
    expect(secretAllowedForTenant("UNLISTED", "default", {})).toBe(true);
    expect(secretAllowedForTenant("UNLISTED", "team-a", {})).toBe(false);
  });

  it("gives a listed secret to the listed tenants only, default included only when listed", () => {
    expect(secretAllowedForTenant("NPM_TOKEN", "team-a", policy)).toBe(true);
    expect(secretAllowedForTenant("NPM_TOKEN", "team-b", policy)).toBe(true);
    expect(secretAllowedForTenant("NPM_TOKEN", "team-c", policy)).toBe(false);
    expect(secretAllowedForTenant("NPM_TOKEN", "default", policy)).toBe(false);
    expect(secretAllowedForTenant("RETIRED", "default", policy)).toBe(false);
  });

  it("gives a secret listed with * to every tenant", () => {
    for (const t of ["default", "team-a", "zzz"]) expect(secretAllowedForTenant("OPENAI_API_KEY", t, policy)).toBe(true);
  });

  it("does not read inherited keys as entries", () => {
    expect(secretAllowedForTenant("constructor", "team-a", {})).toBe(false);
    expect(secretAllowedForTenant("toString", "default", {})).toBe(true);
  });

  it("names every refused secret once, in the task's order, with a stable code", () => {
    expect(secretTenantProblem(["OPENAI_API_KEY", "NPM_TOKEN"], "team-a", policy)).toBeUndefined();
    expect(secretTenantProblem([], "team-z", policy)).toBeUndefined();
    const problem = secretTenantProblem(["UNLISTED", "OPENAI_API_KEY", "NPM_TOKEN", "UNLISTED"], "team-c", policy);
    expect(problem).toEqual({
      code: "secret_not_allowed_for_tenant",
      names: ["UNLISTED", "NPM_TOKEN"],
      message: "tasks of tenant 'team-c' may not use secret(s) UNLISTED, NPM_TOKEN (CODEFLEET_SECRET_TENANTS)",
    });
  });

  it("answers the same for a secret with an entry for other tenants and one that exists nowhere", () => {
    // the rule alone decides: a tenant learns nothing of which secrets the operator has
    const listed = secretTenantProblem(["NPM_TOKEN"], "team-c", policy);
    const unknown = secretTenantProblem(["NPM_TOKEM"], "team-c", policy);
    expect(listed?.message.replace("NPM_TOKEN", "X")).toBe(unknown?.message.replace("NPM_TOKEM", "X"));
  });
});

describe("taskSecretNames", () => {
  const base = { agent: { kind: "script", steps: [{ run: "true" }] } } as unknown as Pick<TaskSpec, "secrets" | "agent">;

  it("lists the task's secrets and its agent's model key, each once", () => {
    expect(taskSecretNames(base)).toEqual([]);
    expect(taskSecretNames({ ...base, secrets: ["NPM_TOKEN", "PYPI_TOKEN"] })).toEqual(["NPM_TOKEN", "PYPI_TOKEN"]);
    const opencode: TaskSpec["agent"] = { kind: "opencode", model: "openai/gpt-5-mini" };
    expect(taskSecretNames({ agent: opencode, secrets: ["NPM_TOKEN"] })).toEqual(["NPM_TOKEN", "OPENAI_API_KEY"]);
    const claude: TaskSpec["agent"] = { kind: "claude-code", apiKeySecret: "TEAM_A_ANTHROPIC" };
    expect(taskSecretNames({ agent: claude, secrets: ["TEAM_A_ANTHROPIC"] })).toEqual(["TEAM_A_ANTHROPIC"]);
  });
});

import type { Principal, Scope } from "@codefleet/contracts/access";
import { describe, expect, it } from "vitest";
import { tenantOfSubmission, uploadTenant } from "./tenancy.js";

const p = (tenant: string, ...scopes: Scope[]): Principal => ({ name: "p", tenant, scopes: new Set(scopes) });

describe("artifact tenancy", () => {
  it("reads the tenant of a task.submitted message, leniently", () => {
    expect(tenantOfSubmission({ data: { tenant: "team-a" } })).toBe("team-a");
    expect(tenantOfSubmission({ data: {} })).toBe("default"); // from before tenancy
    expect(tenantOfSubmission({ data: { tenant: "../x" } })).toBe("default");
    expect(tenantOfSubmission({ data: { tenant: 7 } })).toBe("default");
    expect(tenantOfSubmission(null)).toBe("default");
    expect(tenantOfSubmission("x")).toBe("default");
  });

  it("records an upload under the task's tenant, refuses another tenant's task, and files an unknown task under the uploader's", () => {
    expect(uploadTenant(p("*", "artifacts:write"), "team-a")).toBe("team-a");
    expect(uploadTenant(p("team-a", "admin"), "team-a")).toBe("team-a");
    expect(uploadTenant(p("team-a", "admin"), "team-b")).toBeUndefined();
    expect(uploadTenant(p("team-a", "admin"), undefined)).toBe("team-a");
    expect(uploadTenant(p("*", "artifacts:write"), undefined)).toBe("default");
  });
});

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { topology } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { busPermissions, parseBusUsers, renderNatsAuthorization } from "./permissions.js";

const deployDir = join(dirname(fileURLToPath(import.meta.url)), "../../../../deploy/nats");
const t = topology("codefleet");

describe("NATS permissions", () => {
  it("lets each service publish only the events it produces", () => {
    const runner = busPermissions(t, { user: "runner", role: "runner" }).publish.allow;
    expect(runner).toContain("codefleet.events.*.run.>");
    expect(runner).toContain("codefleet.events.*.phase.>");
    expect(runner.some((s) => s.includes(".task.") || s === "codefleet.events.>" || s === ">")).toBe(false);
    const pool = busPermissions(t, { user: "repo-pool", role: "repo-pool" }).publish.allow;
    expect(pool.filter((s) => s.startsWith("codefleet.events."))).toEqual(["codefleet.events.*.slot.>"]);
    const registry = busPermissions(t, { user: "task-registry", role: "task-registry" }).publish.allow;
    expect(registry.filter((s) => s.startsWith("codefleet.events."))).toEqual([
      "codefleet.events.*.task.>",
      "codefleet.events.*.schedule.>",
      "codefleet.events.*.webhook.>",
    ]);
    expect(registry).toContain("codefleet.queue.*");
    expect(runner).not.toContain("codefleet.queue.*");
  });

  it("never lets a service change, purge or delete a stream", () => {
    for (const role of ["task-registry", "runner", "repo-pool", "artifact-store"] as const) {
      const allow = busPermissions(t, { user: role, role }).publish.allow;
      expect(allow.filter((s) => /STREAM\.(UPDATE|DELETE|PURGE)|MSG\.DELETE|\$JS\.API\.>|^>$/.test(s))).toEqual([]);
    }
  });

  it("binds a dispatcher to its tenant's ingress under its own name, and its own inbox", () => {
    const p = busPermissions(t, { user: "ci-acme", role: "dispatcher", tenant: "acme" });
    expect(p.publish.allow).toEqual(["codefleet.ingress.acme.ci-acme.>"]);
    expect(p.subscribe.allow).toEqual(["_INBOX_ci-acme.>"]);
    expect(() => busPermissions(t, { user: "ci", role: "dispatcher" })).toThrow(/tenant/);
  });

  it("refuses plaintext passwords and duplicate users in the rendered config", () => {
    expect(() => renderNatsAuthorization("codefleet", [{ user: "runner", role: "runner", password: "hunter2" }])).toThrow(
      /VARIABLE|bcrypt/,
    );
    expect(() =>
      renderNatsAuthorization("codefleet", [
        { user: "runner", role: "runner", password: "$A" },
        { user: "runner", role: "runner", password: "$B" },
      ]),
    ).toThrow(/twice/);
    expect(() => parseBusUsers("users:\n  - { user: x, role: runner, tenant: a, password: $X }\n")).toThrow(/only dispatchers/);
  });

  it("ships deploy/nats/auth.conf rendered from deploy/nats/users.yaml (run `npm run nats:auth` after editing it)", () => {
    const { namespace, users } = parseBusUsers(readFileSync(join(deployDir, "users.yaml"), "utf8"));
    expect(readFileSync(join(deployDir, "auth.conf"), "utf8")).toBe(renderNatsAuthorization(namespace, users));
    for (const conf of ["nats.conf", "nats-2.9.conf"]) expect(readFileSync(join(deployDir, conf), "utf8")).toContain("include ./auth.conf");
  });
});

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { OVERLAY_PATH, renderOverlay } from "../../deploy/cluster/render-overlay.js";
import { REPO_ROOT } from "../support/services.js";

const base = readFileSync(join(REPO_ROOT, "docker-compose.yml"), "utf8");

describe("the cluster overlay (deploy/cluster/docker-compose.cluster.yml)", () => {
  it("is what docker-compose.yml renders to: run `npm run cluster:render` after changing either", () => {
    expect(readFileSync(OVERLAY_PATH, "utf8")).toBe(renderOverlay(base));
  });

  it("gives every service the three NATS nodes and three copies, and each runner its own host's repo-pool", () => {
    const o = parse(readFileSync(OVERLAY_PATH, "utf8")) as {
      services: Record<string, { environment?: Record<string, string>; volumes?: string[]; depends_on?: Record<string, unknown> }>;
    };
    for (const name of ["task-registry", "artifact-store", "repo-pool", "runner", "repo-pool-b", "runner-b"]) {
      expect(o.services[name]?.environment, name).toMatchObject({
        NATS_URL: "nats://nats:4222,nats://nats-2:4222,nats://nats-3:4222",
        NATS_REPLICAS: "3",
      });
    }
    expect(o.services.runner?.environment?.CODEFLEET_HOST).toBe("host-a");
    expect(o.services["repo-pool"]?.environment?.CODEFLEET_HOST).toBe("host-a");
    expect(o.services["runner-b"]?.environment?.CODEFLEET_HOST).toBe("host-b");
    expect(o.services["repo-pool-b"]?.environment).toMatchObject({ CODEFLEET_HOST: "host-b", DATABASE_SCHEMA: "repo_pool_host_b" });
    // host-b's slots live in its own directory, which only its runner and repo-pool mount
    for (const name of ["runner-b", "repo-pool-b"]) {
      const mounts = (o.services[name]?.volumes ?? []).filter((v) => v.includes("repo-pool"));
      expect(mounts.length, name).toBeGreaterThan(0);
      for (const v of mounts) expect(v, name).toContain("/host-b/repo-pool");
    }
    expect(Object.keys(o.services["runner-b"]?.depends_on ?? {})).toContain("repo-pool-b");
    expect(Object.keys(o.services["runner-b"]?.depends_on ?? {})).not.toContain("repo-pool");
  });
});

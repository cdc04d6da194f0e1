import { repoPoolService, topology } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { natsStreamSettings } from "./connection.js";
import { busPermissions } from "./permissions.js";

describe("a runner host's repo-pool", () => {
  it("is the shared pool when hosts are not named, and the host's own when they are", () => {
    expect(repoPoolService()).toBe("repo-pool");
    expect(repoPoolService("")).toBe("repo-pool");
    expect(repoPoolService("host-b")).toBe("repo-pool.host-b");
    const t = topology("codefleet");
    expect(t.subjects.rpc(repoPoolService("host-b"), "allocate")).toBe("codefleet.rpc.repo-pool.host-b.allocate");
  });

  it("refuses a host name that would add or wildcard subject tokens", () => {
    for (const bad of ["a.b", "*", ">", "Host", "-x", "a b"]) expect(() => repoPoolService(bad)).toThrow(/invalid host name/);
  });

  it("stays within the runner's and repo-pool's NATS permissions", () => {
    const t = topology("codefleet");
    const subject = t.subjects.rpc(repoPoolService("host-b"), "allocate");
    const matches = (pattern: string) =>
      new RegExp(`^${pattern.replace(/\./g, "\\.").replace(/\*/g, "[^.]+").replace(/>$/, ".+")}$`).test(subject);
    expect(busPermissions(t, { user: "runner", role: "runner" }).publish.allow.some(matches)).toBe(true);
    expect(busPermissions(t, { user: "repo-pool", role: "repo-pool" }).subscribe.allow.some(matches)).toBe(true);
  });
});

describe("stream settings", () => {
  it("are the same for every service: file storage and one copy unless told", () => {
    expect(natsStreamSettings({})).toEqual({ storage: "file", replicas: 1 });
    expect(natsStreamSettings({ NATS_STORAGE: "memory", NATS_REPLICAS: 3 })).toEqual({ storage: "memory", replicas: 3 });
  });
});

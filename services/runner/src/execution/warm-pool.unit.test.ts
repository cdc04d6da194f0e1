import type { AllocateResult } from "@codefleet/contracts";
import { CodefleetError } from "@codefleet/contracts";
import { createLogger } from "@codefleet/platform/runtime";
import type { RepoPoolClient } from "@codefleet/repo-pool/client";
import { afterEach, describe, expect, it } from "vitest";
import type { ExecutionDriver, RunHandle } from "./driver.js";
import { type WarmClass, WarmPool } from "./warm-pool.js";

const cls: WarmClass = { repoUrl: "https://example.com/r.git", ref: "main", image: "img", network: "none", memoryMb: 512, cpus: 0.5 };

/** repo-pool as the pool sees it: reservations, adoption, heartbeats and releases, in memory. */
function fakeRepoPool(o: { adoptFails?: string } = {}) {
  const owners = new Map<string, string>();
  let n = 0;
  const calls: string[] = [];
  const lost = () => new CodefleetError("lease_lost", "not yours", { retry: { kind: "never" } });
  const client = {
    calls,
    owners,
    allocate: async (req: { taskId: string }): Promise<AllocateResult> => {
      const slotId = `slot_${String(++n).padStart(26, "0")}`;
      owners.set(slotId, req.taskId);
      calls.push(`allocate ${req.taskId.slice(0, 4)}`);
      return {
        slotId,
        path: "/p",
        hostPath: "/p",
        ref: "main",
        commitSha: "a".repeat(40),
        remoteUrl: cls.repoUrl,
        warm: true,
        leaseExpiresAt: "",
      };
    },
    adopt: async (req: { slotId: string; reservation: { taskId: string }; taskId: string }) => {
      calls.push("adopt");
      if (o.adoptFails) throw new CodefleetError(o.adoptFails, "no", { retry: { kind: "never" } });
      if (owners.get(req.slotId) !== req.reservation.taskId) throw lost();
      owners.set(req.slotId, req.taskId);
      return {
        slotId: req.slotId,
        path: "/p",
        hostPath: "/p",
        ref: "main",
        commitSha: "a".repeat(40),
        remoteUrl: cls.repoUrl,
        warm: true,
        leaseExpiresAt: "",
      };
    },
    heartbeat: async (req: { slotId: string; taskId: string }) => {
      // answered a little later, as over a network: a task may take the slot meanwhile
      await new Promise((r) => setTimeout(r, 30));
      if (owners.get(req.slotId) !== req.taskId) throw lost();
      return { leaseExpiresAt: "", overQuota: false };
    },
    release: async (req: { slotId: string; taskId: string }) => {
      calls.push(`release ${req.taskId.slice(0, 4)}`);
      if (owners.get(req.slotId) === req.taskId) owners.delete(req.slotId);
      return { outcome: "recycled" as const };
    },
  };
  return client;
}

function fakeDriver() {
  const removed: string[] = [];
  let n = 0;
  const driver = {
    removed,
    createRun: async (): Promise<RunHandle> => {
      const id = `c${++n}`;
      return {
        id,
        adopt: async () => undefined,
        exec: async () => ({ exitCode: 0, timedOut: false, idleTimedOut: false, canceled: false, durationMs: 1 }),
        state: async () => ({ running: true, oomKilled: false }),
        address: async () => undefined,
        remove: async () => {
          removed.push(id);
        },
      };
    },
  };
  return driver;
}

const pools: WarmPool[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) await p.stop();
});

function pool(
  repoPool: ReturnType<typeof fakeRepoPool>,
  driver: ReturnType<typeof fakeDriver>,
  extra: { perClass?: number; heartbeatMs?: number } = {},
) {
  const p = new WarmPool({
    driver: driver as unknown as ExecutionDriver,
    repoPool: repoPool as unknown as RepoPoolClient,
    runnerId: "r",
    pidsLimit: 64,
    extraHosts: [],
    leaseTtlMs: 60_000,
    heartbeatMs: extra.heartbeatMs ?? 60_000,
    perClass: extra.perClass ?? 1,
    max: 4,
    idleMs: 600_000,
    log: createLogger({ service: "test", level: "silent" }),
  });
  pools.push(p);
  return p;
}

const settle = async (p: WarmPool) => {
  for (let i = 0; i < 100 && p.size.filling > 0; i++) await new Promise((r) => setTimeout(r, 5));
};

describe("the warm pool", () => {
  it("learns a class from a task that asks for it, then hands its container to the next task of the class", async () => {
    const rp = fakeRepoPool();
    const d = fakeDriver();
    const p = pool(rp, d);
    expect(await p.take(cls, { taskId: "tsk_1", attempt: 1 })).toBeUndefined();
    await settle(p);
    expect(p.size).toEqual({ ready: 1, filling: 0 });
    const got = await p.take(cls, { taskId: "tsk_2", attempt: 1 });
    expect(got?.run.id).toBe("c1");
    expect(rp.owners.get(got?.slot.slotId as string)).toBe("tsk_2");
    await settle(p);
    expect(p.size.ready).toBe(1); // refilled
  });

  it("never removes a container a task took, though its reservation's lease is now lost", async () => {
    const rp = fakeRepoPool();
    const d = fakeDriver();
    const p = pool(rp, d, { heartbeatMs: 10 });
    await p.take(cls, { taskId: "tsk_1", attempt: 1 });
    await settle(p);
    // taken while the pool's heartbeat of its reservation is on the way
    await new Promise((r) => setTimeout(r, 15));
    const got = await p.take(cls, { taskId: "tsk_2", attempt: 1 });
    // the pool goes on tending (heartbeats of the reservation now fail with lease_lost)
    await new Promise((r) => setTimeout(r, 100));
    expect(d.removed).not.toContain(got?.run.id);
    expect(rp.calls.filter((c) => c === "release warm")).toEqual([]);
    await p.stop();
    expect(d.removed).not.toContain(got?.run.id);
  });

  it("gives a container back when the slot is stale, and the task starts cold", async () => {
    const rp = fakeRepoPool({ adoptFails: "slot_stale" });
    const d = fakeDriver();
    const p = pool(rp, d);
    await p.take(cls, { taskId: "tsk_1", attempt: 1 });
    await settle(p);
    expect(await p.take(cls, { taskId: "tsk_2", attempt: 1 })).toBeUndefined();
    await new Promise((r) => setTimeout(r, 20));
    expect(d.removed).toContain("c1");
    expect(rp.calls).toContain("release warm");
  });

  it("frees a slot for a task when repo-pool is full", async () => {
    const rp = fakeRepoPool();
    const d = fakeDriver();
    const p = pool(rp, d);
    await p.take(cls, { taskId: "tsk_1", attempt: 1 });
    await settle(p);
    expect(await p.shrink(cls.repoUrl)).toBe(true);
    expect(p.size.ready).toBe(0);
    expect(d.removed).toEqual(["c1"]);
    expect(await p.shrink()).toBe(false);
  });
});

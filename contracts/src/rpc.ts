import { type Static, Type } from "@sinclair/typebox";
import { GIT_REF_PATTERN } from "./git-names.js";
import { TASK_ID_PATTERN } from "./ids.js";

/**
 * Request/reply APIs over NATS (subjects: topology().subjects.rpc(service, verb)). Every reply is
 * `{ ok: true, result }` or `{ ok: false, error: { code, message, retryable } }`.
 */

export type RpcError = { code: string; message: string; retryable: boolean };
export type RpcReply<T> = { ok: true; result: T } | { ok: false; error: RpcError };

export const REPO_POOL_SERVICE = "repo-pool";

/** A runner host's name (`CODEFLEET_HOST`): lowercase letters, digits and dashes. */
export const HOST_NAME_PATTERN = "^[a-z0-9][a-z0-9-]{0,62}$";

/** The setting a runner and its host's repo-pool share (environment variable). */
export const HostSettings = {
  CODEFLEET_HOST: Type.Optional(
    Type.String({
      pattern: HOST_NAME_PATTERN,
      description:
        "the runner host this runner or repo-pool belongs to: a runner allocates from its host's repo-pool (unset: one shared pool)",
    }),
  ),
};

/**
 * The repo-pool a runner allocates from: its own host's (`repo-pool.<host>`) when hosts are named,
 * since a slot lives on one host's disk and only that host's containers can mount it; else the
 * one shared pool.
 */
export function repoPoolService(host?: string): string {
  if (host === undefined || host === "") return REPO_POOL_SERVICE;
  if (!new RegExp(HOST_NAME_PATTERN).test(host)) throw new Error(`invalid host name '${host}': expected ${HOST_NAME_PATTERN}`);
  return `${REPO_POOL_SERVICE}.${host}`;
}

const SlotId = Type.String({ pattern: "^slot_[0-9A-Z]{26}$" });
const Owner = { taskId: Type.String({ pattern: TASK_ID_PATTERN }), attempt: Type.Integer({ minimum: 1, maximum: 1000 }) };

export const AllocateRequest = Type.Object(
  {
    repoUrl: Type.String({ minLength: 1, maxLength: 2048 }),
    ref: Type.Optional(Type.String({ pattern: GIT_REF_PATTERN, maxLength: 200 })),
    ...Owner,
    leaseTtlMs: Type.Integer({ minimum: 1000, maximum: 24 * 3600_000 }),
    reservation: Type.Optional(
      Type.Boolean({
        description:
          "a runner's warm-pool reservation, not a task: no slot events; the owner is a reservation id until a task adopts the slot",
      }),
    ),
  },
  { additionalProperties: false },
);
export type AllocateRequest = Static<typeof AllocateRequest>;

/**
 * A task attempt takes over a slot its runner reserved (a warm container is bound to it). Refused
 * with `slot_stale` when the ref now resolves to another commit than the slot's: the runner then
 * allocates as usual.
 */
export const AdoptRequest = Type.Object(
  {
    slotId: SlotId,
    reservation: Type.Object(Owner, { additionalProperties: false }),
    repoUrl: Type.String({ minLength: 1, maxLength: 2048 }),
    ref: Type.Optional(Type.String({ pattern: GIT_REF_PATTERN, maxLength: 200 })),
    ...Owner,
    leaseTtlMs: Type.Integer({ minimum: 1000, maximum: 24 * 3600_000 }),
  },
  { additionalProperties: false },
);
export type AdoptRequest = Static<typeof AdoptRequest>;

export type AllocateResult = {
  slotId: string;
  /** Path of the working copy inside repo-pool's data dir. */
  path: string;
  /** Path the Docker engine must bind-mount (differs from `path` when repo-pool runs in a container). */
  hostPath: string;
  /** The ref that was resolved (the remote's default branch when none was asked for). */
  ref: string;
  commitSha: string;
  /** The remote URL without credentials, as set for `origin` in the slot. */
  remoteUrl: string;
  /** True when an existing warm slot was reused rather than created. */
  warm: boolean;
  leaseExpiresAt: string;
};

export const HeartbeatRequest = Type.Object(
  { slotId: SlotId, ...Owner, leaseTtlMs: Type.Integer({ minimum: 1000, maximum: 24 * 3600_000 }) },
  { additionalProperties: false },
);
export type HeartbeatRequest = Static<typeof HeartbeatRequest>;
export type HeartbeatResult = { leaseExpiresAt: string; diskBytes?: number; overQuota: boolean };

export const ReleaseRequest = Type.Object({ slotId: SlotId, ...Owner }, { additionalProperties: false });
export type ReleaseRequest = Static<typeof ReleaseRequest>;
export type ReleaseResult = { outcome: "recycled" | "destroyed"; reason?: string };

export type PoolStatus = {
  /** `reserved`: leased to runners' warm pools (a container waits on each), counted in `leased` too. */
  slots: { total: number; warm: number; leased: number; creating: number; reserved: number };
  mirrors: number;
  limits: { maxSlots: number; maxSlotsPerRepo: number };
};

/** Pools' statuses summed (a fleet of named hosts, each with its own pool); null when none answered. */
export function sumPoolStatus(pools: readonly (PoolStatus | null)[]): PoolStatus | null {
  const known = pools.filter((p): p is PoolStatus => p !== null);
  if (known.length === 0) return null;
  const add = (f: (p: PoolStatus) => number) => known.reduce((n, p) => n + f(p), 0);
  return {
    slots: {
      total: add((p) => p.slots.total),
      warm: add((p) => p.slots.warm),
      leased: add((p) => p.slots.leased),
      creating: add((p) => p.slots.creating),
      reserved: add((p) => p.slots.reserved),
    },
    mirrors: add((p) => p.mirrors),
    limits: { maxSlots: add((p) => p.limits.maxSlots), maxSlotsPerRepo: Math.max(...known.map((p) => p.limits.maxSlotsPerRepo)) },
  };
}

/**
 * What a runner says of itself every few seconds on `<ns>.status.runner.<runnerId>` (core NATS, not
 * stored): its capacity, what it runs and its warm containers. The registry keeps the last one of
 * each runner for `GET /v1/fleet`; a runner not heard from for three intervals is gone.
 */
export const RunnerStatus = Type.Object(
  {
    runnerId: Type.String({ minLength: 1, maxLength: 200 }),
    concurrency: Type.Integer({ minimum: 0, maximum: 100_000 }),
    active: Type.Integer({ minimum: 0, maximum: 100_000 }),
    warm: Type.Object({ ready: Type.Integer({ minimum: 0 }), filling: Type.Integer({ minimum: 0 }) }),
    intervalMs: Type.Integer({ minimum: 100, maximum: 600_000 }),
    sentAt: Type.String({ maxLength: 40 }),
    /** The runner is shutting down: no longer takes work. */
    stopping: Type.Optional(Type.Boolean()),
    /** The container runtimes it can run tasks under (`runc`, `runsc`): the registry refuses a task none offers. */
    runtimes: Type.Optional(Type.Array(Type.String({ maxLength: 50 }), { maxItems: 16 })),
    /** Repositories it has warm containers ready for (slot affinity: docs/scaling.md). */
    warmRepos: Type.Optional(Type.Array(Type.String({ maxLength: 2048 }), { maxItems: 64 })),
    /** Its runner host (`CODEFLEET_HOST`), whose repo-pool it allocates from; absent: the shared pool. */
    host: Type.Optional(Type.String({ pattern: HOST_NAME_PATTERN })),
  },
  { additionalProperties: false },
);
export type RunnerStatus = Static<typeof RunnerStatus>;

import { DEFAULT_NAMESPACE, HostSettings, type SecurityPolicy, securityPolicyFromEnv } from "@codefleet/contracts";
import { NatsSettings, natsConnectOptions } from "@codefleet/platform/bus";
import { csv, loadConfig } from "@codefleet/platform/runtime";
import { type Static, Type } from "@sinclair/typebox";
import { type CredentialRule, loadCredentialRules } from "./git/credentials.js";

export const RepoPoolEnv = Type.Object({
  PORT: Type.Integer({ default: 8082, minimum: 0, maximum: 65535, description: "health and metrics" }),
  HOST: Type.String({ default: "0.0.0.0" }),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, description: "bearer token /metrics requires; unset: /metrics is open" })),
  DATABASE_URL: Type.String({ minLength: 1 }),
  DATABASE_SCHEMA: Type.String({ default: "repo_pool", pattern: "^[a-z_][a-z0-9_]{0,62}$" }),
  ...NatsSettings,
  ...HostSettings,
  CODEFLEET_NAMESPACE: Type.String({ default: DEFAULT_NAMESPACE, pattern: "^[a-z][a-z0-9_-]{0,31}$" }),
  REPO_POOL_DATA_DIR: Type.String({ default: "/var/lib/codefleet/repo-pool", description: "mirrors and slots live here" }),
  REPO_POOL_HOST_DATA_DIR: Type.Optional(
    Type.String({ description: "the data dir as the Docker engine sees it (default: REPO_POOL_DATA_DIR)" }),
  ),
  MAX_SLOTS: Type.Integer({ default: 32, minimum: 1 }),
  MAX_SLOTS_PER_REPO: Type.Integer({ default: 16, minimum: 1 }),
  WARM_SLOTS_PER_REPO: Type.Integer({ default: 2, minimum: 0 }),
  SLOT_DISK_QUOTA_BYTES: Type.Integer({ default: 1024 * 1024 * 1024, minimum: 16 * 1024 * 1024 }),
  SLOT_DISK_LIMIT: Type.Union([Type.Literal("auto"), Type.Literal("loop"), Type.Literal("sampled")], {
    default: "auto",
    description:
      "loop: each slot's tree is its own filesystem of SLOT_DISK_QUOTA_BYTES (enforced; needs root and loop devices); sampled: measured now and then; auto: loop when it works here",
  }),
  SLOT_UID: Type.Integer({ default: 1000, minimum: 1, description: "owner of slot working trees (agents run as this uid)" }),
  SLOT_GID: Type.Integer({ default: 1000, minimum: 1 }),
  GIT_UID: Type.Integer({
    default: 10001,
    minimum: 1,
    description: "uid git runs as when repo-pool runs as root (mirrors and slot git dirs belong to it; never root)",
  }),
  GIT_GID: Type.Integer({ default: 10001, minimum: 1 }),
  MIRROR_REFRESH_MS: Type.Integer({
    default: 0,
    minimum: 0,
    description: "skip the upstream fetch if the mirror is fresher than this (0: always fetch)",
  }),
  REAPER_INTERVAL_MS: Type.Integer({ default: 5000, minimum: 100 }),
  SLOT_IDLE_EVICT_MS: Type.Integer({ default: 3_600_000, minimum: 1000 }),
  MIRROR_IDLE_EVICT_MS: Type.Integer({ default: 7 * 24 * 3_600_000, minimum: 1000 }),
  GIT_TIMEOUT_MS: Type.Integer({ default: 600_000, minimum: 1000 }),
  LOG_LEVEL: Type.String({ default: "info" }),
});

export type RepoPoolConfig = Static<typeof RepoPoolEnv> & {
  natsServers: string[];
  /** How to connect: servers, the service\'s NATS user and password, TLS. */
  nats: ReturnType<typeof natsConnectOptions>;
  security: SecurityPolicy;
  /** Git credentials per host (GIT_CREDENTIALS_FILE, or GIT_PASSWORD / GIT_SSH_KEY_FILE with GIT_CREDENTIAL_HOSTS). */
  gitCredentials: CredentialRule[];
};

export function loadRepoPoolConfig(env: Record<string, string | undefined> = process.env): RepoPoolConfig {
  const c = loadConfig(RepoPoolEnv, env);
  return {
    ...c,
    natsServers: csv(c.NATS_URL),
    nats: natsConnectOptions(c),
    security: securityPolicyFromEnv(env),
    gitCredentials: loadCredentialRules(env),
  };
}

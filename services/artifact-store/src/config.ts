import { readFileSync } from "node:fs";
import { DEFAULT_NAMESPACE } from "@codefleet/contracts";
import { type AccessConfig, accessFromSettings } from "@codefleet/contracts/access";
import { NatsSettings, natsConnectOptions } from "@codefleet/platform/bus";
import { csv, loadConfig } from "@codefleet/platform/runtime";
import { type Static, Type } from "@sinclair/typebox";

export const ArtifactStoreEnv = Type.Object({
  PORT: Type.Integer({ default: 8081, minimum: 0, maximum: 65535 }),
  HOST: Type.String({ default: "0.0.0.0" }),
  DATABASE_URL: Type.String({ minLength: 1, description: "postgres://user:pass@host:5432/db" }),
  DATABASE_SCHEMA: Type.String({ default: "artifacts", pattern: "^[a-z_][a-z0-9_]{0,62}$" }),
  ...NatsSettings,
  CODEFLEET_NAMESPACE: Type.String({ default: DEFAULT_NAMESPACE, pattern: "^[a-z][a-z0-9_-]{0,31}$" }),
  CODEFLEET_ENV: Type.String({ default: "development", description: "production refuses plaintext and development tokens" }),
  CODEFLEET_TOKENS_FILE: Type.Optional(
    Type.String({ minLength: 1, description: "YAML file of API tokens: name, sha256, tenant, scopes (docs/operations.md)" }),
  ),
  CODEFLEET_API_TOKENS: Type.Optional(
    Type.String({ description: "legacy/simple mode: comma-separated bearer tokens, each an admin of tenant 'default'" }),
  ),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, description: "bearer token /metrics requires; unset: /metrics is open" })),
  ARTIFACT_DATA_DIR: Type.String({ default: "/var/lib/codefleet/artifacts", description: "directory holding blobs (a volume)" }),
  MAX_ARTIFACT_BYTES: Type.Integer({ default: 100 * 1024 * 1024, minimum: 1 }),
  VERIFY_CACHE_MS: Type.Integer({ default: 60_000, minimum: 0, description: "how long a verified blob is served without re-hashing" }),
  RETENTION_MAX_AGE_DAYS: Type.Integer({ default: 0, minimum: 0, description: "0 disables age-based retention" }),
  RETENTION_MAX_PER_TASK: Type.Integer({ default: 0, minimum: 0, description: "0 disables the per-task cap" }),
  RETENTION_INTERVAL_MS: Type.Integer({ default: 3_600_000, minimum: 1000 }),
  LOG_LEVEL: Type.String({ default: "info" }),
});

export type ArtifactStoreConfig = Static<typeof ArtifactStoreEnv> & {
  /** Tokens, their tenants and scopes (the same file as the registry's). */
  access: AccessConfig;
  natsServers: string[];
  /** How to connect: servers, the service\'s NATS user and password, TLS. */
  nats: ReturnType<typeof natsConnectOptions>;
};

export function loadArtifactStoreConfig(
  env: Record<string, string | undefined> = process.env,
  readFile: (path: string) => string = (path) => readFileSync(path, "utf8"),
): ArtifactStoreConfig {
  const c = loadConfig(ArtifactStoreEnv, env);
  return { ...c, access: accessFromSettings(c, readFile), natsServers: csv(c.NATS_URL), nats: natsConnectOptions(c) };
}

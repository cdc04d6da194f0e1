import { DEFAULT_NAMESPACE } from "@codefleet/contracts";
import { csv, loadConfig } from "@codefleet/contracts/runtime";
import { type Static, Type } from "@sinclair/typebox";

export const ArtifactStoreEnv = Type.Object({
  PORT: Type.Integer({ default: 8081, minimum: 0, maximum: 65535 }),
  HOST: Type.String({ default: "0.0.0.0" }),
  DATABASE_URL: Type.String({ minLength: 1, description: "postgres://user:pass@host:5432/db" }),
  DATABASE_SCHEMA: Type.String({ default: "artifacts", pattern: "^[a-z_][a-z0-9_]{0,62}$" }),
  NATS_URL: Type.String({ default: "nats://127.0.0.1:4222" }),
  CODEFLEET_NAMESPACE: Type.String({ default: DEFAULT_NAMESPACE, pattern: "^[a-z][a-z0-9_-]{0,31}$" }),
  CODEFLEET_API_TOKENS: Type.String({ minLength: 1, description: "comma-separated bearer tokens accepted by the API" }),
  ARTIFACT_DATA_DIR: Type.String({ default: "/var/lib/codefleet/artifacts", description: "directory holding blobs (a volume)" }),
  MAX_ARTIFACT_BYTES: Type.Integer({ default: 100 * 1024 * 1024, minimum: 1 }),
  VERIFY_CACHE_MS: Type.Integer({ default: 60_000, minimum: 0, description: "how long a verified blob is served without re-hashing" }),
  RETENTION_MAX_AGE_DAYS: Type.Integer({ default: 0, minimum: 0, description: "0 disables age-based retention" }),
  RETENTION_MAX_PER_TASK: Type.Integer({ default: 0, minimum: 0, description: "0 disables the per-task cap" }),
  RETENTION_INTERVAL_MS: Type.Integer({ default: 3_600_000, minimum: 1000 }),
  NATS_STORAGE: Type.Union([Type.Literal("file"), Type.Literal("memory")], { default: "file" }),
  LOG_LEVEL: Type.String({ default: "info" }),
});

export type ArtifactStoreConfig = Static<typeof ArtifactStoreEnv> & { apiTokens: string[]; natsServers: string[] };

export function loadArtifactStoreConfig(env: Record<string, string | undefined> = process.env): ArtifactStoreConfig {
  const c = loadConfig(ArtifactStoreEnv, env);
  return { ...c, apiTokens: csv(c.CODEFLEET_API_TOKENS), natsServers: csv(c.NATS_URL) };
}

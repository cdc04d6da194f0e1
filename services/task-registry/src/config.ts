import { DEFAULT_NAMESPACE } from "@codefleet/contracts";
import { csv, loadConfig } from "@codefleet/contracts/runtime";
import { type Static, Type } from "@sinclair/typebox";

export const RegistryEnv = Type.Object({
  PORT: Type.Integer({ default: 8080, minimum: 1, maximum: 65535 }),
  HOST: Type.String({ default: "0.0.0.0" }),
  DATABASE_URL: Type.String({ minLength: 1, description: "postgres://user:pass@host:5432/db" }),
  DATABASE_SCHEMA: Type.String({ default: "registry", pattern: "^[a-z_][a-z0-9_]{0,62}$" }),
  NATS_URL: Type.String({ default: "nats://127.0.0.1:4222", description: "comma-separated NATS server URLs" }),
  CODEFLEET_NAMESPACE: Type.String({ default: DEFAULT_NAMESPACE, pattern: "^[a-z][a-z0-9_-]{0,31}$" }),
  CODEFLEET_API_TOKENS: Type.String({ minLength: 1, description: "comma-separated bearer tokens accepted by the API" }),
  ARTIFACT_STORE_PUBLIC_URL: Type.String({ default: "http://localhost:8081", description: "base URL clients use to download artifacts" }),
  ARTIFACT_STORE_URL: Type.Optional(
    Type.String({
      description: "the artifact-store as the registry reaches it: serves a task's stored log once the live log stream has expired",
    }),
  ),
  CODEFLEET_API_TOKEN: Type.Optional(Type.String({ minLength: 1, description: "bearer token for the artifact-store" })),
  BODY_LIMIT_BYTES: Type.Integer({ default: 6 * 1024 * 1024, minimum: 1024 }),
  INGEST_BATCH_SIZE: Type.Integer({ default: 256, minimum: 1, maximum: 5000 }),
  NATS_STORAGE: Type.Union([Type.Literal("file"), Type.Literal("memory")], { default: "file" }),
  LOG_LEVEL: Type.String({ default: "info" }),
});

export type RegistryConfig = Static<typeof RegistryEnv> & { apiTokens: string[]; natsServers: string[] };

export function loadRegistryConfig(env: Record<string, string | undefined> = process.env): RegistryConfig {
  const c = loadConfig(RegistryEnv, env);
  return { ...c, apiTokens: csv(c.CODEFLEET_API_TOKENS), natsServers: csv(c.NATS_URL) };
}

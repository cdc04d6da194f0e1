import { DEFAULT_NAMESPACE, type SecurityPolicy, securityPolicyFromEnv } from "@codefleet/contracts";
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
  CODEFLEET_REPO_FILE_ROOTS: Type.Optional(
    Type.String({
      description: "comma-separated absolute directories local repositories (file:// URLs, paths) may lie under; unset: none",
    }),
  ),
  CODEFLEET_REPO_HTTP_HOSTS: Type.Optional(
    Type.String({ description: "comma-separated host, host:port or * that plain http:// repository URLs may use; unset: none" }),
  ),
  CODEFLEET_REPO_ALLOWED_HOSTS: Type.Optional(
    Type.String({ description: "comma-separated host[:port][/path/prefix] repositories must be on; unset: any host" }),
  ),
  CODEFLEET_SECRET_ENDPOINTS: Type.Optional(
    Type.String({
      description: 'JSON object: secret name → hosts an agent baseUrl may send it to, e.g. {"OPENAI_API_KEY":["llm.internal:8443"]}',
    }),
  ),
});

export type RegistryConfig = Static<typeof RegistryEnv> & {
  apiTokens: string[];
  natsServers: string[];
  /** Which repository URLs and agent endpoints a submitted task may name. */
  securityPolicy: SecurityPolicy;
};

export function loadRegistryConfig(env: Record<string, string | undefined> = process.env): RegistryConfig {
  const c = loadConfig(RegistryEnv, env);
  return { ...c, apiTokens: csv(c.CODEFLEET_API_TOKENS), natsServers: csv(c.NATS_URL), securityPolicy: securityPolicyFromEnv(env) };
}

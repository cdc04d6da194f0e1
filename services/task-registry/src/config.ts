import { readFileSync } from "node:fs";
import { DEFAULT_NAMESPACE, type SecurityPolicy, securityPolicyFromEnv } from "@codefleet/contracts";
import { type AccessConfig, accessFromSettings, type TenantQuota } from "@codefleet/contracts/access";
import { NatsSettings, natsConnectOptions } from "@codefleet/platform/bus";
import { csv, loadConfig } from "@codefleet/platform/runtime";
import { type Static, Type } from "@sinclair/typebox";
import { SchedulingEnv, WebhookEnv, type WebhookSettings, webhookSettingsFrom } from "./webhooks/settings.js";

export const RegistryEnv = Type.Object({
  PORT: Type.Integer({ default: 8080, minimum: 1, maximum: 65535 }),
  HOST: Type.String({ default: "0.0.0.0" }),
  DATABASE_URL: Type.String({ minLength: 1, description: "postgres://user:pass@host:5432/db" }),
  DATABASE_SCHEMA: Type.String({ default: "registry", pattern: "^[a-z_][a-z0-9_]{0,62}$" }),
  ...NatsSettings,
  CODEFLEET_NAMESPACE: Type.String({ default: DEFAULT_NAMESPACE, pattern: "^[a-z][a-z0-9_-]{0,31}$" }),
  CODEFLEET_ENV: Type.String({ default: "development", description: "production refuses plaintext and development tokens" }),
  CODEFLEET_TOKENS_FILE: Type.Optional(
    Type.String({ minLength: 1, description: "YAML file of API tokens: name, sha256, tenant, scopes (docs/operations.md)" }),
  ),
  CODEFLEET_API_TOKENS: Type.Optional(
    Type.String({ description: "legacy/simple mode: comma-separated bearer tokens, each an admin of tenant 'default'" }),
  ),
  CODEFLEET_TENANT_MAX_RUNNING: Type.Integer({
    default: 0,
    minimum: 0,
    description: "default quota of running tasks per tenant (0: no limit); tenants: in the tokens file overrides it",
  }),
  CODEFLEET_TENANT_MAX_QUEUED: Type.Integer({
    default: 0,
    minimum: 0,
    description: "default quota of queued tasks per tenant (0: no limit); tenants: in the tokens file overrides it",
  }),
  QUOTA_RETRY_AFTER_SECONDS: Type.Integer({ default: 30, minimum: 1, maximum: 3600, description: "Retry-After of a 429 quota_exceeded" }),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, description: "bearer token /metrics requires; unset: /metrics is open" })),
  ARTIFACT_STORE_PUBLIC_URL: Type.String({ default: "http://localhost:8081", description: "base URL clients use to download artifacts" }),
  ARTIFACT_STORE_URL: Type.Optional(
    Type.String({
      description: "the artifact-store as the registry reaches it: serves a task's stored log once the live log stream has expired",
    }),
  ),
  CODEFLEET_API_TOKEN: Type.Optional(
    Type.String({ minLength: 1, description: "the registry's own token for the artifact-store (artifacts:read, tenant '*')" }),
  ),
  BODY_LIMIT_BYTES: Type.Integer({ default: 1024 * 1024, minimum: 1024, description: "largest request body accepted (413 beyond)" }),
  INGEST_BATCH_SIZE: Type.Integer({ default: 256, minimum: 1, maximum: 5000 }),
  INGEST_MAX_BYTES: Type.Integer({
    default: 64 * 1024 * 1024,
    minimum: 9 * 1024 * 1024,
    description: "bytes of events the ingestion pulls ahead at most (above the 8 MiB largest event)",
  }),
  LOG_LEVEL: Type.String({ default: "info" }),
  DASHBOARD_DIR: Type.Optional(
    Type.String({
      minLength: 1,
      description: "the web dashboard's build, served at /; unset: services/dashboard/dist; off: no dashboard",
    }),
  ),
  DASHBOARD_JAEGER_URL: Type.String({ default: "http://localhost:16686", description: "Jaeger UI the dashboard links traces to" }),
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
  CODEFLEET_SECRET_TENANTS: Type.Optional(
    Type.String({
      description:
        'JSON object: secret name → tenants whose tasks may use it (or "*"), e.g. {"OPENAI_API_KEY":["*"],"NPM_TOKEN":["team-a"]}; a secret without an entry: tenant default only',
    }),
  ),
  ...SchedulingEnv,
  ...WebhookEnv,
});

export type RegistryConfig = Static<typeof RegistryEnv> & {
  /** Tokens, their tenants and scopes, and the tenants' quotas. */
  access: AccessConfig;
  /** Quota of a tenant the tokens file says nothing about. */
  defaultQuota: Required<TenantQuota>;
  natsServers: string[];
  /** How to connect: servers, the service\'s NATS user and password, TLS. */
  nats: ReturnType<typeof natsConnectOptions>;
  /** Which repository URLs and agent endpoints a submitted task may name. */
  securityPolicy: SecurityPolicy;
  /** Webhooks: signing secrets, tenants' default URLs, retries. */
  webhooks: WebhookSettings;
};

export function loadRegistryConfig(
  env: Record<string, string | undefined> = process.env,
  readFile: (path: string) => string = (path) => readFileSync(path, "utf8"),
): RegistryConfig {
  const c = loadConfig(RegistryEnv, env);
  return {
    ...c,
    access: accessFromSettings(c, readFile),
    defaultQuota: { maxRunning: c.CODEFLEET_TENANT_MAX_RUNNING, maxQueued: c.CODEFLEET_TENANT_MAX_QUEUED },
    natsServers: csv(c.NATS_URL),
    nats: natsConnectOptions(c),
    securityPolicy: securityPolicyFromEnv(env),
    webhooks: webhookSettingsFrom(c, readFile),
  };
}

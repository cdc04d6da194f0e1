import { CodefleetError, TENANT_NAME_PATTERN } from "@codefleet/contracts";
import { type Static, type TObject, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { parse as parseYaml } from "yaml";

/** The scheduler's and the notifier's environment (part of RegistryEnv). */
export const SchedulingEnv = {
  SCHEDULER_TICK_MS: Type.Integer({
    default: 1000,
    minimum: 20,
    maximum: 60_000,
    description: "how often the scheduler's leader looks for due firings",
  }),
  SCHEDULER_LEASE_MS: Type.Integer({
    default: 15_000,
    minimum: 300,
    maximum: 600_000,
    description: "the scheduler leader's lease in NATS KV: a follower takes over within about 4/3 of it after the leader stops",
  }),
};

export const WebhookEnv = {
  REGISTRY_PUBLIC_URL: Type.String({
    default: "http://localhost:8080",
    description: "the registry's URL as clients reach it (links in webhooks)",
  }),
  CODEFLEET_WEBHOOKS_FILE: Type.Optional(
    Type.String({ minLength: 1, description: "YAML file: signing secret(s) and tenants' default webhook URLs (docs/operations.md)" }),
  ),
  CODEFLEET_WEBHOOK_SECRET: Type.Optional(
    Type.String({ minLength: 16, description: "signing secret of webhooks of tenants without their own in CODEFLEET_WEBHOOKS_FILE" }),
  ),
  CODEFLEET_WEBHOOK_HTTP_HOSTS: Type.Optional(
    Type.String({
      description: "comma-separated host, host:port or * that plain http:// task webhooks (spec.notify) may use; unset: none",
    }),
  ),
  CODEFLEET_WEBHOOK_PRIVATE_HOSTS: Type.Optional(
    Type.String({
      description: "comma-separated host, host:port or * task webhooks may reach on loopback, private or link-local addresses; unset: none",
    }),
  ),
  WEBHOOK_MAX_ATTEMPTS: Type.Integer({
    default: 8,
    minimum: 1,
    maximum: 50,
    description: "attempts per webhook delivery before it is given up",
  }),
  WEBHOOK_RETRY_BASE_MS: Type.Integer({ default: 5000, minimum: 10, description: "delay before the 2nd attempt; doubles each time" }),
  WEBHOOK_RETRY_MAX_MS: Type.Integer({ default: 15 * 60_000, minimum: 10, description: "longest delay between two attempts" }),
  WEBHOOK_TIMEOUT_MS: Type.Integer({ default: 10_000, minimum: 100, maximum: 120_000, description: "one attempt's time limit" }),
  WEBHOOK_POLL_MS: Type.Integer({
    default: 1000,
    minimum: 20,
    maximum: 60_000,
    description: "how often the notifier looks for due deliveries",
  }),
};

const SecretText = Type.String({ minLength: 16, maxLength: 1024 });
const TenantWebhook = Type.Object(
  {
    /** The tenant's default webhook: every task of the tenant that ends is sent there. Operator-trusted (no address policy). */
    url: Type.Optional(Type.String({ pattern: "^https?://", maxLength: 2048 })),
    secret: Type.Optional(SecretText),
    secretFile: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);
const WebhooksFile = Type.Object(
  {
    /** Signs the webhooks of tenants without a secret of their own. */
    secret: Type.Optional(SecretText),
    secretFile: Type.Optional(Type.String({ minLength: 1 })),
    tenants: Type.Optional(Type.Record(Type.String({ pattern: TENANT_NAME_PATTERN }), TenantWebhook)),
  },
  { additionalProperties: false },
);

export type TenantWebhookSettings = { url?: string; secret?: string };

/** Webhook configuration: secrets stay here and in the notifier, never in events or logs. */
export type WebhookSettings = {
  /** Signs every tenant's webhooks that has no secret of its own. */
  defaultSecret?: string;
  tenants: Record<string, TenantWebhookSettings>;
  publicUrl: string;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  timeoutMs: number;
  pollMs: number;
};

/** The signing secret of a tenant's webhooks (undefined: none configured, deliveries fail `no_signing_secret`). */
export function signingSecretFor(settings: Pick<WebhookSettings, "defaultSecret" | "tenants">, tenant: string): string | undefined {
  return (Object.hasOwn(settings.tenants, tenant) ? settings.tenants[tenant]?.secret : undefined) ?? settings.defaultSecret;
}

function configError(message: string): CodefleetError {
  return new CodefleetError("invalid_config", message, { retry: { kind: "never" } });
}

type Env = Static<TObject<typeof WebhookEnv>>;

export function webhookSettingsFrom(c: Env, readFile: (path: string) => string): WebhookSettings {
  const where = c.CODEFLEET_WEBHOOKS_FILE;
  let file: Static<typeof WebhooksFile> = {};
  if (where) {
    let parsed: unknown;
    try {
      parsed = parseYaml(readFile(where));
    } catch (err) {
      throw configError(`CODEFLEET_WEBHOOKS_FILE ${where}: cannot read it as YAML (${(err as Error).message.split("\n")[0]})`);
    }
    if (!Value.Check(WebhooksFile, parsed ?? {})) {
      const first = [...Value.Errors(WebhooksFile, parsed ?? {})][0];
      throw configError(`CODEFLEET_WEBHOOKS_FILE ${where}: ${first?.path || "(file)"} ${first?.message ?? "is invalid"}`);
    }
    file = (parsed ?? {}) as Static<typeof WebhooksFile>;
  }
  const secretOf = (what: string, s: { secret?: string; secretFile?: string }): string | undefined => {
    if (s.secret !== undefined && s.secretFile !== undefined)
      throw configError(`CODEFLEET_WEBHOOKS_FILE: ${what} has both secret and secretFile`);
    if (s.secretFile === undefined) return s.secret;
    const text = readFile(s.secretFile).trim();
    if (text.length < 16) throw configError(`CODEFLEET_WEBHOOKS_FILE: ${what}'s secretFile holds fewer than 16 characters`);
    return text;
  };
  const tenants: Record<string, TenantWebhookSettings> = {};
  for (const [tenant, t] of Object.entries(file.tenants ?? {})) {
    const secret = secretOf(`tenant ${tenant}`, t);
    tenants[tenant] = { ...(t.url ? { url: t.url } : {}), ...(secret ? { secret } : {}) };
  }
  const defaultSecret = secretOf("the file", file) ?? c.CODEFLEET_WEBHOOK_SECRET;
  return {
    ...(defaultSecret ? { defaultSecret } : {}),
    tenants,
    publicUrl: c.REGISTRY_PUBLIC_URL.replace(/\/+$/, ""),
    maxAttempts: c.WEBHOOK_MAX_ATTEMPTS,
    retryBaseMs: c.WEBHOOK_RETRY_BASE_MS,
    retryMaxMs: c.WEBHOOK_RETRY_MAX_MS,
    timeoutMs: c.WEBHOOK_TIMEOUT_MS,
    pollMs: c.WEBHOOK_POLL_MS,
  };
}

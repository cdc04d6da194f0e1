import { createHash, timingSafeEqual } from "node:crypto";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { parse as parseYaml } from "yaml";
import { CodefleetError } from "../errors.js";
import { DEFAULT_TENANT, TENANT_NAME_PATTERN } from "../events.js";

/**
 * Who may do what: API tokens, the tenant each belongs to and its scopes, and the tenants' quotas.
 * Pure: it parses the tokens file's text and answers questions; reading the file is the caller's.
 * Tokens are kept only as sha256 digests and compared in constant time.
 */

export const SCOPES = ["tasks:read", "tasks:submit", "tasks:cancel", "artifacts:read", "artifacts:write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

/** The tenant of a token that acts for every tenant: the services' own tokens (the runner's, the registry's). */
export const ALL_TENANTS = "*";

/** The development tokens the compose stack ships (deploy/dev-tokens.yaml): refused when CODEFLEET_ENV=production. */
export const DEVELOPMENT_TOKENS: readonly string[] = [
  "codefleet-dev-token",
  "codefleet-dev-reader",
  "codefleet-dev-other",
  "codefleet-dev-runner",
  "codefleet-dev-registry",
];

const TENANT_RE = new RegExp(TENANT_NAME_PATTERN);
const TOKEN_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
/** Plaintext tokens in the file (development only) must be at least this long. */
export const MIN_PLAINTEXT_TOKEN_LENGTH = 16;

export class AccessConfigError extends CodefleetError {
  override readonly name = "AccessConfigError";
  constructor(message: string) {
    super("invalid_access_config", message, { retry: { kind: "never" } });
  }
}

/** Who a request is: a token's name (never the token), its tenant (or `*`) and its scopes. */
export type Principal = { readonly name: string; readonly tenant: string; readonly scopes: ReadonlySet<Scope> };

/** Quota of one tenant; 0 or absent: no limit. */
export type TenantQuota = { maxRunning?: number; maxQueued?: number };

export type TokenEntry = { name: string; tenant: string; scopes: readonly Scope[]; sha256: string };

export type AccessConfig = {
  tokens: readonly TokenEntry[];
  tenants: Readonly<Record<string, TenantQuota>>;
};

export function sha256Hex(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

const DEVELOPMENT_HASHES = new Set(DEVELOPMENT_TOKENS.map(sha256Hex));

/** True when the token (or the digest of one) is one of the shipped development tokens. */
export function isDevelopmentToken(token: { plain: string } | { sha256: string }): boolean {
  return DEVELOPMENT_HASHES.has("plain" in token ? sha256Hex(token.plain) : token.sha256.toLowerCase());
}

const Quota = Type.Object(
  {
    maxRunning: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
    maxQueued: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  },
  { additionalProperties: false },
);

const TokenFileEntry = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    sha256: Type.Optional(Type.String()),
    token: Type.Optional(Type.String()),
    tenant: Type.String({ minLength: 1, maxLength: 63 }),
    scopes: Type.Array(Type.String(), { minItems: 1, maxItems: SCOPES.length }),
  },
  { additionalProperties: false },
);

const TokensFile = Type.Object(
  {
    tokens: Type.Array(TokenFileEntry, { maxItems: 10_000 }),
    tenants: Type.Optional(Type.Record(Type.String(), Quota)),
  },
  { additionalProperties: false },
);
type TokensFile = Static<typeof TokensFile>;

/**
 * Parses a tokens file (YAML or JSON):
 *
 * ```yaml
 * tokens:
 *   - name: ci-bot                 # shown in events as submittedBy / requestedBy
 *     sha256: 9f86d0…              # sha256 of the token, hex; `token: <plaintext>` only outside production
 *     tenant: team-a               # or "*" for a service token acting for every tenant
 *     scopes: [tasks:submit, tasks:read]
 * tenants:                          # optional quotas; 0 = no limit
 *   team-a: { maxRunning: 5, maxQueued: 50 }
 * ```
 *
 * Throws AccessConfigError naming the entry at fault; the message never contains a token.
 */
export function parseTokensFile(text: string, opts: { production: boolean; source?: string }): AccessConfig {
  const where = opts.source ?? "tokens file";
  let raw: unknown;
  try {
    raw = parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new AccessConfigError(`${where}: not valid YAML (${(err as Error).message.split("\n")[0]})`);
  }
  if (!Value.Check(TokensFile, raw)) {
    const first = [...Value.Errors(TokensFile, raw)].slice(0, 5).map((e) => `${e.path || "/"} ${e.message}`);
    throw new AccessConfigError(`${where}: ${first.join("; ")}`);
  }
  const file = raw as TokensFile;
  const names = new Set<string>();
  const hashes = new Map<string, string>();
  const tokens: TokenEntry[] = [];
  for (const [i, e] of file.tokens.entries()) {
    const at = `${where}: tokens[${i}]`;
    if (!TOKEN_NAME_RE.test(e.name)) throw new AccessConfigError(`${at}: name must be letters, digits, '.', '_' or '-'`);
    if (names.has(e.name)) throw new AccessConfigError(`${at}: the name '${e.name}' is used twice`);
    names.add(e.name);
    const label = `${at} (${e.name})`;
    if (e.tenant !== ALL_TENANTS && !TENANT_RE.test(e.tenant))
      throw new AccessConfigError(`${label}: tenant must match ${TENANT_NAME_PATTERN} (or be "*" for every tenant)`);
    const scopes = [...new Set(e.scopes)];
    const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (unknown.length) throw new AccessConfigError(`${label}: unknown scope '${unknown[0]}' (one of ${SCOPES.join(", ")})`);
    if ((e.sha256 === undefined) === (e.token === undefined)) throw new AccessConfigError(`${label}: give exactly one of sha256 or token`);
    let sha256: string;
    if (e.token !== undefined) {
      if (opts.production)
        throw new AccessConfigError(`${label}: plaintext 'token' is refused when CODEFLEET_ENV=production; give its sha256 instead`);
      if (e.token.length < MIN_PLAINTEXT_TOKEN_LENGTH || /\s/.test(e.token))
        throw new AccessConfigError(`${label}: a token must be at least ${MIN_PLAINTEXT_TOKEN_LENGTH} characters, without whitespace`);
      sha256 = sha256Hex(e.token);
    } else {
      sha256 = (e.sha256 as string).toLowerCase();
      if (!SHA256_RE.test(sha256)) throw new AccessConfigError(`${label}: sha256 must be 64 hex digits (printf %s "$TOKEN" | sha256sum)`);
    }
    const twin = hashes.get(sha256);
    if (twin) throw new AccessConfigError(`${label}: the same token as '${twin}'`);
    hashes.set(sha256, e.name);
    tokens.push({ name: e.name, tenant: e.tenant, scopes: scopes as Scope[], sha256 });
  }
  const tenants: Record<string, TenantQuota> = {};
  for (const [name, q] of Object.entries(file.tenants ?? {})) {
    if (!TENANT_RE.test(name)) throw new AccessConfigError(`${where}: tenants.${name}: a tenant name must match ${TENANT_NAME_PATTERN}`);
    tenants[name] = { ...q };
  }
  return { tokens, tenants };
}

/**
 * The legacy, simple mode: `CODEFLEET_API_TOKENS` (a comma list). Each is an admin token of the
 * `default` tenant, named `api-token-<n>` (its position in the list).
 */
export function legacyTokens(tokens: readonly string[]): TokenEntry[] {
  return tokens.map((t, i) => ({ name: `api-token-${i + 1}`, tenant: DEFAULT_TENANT, scopes: ["admin"], sha256: sha256Hex(t) }));
}

/**
 * Everything the services accept, from the tokens file (its text) and the legacy list. Refuses
 * an empty configuration, the same token twice, and (production) the development tokens.
 */
export function accessConfig(opts: {
  tokensFileText?: string;
  tokensFileSource?: string;
  legacy: readonly string[];
  production: boolean;
}): AccessConfig {
  const file =
    opts.tokensFileText === undefined
      ? undefined
      : parseTokensFile(opts.tokensFileText, {
          production: opts.production,
          ...(opts.tokensFileSource ? { source: opts.tokensFileSource } : {}),
        });
  const tokens = [...(file?.tokens ?? [])];
  const names = new Set(tokens.map((t) => t.name));
  const hashes = new Set(tokens.map((t) => t.sha256));
  for (const t of legacyTokens(opts.legacy)) {
    if (hashes.has(t.sha256)) continue; // listed in both places: the file's entry (its tenant and scopes) wins
    let name = t.name;
    for (let n = 2; names.has(name); n++) name = `${t.name}-${n}`;
    names.add(name);
    hashes.add(t.sha256);
    tokens.push({ ...t, name });
  }
  if (tokens.length === 0) throw new AccessConfigError("no API token is configured: set CODEFLEET_TOKENS_FILE or CODEFLEET_API_TOKENS");
  if (opts.production) {
    const dev = tokens.find((t) => isDevelopmentToken({ sha256: t.sha256 }));
    if (dev) throw new AccessConfigError(`'${dev.name}' is a development token, refused when CODEFLEET_ENV=production`);
  }
  return { tokens, tenants: file?.tenants ?? {} };
}

/** The settings every service reads the same way (their config schemas name these variables). */
export type AccessSettings = {
  CODEFLEET_ENV: string;
  CODEFLEET_TOKENS_FILE?: string | undefined;
  CODEFLEET_API_TOKENS?: string | undefined;
  /** The service's own outgoing token, if it has one: refused in production when it is a development token. */
  CODEFLEET_API_TOKEN?: string | undefined;
};

/**
 * The access configuration from a service's settings. `readFile` is the edge (the service passes
 * `readFileSync`); everything else is parsing and checking.
 */
export function accessFromSettings(s: AccessSettings, readFile: (path: string) => string): AccessConfig {
  const production = s.CODEFLEET_ENV === "production";
  if (production && s.CODEFLEET_API_TOKEN && isDevelopmentToken({ plain: s.CODEFLEET_API_TOKEN }))
    throw new AccessConfigError("CODEFLEET_API_TOKEN is a development token, refused when CODEFLEET_ENV=production");
  let text: string | undefined;
  if (s.CODEFLEET_TOKENS_FILE) {
    try {
      text = readFile(s.CODEFLEET_TOKENS_FILE);
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as Error).message;
      throw new AccessConfigError(`CODEFLEET_TOKENS_FILE: cannot read ${s.CODEFLEET_TOKENS_FILE} (${code})`);
    }
  }
  const legacy = (s.CODEFLEET_API_TOKENS ?? "")
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
  return accessConfig({
    ...(text === undefined ? {} : { tokensFileText: text, tokensFileSource: `CODEFLEET_TOKENS_FILE (${s.CODEFLEET_TOKENS_FILE})` }),
    legacy,
    production,
  });
}

export type TokenVerifier = {
  /** The principal of a presented token, or undefined. Constant time in the token: every entry is compared. */
  authenticate(token: string): Principal | undefined;
};

export function tokenVerifier(config: AccessConfig): TokenVerifier {
  const entries = config.tokens.map((t) => ({
    digest: Buffer.from(t.sha256, "hex"),
    principal: { name: t.name, tenant: t.tenant, scopes: new Set(t.scopes) } satisfies Principal,
  }));
  return {
    authenticate(token: string): Principal | undefined {
      const digest = createHash("sha256").update(token, "utf8").digest();
      let found: Principal | undefined;
      for (const e of entries) {
        // digests have one length: no early exit, the same work whichever entry matches
        const same = timingSafeEqual(e.digest, digest);
        if (same && !found) found = e.principal;
      }
      return found;
    },
  };
}

/** `admin` holds every scope. */
export function hasScope(p: Principal, scope: Scope): boolean {
  return p.scopes.has(scope) || p.scopes.has("admin");
}

/** Whether the principal may see things of `tenant` (a task, its logs, its artifacts). */
export function canAccessTenant(p: Principal, tenant: string | undefined): boolean {
  return p.tenant === ALL_TENANTS || p.tenant === (tenant ?? DEFAULT_TENANT);
}

/** The tenant a principal's submissions belong to: its own; `default` for a token of every tenant. */
export function submissionTenant(p: Principal): string {
  return p.tenant === ALL_TENANTS ? DEFAULT_TENANT : p.tenant;
}

/** The tenant filter of a principal's lists: undefined for a token of every tenant. */
export function tenantFilter(p: Principal): string | undefined {
  return p.tenant === ALL_TENANTS ? undefined : p.tenant;
}

/** A tenant's quota: its own values from the tokens file, else the defaults (0: no limit). */
export function quotaFor(config: AccessConfig, tenant: string, defaults: Required<TenantQuota>): Required<TenantQuota> {
  const own = config.tenants[tenant] ?? {};
  return { maxRunning: own.maxRunning ?? defaults.maxRunning, maxQueued: own.maxQueued ?? defaults.maxQueued };
}

/** Whether admission must count anything: a quota without a queue limit admits everything (see decideAdmission). */
export function quotaLimitsAdmission(quota: Required<TenantQuota>): boolean {
  return quota.maxQueued > 0;
}

/** The decision on a new task of a tenant with these counts (pending admissions count as queued). */
export type Admission = { kind: "admit" } | { kind: "refuse"; limit: "maxQueued" | "maxRunning"; max: number; message: string };

/**
 * Admission under a quota. At most `maxQueued` tasks wait. The runners start queued tasks without
 * asking the registry, so the running cap is enforced here as a bound on tasks in flight: at most
 * `maxRunning + maxQueued` queued or running (a tenant runs more than `maxRunning` at once only by
 * using its queue's allowance). With no queue limit, `maxRunning` is left to the scheduler.
 */
export function decideAdmission(counts: { queued: number; running: number }, quota: Required<TenantQuota>): Admission {
  const { maxQueued, maxRunning } = quota;
  if (maxQueued <= 0) return { kind: "admit" };
  if (counts.queued >= maxQueued)
    return {
      kind: "refuse",
      limit: "maxQueued",
      max: maxQueued,
      message: `the tenant has ${counts.queued} queued tasks (at most ${maxQueued})`,
    };
  if (maxRunning > 0 && counts.queued + counts.running >= maxRunning + maxQueued)
    return {
      kind: "refuse",
      limit: "maxRunning",
      max: maxRunning,
      message: `the tenant has ${counts.running} running and ${counts.queued} queued tasks (at most ${maxRunning} running + ${maxQueued} queued)`,
    };
  return { kind: "admit" };
}

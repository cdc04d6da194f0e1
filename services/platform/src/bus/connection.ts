import { readFileSync } from "node:fs";
import { CodefleetError, errorMessage } from "@codefleet/contracts";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Type } from "@sinclair/typebox";
import { retry } from "../runtime/retry.js";
import { inboxPrefixFor } from "./permissions.js";

/** The connection type, for code that holds one and hands it to the bus (no import of NATS of its own). */
export type { NatsConnection };

/** The NATS settings every service's config schema includes (environment variables). */
export const NatsSettings = {
  NATS_URL: Type.String({ default: "nats://127.0.0.1:4222", description: "comma-separated NATS server URLs" }),
  NATS_USER: Type.Optional(Type.String({ pattern: "^[a-z0-9][a-z0-9_-]{0,62}$", description: "the service's NATS user" })),
  NATS_PASSWORD: Type.Optional(Type.String({ description: "its password (or NATS_PASSWORD_FILE)" })),
  NATS_PASSWORD_FILE: Type.Optional(Type.String({ description: "a file holding the NATS password (a mounted secret)" })),
  NATS_TLS_CA_FILE: Type.Optional(Type.String({ description: "CA bundle to verify the NATS server's certificate (tls:// URLs)" })),
  NATS_STORAGE: Type.Union([Type.Literal("file"), Type.Literal("memory")], {
    default: "file",
    description: "storage of codefleet's streams and KV buckets (memory: tests only)",
  }),
  NATS_REPLICAS: Type.Integer({
    default: 1,
    minimum: 1,
    maximum: 5,
    description: "copies of each stream and KV bucket in a JetStream cluster (3 on a three-node cluster); the same for every service",
  }),
};

type NatsSettingsValues = {
  NATS_URL: string;
  NATS_USER?: string | undefined;
  NATS_PASSWORD?: string | undefined;
  NATS_PASSWORD_FILE?: string | undefined;
  NATS_TLS_CA_FILE?: string | undefined;
};

/** How the services' streams and KV buckets are stored: every service ensures them with the same settings. */
export function natsStreamSettings(c: { NATS_STORAGE?: "file" | "memory" | undefined; NATS_REPLICAS?: number | undefined }): {
  storage: "file" | "memory";
  replicas: number;
} {
  return { storage: c.NATS_STORAGE ?? "file", replicas: c.NATS_REPLICAS ?? 1 };
}

/** Connection options from a service's NATS settings (the password file is read here, once). */
export function natsConnectOptions(
  c: NatsSettingsValues,
  readFile: (path: string) => string = (p) => readFileSync(p, "utf8"),
): Pick<ConnectOptions, "servers" | "user" | "pass" | "tlsCaFile"> {
  const servers = c.NATS_URL.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (c.NATS_PASSWORD && c.NATS_PASSWORD_FILE)
    throw new CodefleetError("invalid_config", "set NATS_PASSWORD or NATS_PASSWORD_FILE, not both", { retry: { kind: "never" } });
  const pass = c.NATS_PASSWORD_FILE ? readFile(c.NATS_PASSWORD_FILE).replace(/\r?\n$/, "") : c.NATS_PASSWORD;
  if ((c.NATS_USER === undefined) !== (pass === undefined))
    throw new CodefleetError("invalid_config", "NATS_USER and a NATS password go together", { retry: { kind: "never" } });
  return {
    servers,
    ...(c.NATS_USER && pass !== undefined ? { user: c.NATS_USER, pass } : {}),
    ...(c.NATS_TLS_CA_FILE ? { tlsCaFile: c.NATS_TLS_CA_FILE } : {}),
  };
}

export type ConnectOptions = {
  servers: string | string[];
  /** Connection name shown by the server (`nats server report connections`). */
  name: string;
  /** Give up starting after this long; reconnects after the first connection are unbounded. */
  connectTimeoutMs?: number;
  token?: string;
  /** A user's connection uses the user's own inbox prefix (`_INBOX_<user>`), which its permissions allow. */
  user?: string;
  pass?: string;
  /** Verify the server's TLS certificate against this CA bundle (and require TLS). */
  tlsCaFile?: string;
  log?: (level: "info" | "warn", msg: string, fields?: Record<string, unknown>) => void;
};

/**
 * Connects with retry: a service that starts before NATS waits for it (up to connectTimeoutMs)
 * instead of crashing, and once connected it reconnects forever.
 */
export async function connectNats(opts: ConnectOptions): Promise<NatsConnection> {
  let nc: NatsConnection;
  try {
    nc = await retry(
      () =>
        connect({
          servers: opts.servers,
          name: opts.name,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 1000,
          timeout: 5000,
          ...(opts.token ? { token: opts.token } : {}),
          ...(opts.user ? { user: opts.user, pass: opts.pass ?? "", inboxPrefix: inboxPrefixFor(opts.user) } : {}),
          ...(opts.tlsCaFile ? { tls: { caFile: opts.tlsCaFile } } : {}),
        }),
      {
        attempts: Number.POSITIVE_INFINITY,
        withinMs: opts.connectTimeoutMs ?? 60_000,
        baseDelayMs: 500,
        maxDelayMs: 3000,
        retryable: () => true,
        onRetry: (err, { attempt }) => opts.log?.("warn", "nats not reachable yet, retrying", { attempt, error: errorMessage(err) }),
      },
    );
  } catch (err) {
    throw new CodefleetError("nats_unreachable", `could not connect to NATS at ${String(opts.servers)}: ${errorMessage(err)}`, {
      cause: err,
      retry: { kind: "never" },
    });
  }
  warnOnOldServer(nc, opts.log);
  if (opts.log) {
    const log = opts.log;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect" || s.type === "reconnect") log("warn", `nats ${s.type}`, { server: s.server });
      }
    })().catch(() => undefined);
  }
  return nc;
}

/** NATS before 2.10 cannot be told to fsync every write (`sync_interval: always`). */
function warnOnOldServer(nc: NatsConnection, log: ConnectOptions["log"]): void {
  const version = nc.info?.version;
  if (!version || !log) return;
  const [major = 0, minor = 0] = version.split(".").map((n) => Number.parseInt(n, 10));
  if (major < 2 || (major === 2 && minor < 10)) {
    log(
      "warn",
      "NATS server is older than 2.10: JetStream cannot be configured with sync_interval=always, so an acknowledged write can be lost on power failure",
      { version },
    );
  }
}

export function serverVersionAtLeast(nc: NatsConnection, major: number, minor: number): boolean {
  const [ma = 0, mi = 0] = (nc.info?.version ?? "0.0").split(".").map((n) => Number.parseInt(n, 10));
  return ma > major || (ma === major && mi >= minor);
}

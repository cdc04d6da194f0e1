import { connect, type NatsConnection } from "@nats-io/transport-node";
import { CodefleetError, errorMessage } from "../errors.js";

export type ConnectOptions = {
  servers: string | string[];
  /** Connection name shown by the server (`nats server report connections`). */
  name: string;
  /** Give up starting after this long; reconnects after the first connection are unbounded. */
  connectTimeoutMs?: number;
  token?: string;
  user?: string;
  pass?: string;
  log?: (level: "info" | "warn", msg: string, fields?: Record<string, unknown>) => void;
};

/**
 * Connects with retry: a service that starts before NATS waits for it (up to connectTimeoutMs)
 * instead of crashing, and once connected it reconnects forever.
 */
export async function connectNats(opts: ConnectOptions): Promise<NatsConnection> {
  const deadline = Date.now() + (opts.connectTimeoutMs ?? 60_000);
  let attempt = 0;
  let lastError: unknown;
  while (Date.now() < deadline) {
    attempt++;
    try {
      const nc = await connect({
        servers: opts.servers,
        name: opts.name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1000,
        timeout: 5000,
        ...(opts.token ? { token: opts.token } : {}),
        ...(opts.user ? { user: opts.user, pass: opts.pass ?? "" } : {}),
      });
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
    } catch (err) {
      lastError = err;
      opts.log?.("warn", "nats not reachable yet, retrying", { attempt, error: errorMessage(err) });
      await new Promise((r) => setTimeout(r, Math.min(500 * attempt, 3000)));
    }
  }
  throw new CodefleetError("nats_unreachable", `could not connect to NATS at ${String(opts.servers)}: ${errorMessage(lastError)}`, {
    cause: lastError,
    retry: { kind: "never" },
  });
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

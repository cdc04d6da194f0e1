import type { RpcReply } from "@codefleet/contracts";
import { CodefleetError, isCodefleetError, topology as makeTopology } from "@codefleet/contracts";
import { type Msg, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { type Context, context as otelContext } from "@opentelemetry/api";
import { decoder, encoder } from "./context.js";
import { extractFromHeaders, injectIntoHeaders } from "./trace-context.js";

/**
 * Request/reply over core NATS on `<ns>.rpc.<service>.<verb>` (see ../rpc.ts for the shapes): a
 * request is JSON with the trace context in its headers; every reply is `{ ok: true, result }` or
 * `{ ok: false, error: { code, message, retryable } }`, the error's code and retry meaning taken
 * from the handler's {@link CodefleetError} (anything else is an `internal_error`, its message not
 * sent).
 */

/** A core NATS subscription (an RPC server's, or a listener's). */
export type Listener = {
  unsubscribe(): void;
  /** Lets the messages already received be handled, then unsubscribes. */
  drain(): Promise<void>;
};

export type RpcRequest = {
  subject: string;
  /** The caller's trace context (from the request's headers). */
  traceContext: Context;
  /** The request's JSON body (`{}` when empty); throws `invalid_json` when it is not JSON. */
  body(): unknown;
};

export type RpcHandler = (req: RpcRequest) => Promise<unknown>;

/** The reply a handler's outcome becomes. */
export function rpcReplyOf(outcome: { result: unknown } | { error: unknown }): RpcReply<unknown> {
  if ("result" in outcome) return { ok: true, result: outcome.result };
  const err = outcome.error;
  return isCodefleetError(err)
    ? { ok: false, error: { code: err.code, message: err.message, retryable: err.retry.kind !== "never" } }
    : { ok: false, error: { code: "internal_error", message: "internal error", retryable: true } };
}

/** Serves one subject in a queue group (each request goes to one member of the group). */
export function serveRpc(nc: NatsConnection, subject: string, queue: string, handle: RpcHandler): Listener {
  return nc.subscribe(subject, {
    queue,
    callback: (err, msg) => {
      if (err) return;
      void answer(msg, handle);
    },
  });
}

async function answer(msg: Msg, handle: RpcHandler): Promise<void> {
  const req: RpcRequest = {
    subject: msg.subject,
    traceContext: extractFromHeaders(msg.headers),
    body: () => {
      try {
        return msg.data.length ? JSON.parse(decoder.decode(msg.data)) : {};
      } catch {
        throw new CodefleetError("invalid_json", "request is not JSON", { retry: { kind: "never" } });
      }
    },
  };
  let reply: RpcReply<unknown>;
  try {
    reply = rpcReplyOf({ result: await handle(req) });
  } catch (error) {
    reply = rpcReplyOf({ error });
  }
  msg.respond(encoder.encode(JSON.stringify(reply)));
}

/**
 * The client side of one service's API. A request lost with the connection fails at the
 * disconnect rather than at its (possibly long) timeout, so the caller can ask again at once.
 */
export class RpcClient {
  private readonly subject: (verb: string) => string;
  /** Requests in flight: a lost connection loses them, so they fail at once rather than at their timeout. */
  private readonly pending = new Set<(err: Error) => void>();

  constructor(
    private readonly nc: NatsConnection,
    opts: { namespace?: string | undefined; service: string },
  ) {
    const t = makeTopology(opts.namespace);
    this.subject = (verb) => t.subjects.rpc(opts.service, verb);
    void this.failPendingOnDisconnect();
  }

  private async failPendingOnDisconnect(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type !== "disconnect") continue;
      for (const fail of this.pending) fail(new Error("the connection to NATS was lost"));
      this.pending.clear();
    }
  }

  /**
   * Sends `body` as JSON to `verb` and waits up to `timeoutMs` for the reply. Rejects when no
   * answer comes (no responders, the time is up, the connection was lost); resolves with the
   * reply, whether it says `ok` or not.
   */
  async request<T>(verb: string, body: unknown, opts: { timeoutMs: number; ctx?: Context }): Promise<RpcReply<T>> {
    const h = natsHeaders();
    injectIntoHeaders(opts.ctx ?? otelContext.active(), h);
    let fail: ((err: Error) => void) | undefined;
    let msg: Msg;
    try {
      const lost = new Promise<never>((_, reject) => {
        fail = reject;
        this.pending.add(reject);
      });
      msg = await Promise.race([
        this.nc.request(this.subject(verb), encoder.encode(JSON.stringify(body)), { timeout: opts.timeoutMs, headers: h }),
        lost,
      ]);
    } finally {
      if (fail) this.pending.delete(fail);
    }
    return JSON.parse(decoder.decode(msg.data)) as RpcReply<T>;
  }
}

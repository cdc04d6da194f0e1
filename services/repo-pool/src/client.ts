import {
  type AdoptRequest,
  type AllocateRequest,
  type AllocateResult,
  CodefleetError,
  type HeartbeatRequest,
  type HeartbeatResult,
  type PoolStatus,
  REPO_POOL_SERVICE,
  type ReleaseRequest,
  type ReleaseResult,
  type RpcReply,
  topology,
} from "@codefleet/contracts";
import { injectIntoHeaders } from "@codefleet/contracts/bus";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { type Context, context } from "@opentelemetry/api";

export class RepoPoolError extends CodefleetError {
  override readonly name = "RepoPoolError";
}

/** Typed client of the repo-pool request/reply API. Errors keep the server's code and retry meaning. */
export class RepoPoolClient {
  private readonly subject: (verb: string) => string;

  /** Requests in flight: a lost connection loses them, so they fail at once rather than at their timeout. */
  private readonly pending = new Set<(err: Error) => void>();

  constructor(
    private readonly nc: NatsConnection,
    opts: { namespace?: string } = {},
  ) {
    const t = topology(opts.namespace);
    this.subject = (verb) => t.subjects.rpc(REPO_POOL_SERVICE, verb);
    void this.failPendingOnDisconnect();
  }

  private async failPendingOnDisconnect(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type !== "disconnect") continue;
      for (const fail of this.pending) fail(new Error("the connection to NATS was lost"));
      this.pending.clear();
    }
  }

  allocate(req: AllocateRequest, opts: { timeoutMs?: number; ctx?: Context } = {}): Promise<AllocateResult> {
    // Short: an answer lost in a NATS restart (on either side) is noticed in seconds, and the caller
    // asks again; a retried allocate of the same attempt joins the one under way in repo-pool (a
    // first clone may take minutes: the caller keeps asking until its own deadline).
    return this.call("allocate", req, opts.timeoutMs ?? 20_000, opts.ctx);
  }

  /** A task attempt takes over a slot reserved by its runner's warm pool (`slot_stale` when the ref moved). */
  adopt(req: AdoptRequest, opts: { timeoutMs?: number; ctx?: Context } = {}): Promise<AllocateResult> {
    return this.call("adopt", req, opts.timeoutMs ?? 20_000, opts.ctx);
  }

  heartbeat(req: HeartbeatRequest, opts: { ctx?: Context } = {}): Promise<HeartbeatResult> {
    return this.call("heartbeat", req, 30_000, opts.ctx);
  }

  release(req: ReleaseRequest, opts: { ctx?: Context } = {}): Promise<ReleaseResult> {
    return this.call("release", req, 120_000, opts.ctx);
  }

  status(): Promise<PoolStatus> {
    return this.call("status", {}, 10_000);
  }

  private async call<T>(verb: string, body: unknown, timeout: number, ctx?: Context): Promise<T> {
    const h = headers();
    injectIntoHeaders(ctx ?? context.active(), h);
    let msg: Awaited<ReturnType<NatsConnection["request"]>>;
    let fail: ((err: Error) => void) | undefined;
    try {
      // An allocate may take minutes (a first clone), so its timeout is long; a request lost with the
      // connection must not wait that long: it fails at the disconnect and the caller tries again
      // (allocate is idempotent per task attempt).
      const lost = new Promise<never>((_, reject) => {
        fail = reject;
        this.pending.add(reject);
      });
      msg = await Promise.race([
        this.nc.request(this.subject(verb), new TextEncoder().encode(JSON.stringify(body)), { timeout, headers: h }),
        lost,
      ]);
    } catch (err) {
      throw new RepoPoolError("repo_pool_unavailable", `repo-pool ${verb} got no answer: ${(err as Error).message}`, {
        cause: err,
        retry: { kind: "backoff" },
      });
    } finally {
      if (fail) this.pending.delete(fail);
    }
    const reply = JSON.parse(new TextDecoder().decode(msg.data)) as RpcReply<T>;
    if (reply.ok) return reply.result;
    throw new RepoPoolError(reply.error.code, reply.error.message, {
      retry: reply.error.retryable ? { kind: "backoff" } : { kind: "never" },
    });
  }
}

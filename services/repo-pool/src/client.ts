import {
  type AdoptRequest,
  type AllocateRequest,
  type AllocateResult,
  CodefleetError,
  type HeartbeatRequest,
  type HeartbeatResult,
  type PoolStatus,
  type ReleaseRequest,
  type ReleaseResult,
  type RpcReply,
  repoPoolService,
} from "@codefleet/contracts";
import { type NatsConnection, RpcClient } from "@codefleet/platform/bus";
import type { Context } from "@opentelemetry/api";

export class RepoPoolError extends CodefleetError {
  override readonly name = "RepoPoolError";
}

/** Typed client of the repo-pool request/reply API. Errors keep the server's code and retry meaning. */
export class RepoPoolClient {
  private readonly rpc: RpcClient;

  /** `host`: the runner's host (CODEFLEET_HOST), whose repo-pool it allocates from; none: the one shared pool. */
  constructor(nc: NatsConnection, opts: { namespace?: string; host?: string } = {}) {
    this.rpc = new RpcClient(nc, { namespace: opts.namespace, service: repoPoolService(opts.host) });
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
    let reply: RpcReply<T>;
    try {
      // An allocate may take minutes (a first clone), so its timeout is long; a request lost with the
      // connection must not wait that long: it fails at the disconnect and the caller tries again
      // (allocate is idempotent per task attempt).
      reply = await this.rpc.request<T>(verb, body, { timeoutMs: timeout, ...(ctx ? { ctx } : {}) });
    } catch (err) {
      if (err instanceof SyntaxError) throw err; // an answer that is not JSON: not a lost request
      throw new RepoPoolError("repo_pool_unavailable", `repo-pool ${verb} got no answer: ${(err as Error).message}`, {
        cause: err,
        retry: { kind: "backoff" },
      });
    }
    if (reply.ok) return reply.result;
    throw new RepoPoolError(reply.error.code, reply.error.message, {
      retry: reply.error.retryable ? { kind: "backoff" } : { kind: "never" },
    });
  }
}

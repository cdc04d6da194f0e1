import {
  AdoptRequest,
  AllocateRequest,
  CodefleetError,
  errorMessage,
  HeartbeatRequest,
  isCodefleetError,
  ReleaseRequest,
  repoPoolService,
} from "@codefleet/contracts";
import type { Bus, Listener, RpcRequest } from "@codefleet/platform/bus";
import type { Logger } from "@codefleet/platform/runtime";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { SlotPool } from "../pool/slots.js";

const tracer = trace.getTracer("@codefleet/repo-pool");

/**
 * The repo-pool API over NATS request/reply: <ns>.rpc.repo-pool.{allocate,adopt,heartbeat,release,status},
 * or <ns>.rpc.repo-pool.<host>.<verb> for a named runner host's pool (CODEFLEET_HOST).
 * Requests are validated; replies are { ok, result } or { ok: false, error: { code, message, retryable } }.
 */
export function serveRepoPool(bus: Bus, pool: SlotPool, log: Logger, host?: string): Listener[] {
  const handlers: Record<string, { schema?: TSchema; handle: (req: never) => Promise<unknown> }> = {
    allocate: { schema: AllocateRequest, handle: (r: AllocateRequest) => pool.allocate(r) },
    adopt: { schema: AdoptRequest, handle: (r: AdoptRequest) => pool.adopt(r) },
    heartbeat: { schema: HeartbeatRequest, handle: (r: HeartbeatRequest) => pool.heartbeat(r) },
    release: { schema: ReleaseRequest, handle: (r: ReleaseRequest) => pool.release(r) },
    status: { handle: () => pool.status() },
  };
  return Object.entries(handlers).map(([verb, h]) => {
    const check = h.schema ? TypeCompiler.Compile(h.schema) : undefined;
    return bus.serveRpc(repoPoolService(host), verb, (req) =>
      respond(
        verb,
        req,
        async (body) => {
          if (check && !check.Check(body)) {
            const first = [...check.Errors(body)]
              .slice(0, 3)
              .map((e) => `${e.path} ${e.message}`)
              .join("; ");
            throw new CodefleetError("invalid_request", `invalid ${verb} request: ${first}`, { retry: { kind: "never" } });
          }
          return h.handle(body as never);
        },
        log,
      ),
    );
  });
}

/** One request, traced and logged; what it resolves to or throws is the reply (the bus encodes it). */
async function respond(verb: string, req: RpcRequest, handle: (body: unknown) => Promise<unknown>, log: Logger): Promise<unknown> {
  const parent = req.traceContext;
  const span = tracer.startSpan(
    `repo-pool ${verb}`,
    { kind: SpanKind.SERVER, attributes: { "rpc.system": "nats", "rpc.method": verb } },
    parent,
  );
  try {
    const body = req.body();
    const b = body as { taskId?: string; attempt?: number; slotId?: string };
    if (b.taskId) span.setAttribute("codefleet.task_id", b.taskId);
    if (b.attempt) span.setAttribute("codefleet.attempt", b.attempt);
    if (b.slotId) span.setAttribute("codefleet.slot_id", b.slotId);
    return await context.with(trace.setSpan(parent, span), () => handle(body));
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
    if (!isCodefleetError(err)) log.error({ err, verb }, "repo-pool request failed");
    else log.warn({ verb, code: err.code, error: err.message }, "repo-pool request refused");
    throw err;
  } finally {
    span.end();
  }
}

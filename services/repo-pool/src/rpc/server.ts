import {
  AdoptRequest,
  AllocateRequest,
  CodefleetError,
  errorMessage,
  HeartbeatRequest,
  isCodefleetError,
  REPO_POOL_SERVICE,
  ReleaseRequest,
  type RpcReply,
} from "@codefleet/contracts";
import { type Bus, extractFromHeaders } from "@codefleet/contracts/bus";
import type { Logger } from "@codefleet/contracts/runtime";
import type { Msg, Subscription } from "@nats-io/transport-node";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { SlotPool } from "../pool/slots.js";

const tracer = trace.getTracer("@codefleet/repo-pool");
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The repo-pool API over NATS request/reply: <ns>.rpc.repo-pool.{allocate,adopt,heartbeat,release,status}.
 * Requests are validated; replies are { ok, result } or { ok: false, error: { code, message, retryable } }.
 */
export function serveRepoPool(bus: Bus, pool: SlotPool, log: Logger): Subscription[] {
  const handlers: Record<string, { schema?: TSchema; handle: (req: never) => Promise<unknown> }> = {
    allocate: { schema: AllocateRequest, handle: (r: AllocateRequest) => pool.allocate(r) },
    adopt: { schema: AdoptRequest, handle: (r: AdoptRequest) => pool.adopt(r) },
    heartbeat: { schema: HeartbeatRequest, handle: (r: HeartbeatRequest) => pool.heartbeat(r) },
    release: { schema: ReleaseRequest, handle: (r: ReleaseRequest) => pool.release(r) },
    status: { handle: () => pool.status() },
  };
  return Object.entries(handlers).map(([verb, h]) => {
    const check = h.schema ? TypeCompiler.Compile(h.schema) : undefined;
    return bus.nc.subscribe(bus.topology.subjects.rpc(REPO_POOL_SERVICE, verb), {
      queue: REPO_POOL_SERVICE,
      callback: (err, msg) => {
        if (err) return;
        void respond(
          verb,
          msg,
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
        );
      },
    });
  });
}

async function respond(verb: string, msg: Msg, handle: (body: unknown) => Promise<unknown>, log: Logger): Promise<void> {
  const parent = extractFromHeaders(msg.headers);
  const span = tracer.startSpan(
    `repo-pool ${verb}`,
    { kind: SpanKind.SERVER, attributes: { "rpc.system": "nats", "rpc.method": verb } },
    parent,
  );
  let reply: RpcReply<unknown>;
  try {
    let body: unknown;
    try {
      body = msg.data.length ? JSON.parse(decoder.decode(msg.data)) : {};
    } catch {
      throw new CodefleetError("invalid_json", "request is not JSON", { retry: { kind: "never" } });
    }
    const b = body as { taskId?: string; attempt?: number; slotId?: string };
    if (b.taskId) span.setAttribute("codefleet.task_id", b.taskId);
    if (b.attempt) span.setAttribute("codefleet.attempt", b.attempt);
    if (b.slotId) span.setAttribute("codefleet.slot_id", b.slotId);
    const result = await context.with(trace.setSpan(parent, span), () => handle(body));
    reply = { ok: true, result };
  } catch (err) {
    const code = isCodefleetError(err) ? err.code : "internal_error";
    const retryable = isCodefleetError(err) ? err.retry.kind !== "never" : true;
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
    if (!isCodefleetError(err)) log.error({ err, verb }, "repo-pool request failed");
    else log.warn({ verb, code, error: err.message }, "repo-pool request refused");
    reply = { ok: false, error: { code, message: isCodefleetError(err) ? err.message : "internal error", retryable } };
  } finally {
    span.end();
  }
  msg.respond(encoder.encode(JSON.stringify(reply)));
}

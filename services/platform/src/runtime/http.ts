import { timingSafeEqual } from "node:crypto";
import { isCodefleetError, ValidationError } from "@codefleet/contracts";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from "fastify";

/**
 * What every codefleet HTTP app shares: problem+json errors with stable codes that never leak
 * internals, bearer-token auth with constant-time comparison, and health/readiness/metrics routes.
 */

export type Problem = { type: string; title: string; status: number; code: string; detail?: string; [k: string]: unknown };

export class HttpProblem extends Error {
  override readonly name = "HttpProblem";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export function sendProblem(
  reply: FastifyReply,
  status: number,
  code: string,
  detail: string,
  extra: Record<string, unknown> = {},
): FastifyReply {
  const body: Problem = { ...extra, type: `https://codefleet.dev/problems/${code}`, title: titleFor(status), status, code, detail };
  return reply.code(status).header("content-type", "application/problem+json; charset=utf-8").send(body);
}

function titleFor(status: number): string {
  const titles: Record<number, string> = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    503: "Service Unavailable",
  };
  return titles[status] ?? (status >= 500 ? "Internal Server Error" : "Error");
}

/** One error handler per app; `mapError` turns a service's own error types into problems. */
export function installErrorHandling(app: FastifyInstance, opts: { mapError?: (err: Error) => HttpProblem | undefined } = {}): void {
  app.setNotFoundHandler((req, reply) => {
    sendProblem(reply, 404, "route_not_found", `no route ${req.method} ${req.url.split("?")[0]}`);
  });
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const mapped = opts.mapError?.(err);
    if (mapped) return sendProblem(reply, mapped.status, mapped.code, mapped.message, mapped.extra);
    if (err instanceof HttpProblem) return sendProblem(reply, err.status, err.code, err.message, err.extra);
    if (err instanceof ValidationError) return sendProblem(reply, 422, err.code, err.message, { issues: err.issues });
    if (err.validation) {
      return sendProblem(reply, 422, "invalid_request", err.message, {
        issues: err.validation.slice(0, 20).map((v) => ({ path: v.instancePath || "/", message: v.message ?? "invalid" })),
      });
    }
    const status = err.statusCode ?? 500;
    if (status === 413 || err.code === "FST_ERR_CTP_BODY_TOO_LARGE")
      return sendProblem(reply, 413, "body_too_large", "request body is too large");
    if (err.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return sendProblem(reply, 415, "unsupported_media_type", err.message);
    if (status >= 400 && status < 500) {
      const code =
        err.code === "FST_ERR_CTP_INVALID_JSON_BODY" || err instanceof SyntaxError
          ? "invalid_json"
          : (err.code ?? "bad_request").toLowerCase();
      return sendProblem(reply, status, code, err.message);
    }
    if (isCodefleetError(err) && err.code === "unavailable") return sendProblem(reply, 503, "unavailable", err.message);
    req.log.error({ err }, "request failed");
    return sendProblem(reply, 500, "internal_error", "internal error; the request id is in the logs", { requestId: req.id });
  });
}

export function tokenMatches(given: string, accepted: readonly Buffer[]): boolean {
  const g = Buffer.from(given);
  let ok = false;
  for (const a of accepted) {
    // compare against every token, same work whatever matches
    const same = a.length === g.length && timingSafeEqual(a, g);
    ok = ok || same;
  }
  return ok;
}

/** Bearer-token auth on every route except those marked `config: { public: true }` or under a public prefix (API docs). */
export function installBearerAuth(app: FastifyInstance, tokens: readonly string[], opts: { publicPrefixes?: string[] } = {}): void {
  const accepted = tokens.map((t) => Buffer.from(t));
  const publicPrefixes = opts.publicPrefixes ?? ["/docs"];
  app.addHook("onRequest", async (req: FastifyRequest, reply: FastifyReply) => {
    if ((req.routeOptions.config as { public?: boolean } | undefined)?.public) return;
    const url = req.routeOptions.url;
    if (!url) return; // not-found handler answers 404
    if (publicPrefixes.some((p) => url === p || url.startsWith(`${p}/`))) return;
    const header = req.headers.authorization ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match?.[1] || !tokenMatches(match[1], accepted)) {
      reply.header("www-authenticate", 'Bearer realm="codefleet"');
      return sendProblem(reply, 401, "unauthorized", "a valid 'Authorization: Bearer <token>' header is required");
    }
  });
}

export type HealthOptions = {
  /** Resolves true when the service can do its work (database, bus, ...). */
  ready: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
  metrics?: (req: FastifyRequest["raw"], res: FastifyReply["raw"]) => void;
};

/** Keeps operational routes out of the OpenAPI document (@fastify/swagger honours `hide`). */
const HIDDEN = { hide: true } as FastifySchema;

export function installHealthRoutes(app: FastifyInstance, opts: HealthOptions): void {
  app.get("/healthz", { config: { public: true }, schema: HIDDEN }, async () => ({ status: "ok" }));
  app.get("/readyz", { config: { public: true }, schema: HIDDEN }, async (_req, reply) => {
    const r = await opts.ready().catch((err: Error) => ({ ok: false, checks: { error: err.message } }));
    return reply.code(r.ok ? 200 : 503).send({ status: r.ok ? "ready" : "not_ready", checks: r.checks });
  });
  if (opts.metrics) {
    const handler = opts.metrics;
    app.get("/metrics", { config: { public: true }, schema: HIDDEN }, (req, reply) => {
      reply.hijack();
      handler(req.raw, reply.raw);
    });
  }
}

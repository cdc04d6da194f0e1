import { createHash, timingSafeEqual } from "node:crypto";
import { hasScope, type Principal, type Scope, type TokenVerifier } from "@codefleet/contracts/access";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { HttpProblem, type Problem, sendProblem } from "./http.js";

/**
 * The HTTP side of access control, shared by the registry and the artifact-store: every route
 * declares the scope it needs (`config: { scope: "tasks:read" }`; none declared means `admin`),
 * the bearer token is checked before the route runs, and handlers read `req.principal` to check
 * tenants. A missing or unknown token is 401; a missing scope is 403 `missing_scope`.
 */

declare module "fastify" {
  interface FastifyContextConfig {
    /** No token needed (health, docs). */
    public?: boolean;
    /** The scope a token needs for this route; absent: `admin`. */
    scope?: Scope;
  }
  interface FastifyRequest {
    /** Who sent the request (set by installTokenAuth on every non-public route). */
    principal: Principal | null;
  }
}

export function installTokenAuth(app: FastifyInstance, verifier: TokenVerifier, opts: { publicPrefixes?: string[] } = {}): void {
  const publicPrefixes = opts.publicPrefixes ?? ["/docs"];
  app.decorateRequest("principal", null);
  app.addHook("onRequest", async (req: FastifyRequest, reply: FastifyReply) => {
    const config = req.routeOptions.config as { public?: boolean; scope?: Scope } | undefined;
    if (config?.public) return;
    const url = req.routeOptions.url;
    if (!url) return; // not-found handler answers 404
    if (publicPrefixes.some((p) => url === p || url.startsWith(`${p}/`))) return;
    const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "");
    const principal = match?.[1] ? verifier.authenticate(match[1]) : undefined;
    if (!principal) {
      reply.header("www-authenticate", 'Bearer realm="codefleet"');
      return sendProblem(reply, 401, "unauthorized", "a valid 'Authorization: Bearer <token>' header is required");
    }
    req.principal = principal;
    const scope = config?.scope ?? "admin";
    if (!hasScope(principal, scope)) {
      return sendProblem(reply, 403, "missing_scope", `this token lacks the '${scope}' scope`, { scope });
    }
  });
}

/** The request's principal; only on routes behind installTokenAuth. */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new HttpProblem(401, "unauthorized", "a valid 'Authorization: Bearer <token>' header is required");
  return req.principal;
}

type RawHandler = (req: FastifyRequest["raw"], res: FastifyReply["raw"]) => void;

/**
 * `/metrics` behind a bearer token of its own (METRICS_TOKEN) when one is set; open otherwise.
 * Compared as sha256 digests, in constant time.
 */
export function guardMetrics(handler: RawHandler, token: string | undefined): RawHandler {
  if (!token) return handler;
  const want = createHash("sha256").update(token, "utf8").digest();
  return (req, res) => {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "");
    const got = createHash("sha256")
      .update(m?.[1] ?? "", "utf8")
      .digest();
    if (m?.[1] && timingSafeEqual(want, got)) return handler(req, res);
    const body: Problem = {
      type: "https://codefleet.dev/problems/unauthorized",
      title: "Unauthorized",
      status: 401,
      code: "unauthorized",
      detail: "/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'",
    };
    res.writeHead(401, { "content-type": "application/problem+json; charset=utf-8", "www-authenticate": 'Bearer realm="metrics"' });
    res.end(JSON.stringify(body));
  };
}

/**
 * `POST` with `content-type: application/json` and an empty body (a cancel without a reason) is
 * a request without a body, not malformed JSON. Everything else goes to fastify's own JSON parser
 * (prototype-poisoning protection included).
 */
export function acceptEmptyJsonBodies(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (req, body, done) => {
    if ((body as string).trim() === "") {
      done(null, undefined);
      return;
    }
    parse(req, body as string, done);
  });
}

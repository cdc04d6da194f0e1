import type { Readable } from "node:stream";
import { isValidTaskId, ValidationError } from "@codefleet/contracts";
import { canAccessTenant, type TokenVerifier, tenantFilter } from "@codefleet/contracts/access";
import {
  acceptEmptyJsonBodies,
  guardMetrics,
  type HealthOptions,
  HttpProblem,
  installErrorHandling,
  installHealthRoutes,
  installTokenAuth,
  principalOf,
} from "@codefleet/platform/runtime";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { Type } from "@sinclair/typebox";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { ArtifactConflictError, type ArtifactService } from "../domain/artifacts.js";
import { artifactNameProblem, isArtifactKind, parseRange } from "../domain/names.js";
import { uploadTenant } from "../domain/tenancy.js";
import { CorruptBlobError, TooLargeError } from "../store/blob-store.js";

export type AppDeps = {
  artifacts: ArtifactService;
  logger: Logger;
  /** Who a bearer token is: its name, tenant and scopes. */
  tokens: TokenVerifier;
  /** The tenant of a task, from its task.submitted event; undefined when the event stream does not know it. */
  taskTenant: (taskId: string) => Promise<string | undefined>;
  /** When set, /metrics needs it as a bearer token. */
  metricsToken?: string;
  health: HealthOptions;
};

const ArtifactSchema = Type.Object({
  id: Type.String(),
  taskId: Type.String(),
  attempt: Type.Integer(),
  kind: Type.String(),
  name: Type.String(),
  size: Type.Integer(),
  sha256: Type.String(),
  contentType: Type.String(),
  createdAt: Type.String(),
});

function requireTaskId(taskId: string): void {
  if (!isValidTaskId(taskId)) throw new HttpProblem(422, "invalid_task_id", "task id must be 1-128 letters, digits, '_' or '-'");
}

function contentDisposition(name: string): string {
  const base = name.split("/").pop() ?? "artifact";
  return `attachment; filename="${base.replace(/[^A-Za-z0-9._-]/g, "_")}"; filename*=UTF-8''${encodeURIComponent(base)}`;
}

/**
 * Routes:
 *   PUT  /v1/tasks/{taskId}/attempts/{attempt}/artifacts?name=...&kind=...   upload (body = raw content, streamed)
 *   GET  /v1/tasks/{taskId}/artifacts[?attempt=N]                           list a task's artifacts
 *   GET  /v1/artifacts/{id}                                                 metadata
 *   GET  /v1/artifacts/{id}/content                                         download (Range, ETag, If-None-Match)
 *   POST /v1/retention                                                      apply the retention policy (dryRun)
 *
 * Scopes: uploads `artifacts:write`, reads `artifacts:read`, retention `admin`. Every artifact
 * belongs to its task's tenant: another tenant's artifact or task answers 404, as if it did not exist.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    requestIdHeader: "x-request-id",
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true } },
  });
  installErrorHandling(app, {
    mapError: (err) => {
      if (err instanceof TooLargeError) return new HttpProblem(413, err.code, err.message);
      if (err instanceof ArtifactConflictError) return new HttpProblem(409, err.code, err.message, err.details);
      if (err instanceof CorruptBlobError) return new HttpProblem(500, err.code, "the stored content is corrupt and was not served");
      if (err instanceof ValidationError) return new HttpProblem(422, err.code, err.message);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ECONNRESET" || code === "ERR_STREAM_PREMATURE_CLOSE" || code === "ECONNABORTED") {
        return new HttpProblem(400, "upload_interrupted", "the upload ended before its body was complete; nothing was stored");
      }
      return undefined;
    },
  });
  await app.register(swagger, {
    openapi: {
      info: { title: "codefleet artifact-store", version: "1.0.0", description: "Content-addressed storage of task artifacts." },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });
  acceptEmptyJsonBodies(app);
  installTokenAuth(app, deps.tokens);
  installHealthRoutes(app, {
    ...deps.health,
    ...(deps.health.metrics ? { metrics: guardMetrics(deps.health.metrics, deps.metricsToken) } : {}),
  });

  const notFound = (id: string) => new HttpProblem(404, "artifact_not_found", `no artifact '${id}'`);
  /** The artifact, when it exists and is the principal's tenant's. */
  const requireArtifact = async (req: Parameters<typeof principalOf>[0], id: string) => {
    const owned = await deps.artifacts.getOwned(id);
    if (!owned || !canAccessTenant(principalOf(req), owned.tenant)) throw notFound(id);
    return owned.artifact;
  };

  await app.register(async (uploads) => {
    // Upload bodies are streamed to disk as they arrive, never buffered.
    uploads.removeAllContentTypeParsers();
    uploads.addContentTypeParser("*", (_req, payload, done) => done(null, payload));
    uploads.put(
      "/v1/tasks/:taskId/attempts/:attempt/artifacts",
      {
        config: { scope: "artifacts:write" },
        schema: {
          summary: "Upload an artifact (the body is the raw content; scope artifacts:write)",
          params: Type.Object({ taskId: Type.String({ maxLength: 128 }), attempt: Type.String({ pattern: "^[0-9]{1,4}$" }) }),
          querystring: Type.Object({ name: Type.String({ maxLength: 1024 }), kind: Type.String({ maxLength: 32 }) }),
          response: { 200: ArtifactSchema, 201: ArtifactSchema },
        },
      },
      async (req, reply) => {
        const { taskId, attempt } = req.params as { taskId: string; attempt: string };
        const { name, kind } = req.query as { name: string; kind: string };
        requireTaskId(taskId);
        const problem = artifactNameProblem(name);
        if (problem) throw new HttpProblem(422, "invalid_artifact_name", `invalid artifact name: ${problem}`);
        if (!isArtifactKind(kind))
          throw new HttpProblem(422, "invalid_artifact_kind", "kind must be one of diff, log, test-report, transcript, other");
        const body = req.body as Readable | undefined;
        if (!body || typeof (body as Readable).pipe !== "function") throw new HttpProblem(400, "missing_body", "the request needs a body");
        const tenant = uploadTenant(principalOf(req), await deps.taskTenant(taskId));
        if (tenant === undefined) {
          body.resume(); // drain what the client sends; nothing is stored
          throw new HttpProblem(404, "task_not_found", `no task '${taskId}'`);
        }
        const contentType = (req.headers["content-type"] ?? "application/octet-stream").slice(0, 255);
        const { artifact, created } = await deps.artifacts.upload({
          taskId,
          tenant,
          attempt: Number(attempt),
          name,
          kind,
          contentType,
          body,
        });
        return reply
          .code(created ? 201 : 200)
          .header("location", `/v1/artifacts/${artifact.id}`)
          .send(artifact);
      },
    );
  });

  app.get(
    "/v1/tasks/:taskId/artifacts",
    {
      config: { scope: "artifacts:read" },
      schema: {
        summary: "List a task's artifacts (scope artifacts:read)",
        params: Type.Object({ taskId: Type.String({ maxLength: 128 }) }),
        querystring: Type.Object({ attempt: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$" })) }),
      },
    },
    async (req) => {
      const { taskId } = req.params as { taskId: string };
      requireTaskId(taskId);
      const q = (req.query as { attempt?: string }).attempt;
      const attempt = q === undefined ? undefined : Number(q);
      const principal = principalOf(req);
      const tenant = tenantFilter(principal);
      const items = await deps.artifacts.listByTask(taskId, attempt, tenant);
      if (items.length > 0 || tenant === undefined) return { items };
      // nothing of the token's tenant: an empty list only for its own task, else the task does not exist for it
      const taskTenant = await deps.taskTenant(taskId);
      if (taskTenant === undefined || !canAccessTenant(principal, taskTenant))
        throw new HttpProblem(404, "task_not_found", `no task '${taskId}'`);
      return { items };
    },
  );

  app.get(
    "/v1/artifacts/:id",
    {
      config: { scope: "artifacts:read" },
      schema: { summary: "Artifact metadata (scope artifacts:read)", params: Type.Object({ id: Type.String({ maxLength: 64 }) }) },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      return requireArtifact(req, id);
    },
  );

  app.get(
    "/v1/artifacts/:id/content",
    {
      config: { scope: "artifacts:read" },
      schema: {
        summary: "Download an artifact (supports Range and If-None-Match; scope artifacts:read)",
        params: Type.Object({ id: Type.String({ maxLength: 64 }) }),
      },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const a = await requireArtifact(req, id);
      const etag = `"${a.sha256}"`;
      reply
        .header("etag", etag)
        .header("accept-ranges", "bytes")
        .header("content-disposition", contentDisposition(a.name))
        .header("cache-control", "private, max-age=31536000, immutable");
      const inm = req.headers["if-none-match"];
      if (inm?.split(",").some((t) => t.trim() === etag || t.trim() === "*")) return reply.code(304).send();
      const range = parseRange(typeof req.headers.range === "string" ? req.headers.range : undefined, a.size);
      if (range === "unsatisfiable") {
        reply.header("content-range", `bytes */${a.size}`);
        throw new HttpProblem(416, "range_not_satisfiable", `range outside 0-${Math.max(0, a.size - 1)}`);
      }
      reply.type(a.contentType);
      if (range) {
        const stream = await deps.artifacts.open(a, range);
        return reply
          .code(206)
          .header("content-range", `bytes ${range.start}-${range.end}/${a.size}`)
          .header("content-length", range.end - range.start + 1)
          .send(stream);
      }
      if (a.size === 0) return reply.header("content-length", 0).send("");
      const stream = await deps.artifacts.open(a);
      return reply.header("content-length", a.size).send(stream);
    },
  );

  app.post(
    "/v1/retention",
    {
      config: { scope: "admin" },
      // an empty body is a dry run with no criteria
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {};
      },
      schema: {
        summary:
          "Apply the retention policy (scope admin): artifacts older than maxAgeDays and beyond maxPerTask per task, then unreferenced blobs",
        body: Type.Object(
          {
            dryRun: Type.Boolean({ default: true }),
            maxAgeDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 36500 })),
            maxPerTask: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (req) => {
      const body = req.body as { dryRun: boolean; maxAgeDays?: number; maxPerTask?: number };
      const r = await deps.artifacts.applyRetention(body);
      return { dryRun: body.dryRun, artifacts: r.artifacts.map((a) => a.id), blobs: r.blobs, bytesFreed: r.bytesFreed };
    },
  );
  return app;
}

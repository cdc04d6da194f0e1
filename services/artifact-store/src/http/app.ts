import type { Readable } from "node:stream";
import { isValidTaskId, ValidationError } from "@codefleet/contracts";
import {
  type HealthOptions,
  HttpProblem,
  installBearerAuth,
  installErrorHandling,
  installHealthRoutes,
} from "@codefleet/contracts/runtime";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { Type } from "@sinclair/typebox";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { ArtifactConflictError, type ArtifactService } from "../domain/artifacts.js";
import { artifactNameProblem, isArtifactKind, parseRange } from "../domain/names.js";
import { CorruptBlobError, TooLargeError } from "../store/blob-store.js";

export type AppDeps = { artifacts: ArtifactService; logger: Logger; apiTokens: readonly string[]; health: HealthOptions };

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
  installBearerAuth(app, deps.apiTokens);
  installHealthRoutes(app, deps.health);

  await app.register(async (uploads) => {
    // Upload bodies are streamed to disk as they arrive, never buffered.
    uploads.removeAllContentTypeParsers();
    uploads.addContentTypeParser("*", (_req, payload, done) => done(null, payload));
    uploads.put(
      "/v1/tasks/:taskId/attempts/:attempt/artifacts",
      {
        schema: {
          summary: "Upload an artifact (the body is the raw content)",
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
        const contentType = (req.headers["content-type"] ?? "application/octet-stream").slice(0, 255);
        const { artifact, created } = await deps.artifacts.upload({ taskId, attempt: Number(attempt), name, kind, contentType, body });
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
      schema: {
        summary: "List a task's artifacts",
        params: Type.Object({ taskId: Type.String({ maxLength: 128 }) }),
        querystring: Type.Object({ attempt: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$" })) }),
      },
    },
    async (req) => {
      const { taskId } = req.params as { taskId: string };
      requireTaskId(taskId);
      const attempt = (req.query as { attempt?: string }).attempt;
      return { items: await deps.artifacts.listByTask(taskId, attempt === undefined ? undefined : Number(attempt)) };
    },
  );

  app.get(
    "/v1/artifacts/:id",
    { schema: { summary: "Artifact metadata", params: Type.Object({ id: Type.String({ maxLength: 64 }) }) } },
    async (req) => {
      const { id } = req.params as { id: string };
      const a = await deps.artifacts.get(id);
      if (!a) throw new HttpProblem(404, "artifact_not_found", `no artifact '${id}'`);
      return a;
    },
  );

  app.get(
    "/v1/artifacts/:id/content",
    {
      schema: {
        summary: "Download an artifact (supports Range and If-None-Match)",
        params: Type.Object({ id: Type.String({ maxLength: 64 }) }),
      },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const a = await deps.artifacts.get(id);
      if (!a) throw new HttpProblem(404, "artifact_not_found", `no artifact '${id}'`);
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
      schema: {
        summary: "Apply the retention policy: artifacts older than maxAgeDays and beyond maxPerTask per task, then unreferenced blobs",
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

import { FastifyOtelInstrumentation } from "@fastify/otel";
import { registerInstrumentations } from "@opentelemetry/instrumentation";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { UndiciInstrumentation } from "@opentelemetry/instrumentation-undici";

/**
 * The official OpenTelemetry instrumentations of the libraries at our edges: fastify (server
 * spans, trace context taken from incoming headers), pg (one span per query, statement text
 * without parameter values), undici and fetch (client spans, trace context put into outgoing
 * headers).
 *
 * Import this module first in a main.ts (`import "@codefleet/platform/instrumentation"`): pg is
 * patched when it is loaded, so the patch must be in place before anything imports it. The
 * spans go to whatever tracer provider `startTelemetry` registers later; with tracing off they
 * cost nothing.
 */

const NOISE = new Set(["/healthz", "/readyz", "/metrics"]);

if (process.env.OTEL_SDK_DISABLED !== "true") {
  registerInstrumentations({
    instrumentations: [
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        ignorePaths: (route) => NOISE.has(route.url.split("?")[0] ?? ""),
        requestHook: (span, request) => span.updateName(`${request.method} ${request.routeOptions.url ?? request.url.split("?")[0]}`),
      }),
      // queries outside any operation (pool health checks) would only be noise
      new PgInstrumentation({ requireParentSpan: true, enhancedDatabaseReporting: false }),
      new UndiciInstrumentation(),
    ],
  });
}

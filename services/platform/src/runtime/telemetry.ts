import type { IncomingMessage, ServerResponse } from "node:http";
import { type Meter, metrics } from "@opentelemetry/api";
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { type IMetricReader, MeterProvider, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";
import { BatchSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

export type Telemetry = {
  meter: Meter;
  /** Serves the Prometheus text exposition of this process's metrics. */
  metricsHandler(req: IncomingMessage, res: ServerResponse): void;
  tracingEnabled: boolean;
  shutdown(): Promise<void>;
};

/**
 * OpenTelemetry for one service, configured by the standard OTEL_* variables: traces go to the
 * OTLP/HTTP endpoint when one is set (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT), and are
 * off cleanly otherwise; metrics are always served in Prometheus text at /metrics, and pushed over
 * OTLP/HTTP too when an endpoint is set and OTEL_METRICS_EXPORTER is not "none".
 */
export function startTelemetry(opts: {
  serviceName: string;
  env?: Record<string, string | undefined>;
  /** Extra processors, e.g. an in-memory one in tests. */
  spanProcessors?: SpanProcessor[];
}): Telemetry {
  const env = opts.env ?? process.env;
  const resource = resourceFromAttributes({
    "service.name": env.OTEL_SERVICE_NAME ?? opts.serviceName,
    "service.namespace": "codefleet",
    ...parseResourceAttributes(env.OTEL_RESOURCE_ATTRIBUTES),
  });
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const disabled = env.OTEL_SDK_DISABLED === "true" || env.OTEL_TRACES_EXPORTER === "none";
  const processors: SpanProcessor[] = [...(opts.spanProcessors ?? [])];
  if (endpoint && !disabled) processors.push(new BatchSpanProcessor(new OTLPTraceExporter()));
  let tracerProvider: NodeTracerProvider | undefined;
  if (processors.length > 0) {
    tracerProvider = new NodeTracerProvider({ resource, spanProcessors: processors });
    tracerProvider.register();
  }
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const readers: IMetricReader[] = [prometheus];
  // OTLP metrics when an endpoint for them is configured and they are not turned off
  // (Jaeger takes traces only: the compose stack sets OTEL_METRICS_EXPORTER=none by default).
  const metricsEndpoint = env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const metricsOff = env.OTEL_SDK_DISABLED === "true" || env.OTEL_METRICS_EXPORTER === "none";
  if (metricsEndpoint && !metricsOff) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter(),
        exportIntervalMillis: Number(env.OTEL_METRIC_EXPORT_INTERVAL ?? 60_000),
        exportTimeoutMillis: Math.min(Number(env.OTEL_METRIC_EXPORT_TIMEOUT ?? 30_000), Number(env.OTEL_METRIC_EXPORT_INTERVAL ?? 60_000)),
      }),
    );
  }
  const meterProvider = new MeterProvider({ resource, readers });
  metrics.setGlobalMeterProvider(meterProvider);
  return {
    meter: meterProvider.getMeter(opts.serviceName),
    metricsHandler: (req, res) => prometheus.getMetricsRequestHandler(req, res),
    tracingEnabled: tracerProvider !== undefined,
    async shutdown() {
      await Promise.allSettled([tracerProvider?.shutdown(), meterProvider.shutdown()]);
    },
  };
}

function parseResourceAttributes(value: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (value ?? "").split(",")) {
    const i = pair.indexOf("=");
    if (i > 0) out[pair.slice(0, i).trim()] = decodeURIComponent(pair.slice(i + 1).trim());
  }
  return out;
}

import { trace } from "@opentelemetry/api";
import { type Logger, pino } from "pino";
import { SecretMasker } from "./secret-masker.js";

export type { Logger } from "pino";

/**
 * Structured JSON logs: service name, trace id and span id of the active span on every line,
 * secrets masked (known values and token shapes) in messages and fields.
 */
export function createLogger(opts: {
  service: string;
  level?: string;
  masker?: SecretMasker;
  destination?: NodeJS.WritableStream;
}): Logger {
  const masker = opts.masker ?? new SecretMasker();
  return pino(
    {
      name: opts.service,
      level: opts.level ?? "info",
      base: { service: opts.service },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ["*.password", "*.token", "*.apiKey", "*.authorization", "req.headers.authorization", "headers.authorization"],
        censor: "***",
      },
      mixin() {
        const span = trace.getActiveSpan();
        if (!span) return {};
        const sc = span.spanContext();
        return { trace_id: sc.traceId, span_id: sc.spanId };
      },
      formatters: {
        log: (obj) => masker.maskDeep(obj),
      },
      hooks: {
        logMethod(args, method) {
          const masked = args.map((a) => (typeof a === "string" ? masker.mask(a) : a)) as Parameters<typeof method>;
          return method.apply(this, masked);
        },
      },
    },
    opts.destination ?? process.stdout,
  );
}

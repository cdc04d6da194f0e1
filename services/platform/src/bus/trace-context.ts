import type { MsgHdrs } from "@nats-io/nats-core";
import { type Context, context as otelContext, ROOT_CONTEXT, type TextMapGetter, type TextMapSetter, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

/**
 * W3C trace context in NATS headers. The propagator is used directly (not the global one) so that
 * trace context crosses the bus even in a process that has not installed an OpenTelemetry SDK.
 */
const propagator = new W3CTraceContextPropagator();

const headerSetter: TextMapSetter<MsgHdrs> = {
  set(carrier, key, value) {
    carrier.set(key, value);
  },
};

const headerGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => (carrier ? carrier.keys() : []),
  get: (carrier, key) => {
    if (!carrier?.has(key)) return undefined;
    return carrier.get(key);
  },
};

const recordSetter: TextMapSetter<Record<string, string>> = {
  set(carrier, key, value) {
    carrier[key] = value;
  },
};
const recordGetter: TextMapGetter<Record<string, string | string[] | undefined>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key] ?? carrier[key.toLowerCase()],
};

export function injectIntoHeaders(ctx: Context, hdrs: MsgHdrs): void {
  propagator.inject(ctx, hdrs, headerSetter);
}

export function extractFromHeaders(hdrs: MsgHdrs | undefined): Context {
  return propagator.extract(ROOT_CONTEXT, hdrs, headerGetter);
}

/** The traceparent/tracestate pair of a context, for storing in event metadata or HTTP headers. */
export function traceFields(ctx: Context): { traceparent?: string; tracestate?: string } {
  const carrier: Record<string, string> = {};
  propagator.inject(ctx, carrier, recordSetter);
  const out: { traceparent?: string; tracestate?: string } = {};
  if (carrier.traceparent) out.traceparent = carrier.traceparent;
  if (carrier.tracestate) out.tracestate = carrier.tracestate;
  return out;
}

/** A context from stored or received traceparent/tracestate (HTTP headers, event metadata). */
export function contextFromFields(fields: Record<string, string | string[] | undefined>): Context {
  return propagator.extract(ROOT_CONTEXT, fields, recordGetter);
}

export function traceIdOf(ctx: Context): string | undefined {
  const sc = trace.getSpanContext(ctx);
  return sc && sc.traceId !== "00000000000000000000000000000000" ? sc.traceId : undefined;
}

export function activeContext(): Context {
  return otelContext.active();
}

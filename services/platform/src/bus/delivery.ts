import { errorMessage, isCodefleetError, ValidationError } from "@codefleet/contracts";
import type { JsMsg } from "@nats-io/jetstream";
import { type Context, context as otelContext, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { type BusContext, decoder, tracer } from "./context.js";
import { deadLetter } from "./dead-letters.js";
import type { ConsumerSpec } from "./streams.js";
import { contextFromFields, extractFromHeaders } from "./trace-context.js";

/**
 * One delivered message, whatever consumed it: decoded (or dead-lettered when it cannot be), traced
 * in its producer's trace, handed over, then acknowledged, offered again after a delay, or
 * dead-lettered on its last delivery or a failure that says it never succeeds.
 */

export type DeliveryContext = {
  subject: string;
  streamSequence: number;
  /** 1 on first delivery. */
  deliveryCount: number;
  redelivered: boolean;
  /** Tells the server the handler is still working: resets the ack deadline. */
  working(): void;
  /** The trace context the producer sent (and the consumer span, when an SDK is installed). */
  traceContext: Context;
  /** Aborted when the subscription stops; handlers of long work should watch it. */
  signal: AbortSignal;
};

export type Delivery<T> = { value: T; ctx: DeliveryContext };

export type CommonConsumeOptions<T> = ConsumerSpec & {
  decode: (data: unknown, subject: string) => T;
  /** Delay before a failed message is offered again: deliveryCount → ms. */
  retryDelayMs?: (deliveryCount: number) => number;
  /** How long one pull waits for messages before asking again. */
  pullExpiresMs?: number;
  /** Span name for the consumer span of one message. */
  spanName?: (value: T) => string;
};

export const defaultRetryDelay = (deliveryCount: number): number => Math.min(250 * 2 ** Math.max(0, deliveryCount - 1), 30_000);

export function decodeMsg<T>(msg: JsMsg, opts: CommonConsumeOptions<T>): T {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(msg.data));
  } catch (err) {
    throw new ValidationError("invalid_json", `message on ${msg.subject} is not JSON: ${errorMessage(err)}`);
  }
  return opts.decode(json, msg.subject);
}

export function deliveryContext(msg: JsMsg, signal: AbortSignal, traceContext: Context): DeliveryContext {
  return {
    subject: msg.subject,
    streamSequence: msg.info.streamSequence,
    deliveryCount: msg.info.deliveryCount,
    redelivered: msg.redelivered,
    working: () => msg.working(),
    traceContext,
    signal,
  };
}

/** The producer's trace context: from the headers, else from the event's metadata. */
export function producerContext(msg: JsMsg, value: unknown): Context {
  if (msg.headers?.has("traceparent")) return extractFromHeaders(msg.headers);
  const meta = (value as { metadata?: Record<string, string> } | undefined)?.metadata;
  return meta ? contextFromFields(meta) : extractFromHeaders(undefined);
}

/** The CONSUMER span of one message, a child of its producer's span. */
export function consumerSpan<T>(
  msg: JsMsg,
  value: T,
  opts: CommonConsumeOptions<T>,
  parent: Context,
  extra: Record<string, number> = {},
): Span {
  return tracer.startSpan(
    opts.spanName ? opts.spanName(value) : `process ${msg.subject}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        "messaging.system": "nats",
        "messaging.destination.name": msg.subject,
        "messaging.consumer.group.name": opts.durable,
        "messaging.nats.stream_sequence": msg.info.streamSequence,
        "messaging.nats.delivery_count": msg.info.deliveryCount,
        ...extra,
      },
    },
    parent,
  );
}

type Host = Pick<BusContext, "js" | "topology" | "log">;

/** Decodes, runs and settles one message. */
export async function processOne<T>(
  bus: Host,
  msg: JsMsg,
  opts: CommonConsumeOptions<T>,
  signal: AbortSignal,
  run: (items: readonly Delivery<T>[]) => Promise<void>,
): Promise<void> {
  let value: T;
  try {
    value = decodeMsg(msg, opts);
  } catch (err) {
    await deadLetter(bus, msg, opts.durable, err);
    return;
  }
  const parent = producerContext(msg, value);
  const span = consumerSpan(msg, value, opts, parent);
  const ctx = trace.setSpan(parent, span);
  try {
    await otelContext.with(ctx, () => run([{ value, ctx: deliveryContext(msg, signal, ctx) }]));
    msg.ack();
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
    await settleFailure(bus, msg, opts, err);
  } finally {
    span.end();
  }
}

/** A failed message: dead-lettered when it never succeeds or had its last delivery, else offered again after a delay. */
export async function settleFailure<T>(bus: Host, msg: JsMsg, opts: CommonConsumeOptions<T>, err: unknown): Promise<void> {
  const maxDeliver = opts.maxDeliver ?? 5;
  const permanent = isCodefleetError(err) && err.retry.kind === "never";
  if (permanent || msg.info.deliveryCount >= maxDeliver) {
    await deadLetter(bus, msg, opts.durable, err);
    return;
  }
  const delay =
    isCodefleetError(err) && err.retry.kind === "after"
      ? err.retry.delayMs
      : (opts.retryDelayMs ?? defaultRetryDelay)(msg.info.deliveryCount);
  bus.log.warn(
    { consumer: opts.durable, subject: msg.subject, deliveryCount: msg.info.deliveryCount, retryInMs: delay, error: errorMessage(err) },
    "handler failed, will be redelivered",
  );
  msg.nak(delay);
}

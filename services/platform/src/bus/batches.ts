import { setTimeout as pause } from "node:timers/promises";
import { errorMessage } from "@codefleet/contracts";
import type { JsMsg } from "@nats-io/jetstream";
import { context as otelContext, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { type BusContext, type Subscription, tracer } from "./context.js";
import { deadLetter } from "./dead-letters.js";
import {
  type CommonConsumeOptions,
  consumerSpan,
  type Delivery,
  decodeMsg,
  deliveryContext,
  processOne,
  producerContext,
} from "./delivery.js";
import { ensureConsumer } from "./streams.js";

/**
 * Batched consumption: what has arrived is handed over as one batch (one transaction for a burst);
 * a batch that fails is retried one message at a time, so one bad message cannot hold back the rest.
 */

export type ConsumeBatchOptions<T> = CommonConsumeOptions<T> & {
  batchSize?: number;
  /** Bytes buffered from the server at most (instead of `batchSize * 2` messages): large events cannot pile up in memory. */
  maxBytes?: number;
  /** All or nothing: resolving acks every message of the batch. A batch that throws is retried one message at a time. */
  handleBatch: (batch: readonly Delivery<T>[]) => Promise<void>;
};

/**
 * Messages stream in continuously (`consume`), and whatever has arrived (up to batchSize) is handed
 * over as one batch, so a burst is one transaction and a trickle is not held back waiting for a
 * batch to fill.
 */
export async function consumeBatches<T>(bus: BusContext, opts: ConsumeBatchOptions<T>): Promise<Subscription> {
  await ensureConsumer(bus.jsm, opts);
  const consumer = await bus.js.consumers.get(opts.stream, opts.durable);
  const batchSize = opts.batchSize ?? 256;
  const abort = new AbortController();
  const inFlight = new Set<Promise<void>>();
  // by bytes or by messages (the client takes one or the other): bytes bound memory whatever the events' sizes
  const messages = await consumer.consume(
    opts.maxBytes
      ? { max_bytes: opts.maxBytes, expires: opts.pullExpiresMs ?? 5000 }
      : { max_messages: batchSize * 2, expires: opts.pullExpiresMs ?? 5000 },
  );
  const queue: JsMsg[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  void (async () => {
    try {
      for await (const m of messages) {
        queue.push(m);
        wake?.();
      }
    } catch (err) {
      if (!abort.signal.aborted) bus.log.warn({ consumer: opts.durable, error: errorMessage(err) }, "consume ended");
    } finally {
      ended = true;
      wake?.();
    }
  })();
  abort.signal.addEventListener("abort", () => {
    void messages.close();
    wake?.();
  });
  const loop = async () => {
    while (!abort.signal.aborted) {
      if (queue.length === 0) {
        if (ended) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
        continue;
      }
      if (queue.length < batchSize) await pause(2); // let a burst gather
      const batch = queue.splice(0, batchSize);
      const p = processBatch(bus, batch, opts, abort.signal);
      inFlight.add(p);
      await p;
      inFlight.delete(p);
    }
    for (const m of queue.splice(0)) m.nak(); // taken after stop: hand back
  };
  return bus.track(abort, loop(), inFlight);
}

async function processBatch<T>(bus: BusContext, batch: JsMsg[], opts: ConsumeBatchOptions<T>, signal: AbortSignal): Promise<void> {
  const good: { msg: JsMsg; delivery: Delivery<T>; span: Span }[] = [];
  for (const msg of batch) {
    try {
      const value = decodeMsg(msg, opts);
      // one consumer span per message, in its producer's trace, covering the batch it rode in
      const parent = producerContext(msg, value);
      const span = consumerSpan(msg, value, opts, parent, { "messaging.batch.message_count": batch.length });
      good.push({ msg, span, delivery: { value, ctx: deliveryContext(msg, signal, trace.setSpan(parent, span)) } });
    } catch (err) {
      await deadLetter(bus, msg, opts.durable, err);
    }
  }
  if (good.length === 0) return;
  // The handler's own work (its SQL, say) is traced in the message's trace when the batch is one
  // message, else under a batch span linked to every message's trace.
  const only = good.length === 1 ? good[0] : undefined;
  const batchSpan = only
    ? undefined
    : tracer.startSpan(`${opts.durable} batch`, {
        root: true,
        kind: SpanKind.CONSUMER,
        attributes: { "messaging.system": "nats", "messaging.batch.message_count": good.length },
        links: good.map((g) => ({ context: g.span.spanContext() })),
      });
  const handlerCtx = only ? only.delivery.ctx.traceContext : trace.setSpan(otelContext.active(), batchSpan as Span);
  try {
    await otelContext.with(handlerCtx, () => opts.handleBatch(good.map((g) => g.delivery)));
    batchSpan?.end();
    for (const g of good) {
      g.msg.ack();
      g.span.end();
    }
  } catch (err) {
    bus.log.warn({ consumer: opts.durable, size: good.length, error: errorMessage(err) }, "batch failed, retrying one by one");
    batchSpan?.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
    batchSpan?.end();
    for (const g of good) {
      g.span.setStatus({ code: SpanStatusCode.ERROR, message: `batch failed, retried alone: ${errorMessage(err)}` });
      g.span.end();
    }
    for (const g of good) {
      await processOne(bus, g.msg, opts, signal, (items) => opts.handleBatch(items));
    }
  }
}

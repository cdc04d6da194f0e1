import { errorMessage, isCodefleetError, ValidationError } from "@codefleet/contracts";
import type { JsMsg } from "@nats-io/jetstream";
import { type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node";
import type { BusContext } from "./context.js";

/**
 * The dead-letter stream: a message that cannot be processed (invalid, or failing on its last
 * delivery) is recorded there with the reason, under `<ns>.dlq.<consumer>`, then terminated.
 */

export const HEADER_DLQ_REASON = "Codefleet-Dlq-Reason";
export const HEADER_DLQ_CODE = "Codefleet-Dlq-Code";
export const HEADER_DLQ_SUBJECT = "Codefleet-Dlq-Subject";
export const HEADER_DLQ_STREAM_SEQ = "Codefleet-Dlq-Stream-Seq";
export const HEADER_DLQ_DELIVERIES = "Codefleet-Dlq-Deliveries";

export type DeadLetter = {
  consumer: string;
  reason: string;
  code: string;
  subject: string;
  streamSequence: number;
  deliveries: number;
  data: Uint8Array;
};

/** Records the message with its reason on the dead-letter stream, then terminates it. */
export async function deadLetter(
  bus: Pick<BusContext, "js" | "topology" | "log">,
  msg: JsMsg,
  consumer: string,
  err: unknown,
): Promise<void> {
  const code = isCodefleetError(err) ? err.code : "handler_failed";
  const reason =
    err instanceof ValidationError && err.issues.length > 0
      ? `${err.message}: ${err.issues.map((i) => `${i.path} ${i.message}`).join("; ")}`
      : errorMessage(err);
  const hdrs = natsHeaders();
  hdrs.set(HEADER_DLQ_REASON, reason.slice(0, 1000).replace(/[\r\n]+/g, " "));
  hdrs.set(HEADER_DLQ_CODE, code);
  hdrs.set(HEADER_DLQ_SUBJECT, msg.subject);
  hdrs.set(HEADER_DLQ_STREAM_SEQ, String(msg.info.streamSequence));
  hdrs.set(HEADER_DLQ_DELIVERIES, String(msg.info.deliveryCount));
  copyTraceHeaders(msg.headers, hdrs);
  try {
    await bus.js.publish(bus.topology.subjects.deadLetter(consumer), msg.data, {
      msgID: `dlq.${consumer}.${msg.info.stream}.${msg.info.streamSequence}`,
      headers: hdrs,
    });
    bus.log.error({ consumer, subject: msg.subject, code, reason, deliveries: msg.info.deliveryCount }, "message dead-lettered");
    msg.term(reason.slice(0, 200));
  } catch (pubErr) {
    // Not recorded: leave it for redelivery rather than lose it.
    bus.log.error({ consumer, error: errorMessage(pubErr) }, "dead-lettering failed; message will be redelivered");
    msg.nak(5000);
  }
}

/** Reads dead letters of a consumer (newest last). Operations tooling and tests use it. */
export async function readDeadLetters(
  bus: Pick<BusContext, "js" | "jsm" | "topology">,
  consumer: string,
  limit = 100,
): Promise<DeadLetter[]> {
  const stream = bus.topology.streams.deadLetters.name;
  const subject = bus.topology.subjects.deadLetter(consumer);
  const out: DeadLetter[] = [];
  const oc = await bus.js.consumers.get(stream, { filter_subjects: subject });
  const info = await bus.jsm.streams.info(stream, { subjects_filter: subject }).catch(() => undefined);
  const total = info?.state.subjects?.[subject] ?? 0;
  if (total === 0) {
    await oc.delete().catch(() => undefined);
    return out;
  }
  const msgs = await oc.fetch({ max_messages: Math.min(total, limit), expires: 2000 });
  for await (const m of msgs) {
    const h = m.headers;
    out.push({
      consumer,
      reason: h?.get(HEADER_DLQ_REASON) ?? "",
      code: h?.get(HEADER_DLQ_CODE) ?? "",
      subject: h?.get(HEADER_DLQ_SUBJECT) ?? "",
      streamSequence: Number(h?.get(HEADER_DLQ_STREAM_SEQ) ?? 0),
      deliveries: Number(h?.get(HEADER_DLQ_DELIVERIES) ?? 0),
      data: m.data,
    });
    if (out.length >= Math.min(total, limit)) break;
  }
  await oc.delete().catch(() => undefined);
  return out;
}

function copyTraceHeaders(from: MsgHdrs | undefined, to: MsgHdrs): void {
  for (const key of ["traceparent", "tracestate"]) {
    if (from?.has(key)) to.set(key, from.get(key));
  }
}

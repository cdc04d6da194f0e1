import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { NotificationPayload } from "./outbox.js";

/**
 * The webhook protocol, pure: the body, its signature, which attempts count as delivered, which
 * are retried and when. docs/events.md ("Webhooks") documents it for receivers.
 */

export const SIGNATURE_HEADER = "Codefleet-Signature";
export const DELIVERY_HEADER = "Codefleet-Delivery";
export const TIMESTAMP_HEADER = "Codefleet-Timestamp";
export const EVENT_HEADER = "Codefleet-Event";

export type WebhookTarget = "task" | "tenant";

/** `sha256=<hex HMAC-SHA256 of the raw body>`, the value of `Codefleet-Signature`. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(body, "utf8").digest("hex")}`;
}

/** What a receiver does (and what tests use): constant-time comparison of the signature header with the body's. */
export function verifySignature(secret: string, body: string, header: string | undefined): boolean {
  if (!header) return false;
  const expected = Buffer.from(signBody(secret, body));
  const given = Buffer.from(header);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** A delivery's id: one per notification and target, the same in every attempt (receivers de-duplicate by it). */
export function deliveryIdFor(kind: string, taskId: string, target: WebhookTarget): string {
  return `whd_${createHash("sha256").update(`${kind}\n${taskId}\n${target}`).digest("hex").slice(0, 32)}`;
}

/** The JSON body of one attempt: the notification, the delivery id, a link to the task and when it was sent. */
export function webhookBody(payload: NotificationPayload, opts: { deliveryId: string; publicUrl: string; sentAt: Date }): string {
  return JSON.stringify({
    ...payload,
    url: `${opts.publicUrl}/v1/tasks/${encodeURIComponent(payload.taskId)}`,
    deliveryId: opts.deliveryId,
    sentAt: opts.sentAt.toISOString(),
  });
}

/** The targets of a notification: the task's own webhook and its tenant's default (the same URL once). */
export function targetsFor(notifyUrl: string | undefined, tenantUrl: string | undefined): { target: WebhookTarget; url: string }[] {
  const out: { target: WebhookTarget; url: string }[] = [];
  if (notifyUrl) out.push({ target: "task", url: notifyUrl });
  if (tenantUrl && tenantUrl !== notifyUrl) out.push({ target: "tenant", url: tenantUrl });
  return out;
}

/** What one attempt came to. */
export type AttemptResult = { kind: "response"; statusCode: number } | { kind: "error"; code: string; retryable: boolean };

export type AttemptVerdict =
  | { state: "delivered" }
  | { state: "pending"; code: string; nextAttemptAt: Date }
  | { state: "failed"; code: string };

/** Delay before attempt `attempt + 1`: base × 2^(attempt−1), at most `maxMs`. */
export function retryDelayMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30), maxMs);
}

/**
 * 2xx is delivered. Timeouts, connection failures, 5xx, 408, 425 and 429 are retried with backoff
 * until `maxAttempts`; any other answer (a 4xx: the receiver refuses it) and a refused address are final.
 */
export function judgeAttempt(
  result: AttemptResult,
  attempt: number,
  opts: { maxAttempts: number; retryBaseMs: number; retryMaxMs: number; now: Date },
): AttemptVerdict {
  let code: string;
  let retryable: boolean;
  if (result.kind === "response") {
    if (result.statusCode >= 200 && result.statusCode < 300) return { state: "delivered" };
    code = `http_${result.statusCode}`;
    retryable = result.statusCode >= 500 || [408, 425, 429].includes(result.statusCode);
  } else {
    code = result.code;
    retryable = result.retryable;
  }
  if (!retryable || attempt >= opts.maxAttempts) return { state: "failed", code };
  return { state: "pending", code, nextAttemptAt: new Date(opts.now.getTime() + retryDelayMs(attempt, opts.retryBaseMs, opts.retryMaxMs)) };
}
